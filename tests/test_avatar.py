"""Avatars from a portrait: the build, the files (folder, zip, GLB) and the store."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh

from avatars.builder import (
    STAGES,
    AvatarBuilder,
    AvatarConfig,
    AvatarError,
    PhotoLimits,
    decode_photo,
)
from avatars.catalogue import load_target
from avatars.files import (
    AvatarFileError,
    avatar_files,
    read_avatar,
    zip_bytes,
)
from avatars.hair.scalp import points_inside_head, skin_faces
from avatars.store import AvatarStore, StoreError
from engines.files.assets import asset_root, sha256_bytes
from engines.render.materials import material_for
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter

PHOTO = "london_001_neutral.jpg"


@pytest.fixture(scope="module")
def photo_bytes() -> bytes:
    return (asset_root() / "faces" / "london_set" / PHOTO).read_bytes()


@pytest.fixture(scope="module")
def avatar(ict, photo_bytes):
    builder = AvatarBuilder(ict, AvatarConfig(texture_size=512))
    try:
        yield builder.build(decode_photo(photo_bytes), "london 001", sha256_bytes(photo_bytes))
    finally:
        builder.close()


@pytest.fixture(scope="module")
def files(ict, avatar) -> dict[str, bytes]:
    return avatar_files(avatar, ict)


def test_build_gives_shape_texture_and_hair(ict, avatar) -> None:
    assert set(avatar.timings_ms) == set(STAGES)
    assert avatar.texture.shape == (512, 1024, 3) and avatar.texture.dtype == np.uint8
    assert avatar.shape.shape == (ict.n_shape,) and np.isfinite(avatar.shape).all()
    assert avatar.photo.residual_px < 3.0
    # her hair is dark brown: the colour read from the photo is dark and warm
    r, _, b = avatar.hair_rgb
    assert max(avatar.hair_rgb) < 0.5 and r >= b
    assert avatar.hair is not None
    import torch

    with torch.no_grad():
        head = ict.prepare_identity(torch.from_numpy(avatar.shape[None]))[0].numpy()
    roots = avatar.hair.positions[avatar.hair.active][:, 0]
    assert not points_inside_head(roots, head, skin_faces(ict.topology)).any()
    # the face's texture came from the photo: skin-coloured, not the flat default
    face_px = avatar.texture[256 - 40 : 256 + 40, 216:296].reshape(-1, 3).astype(float)
    assert face_px.std(0).mean() > 3.0


def test_avatar_renders_with_its_hair(ict, avatar) -> None:
    with Retargeter(ict, avatar.target(), RenderConfig(256, 256)) as rt:
        with_hair = rt.render_parameters(np.zeros(ict.n_expression), np.zeros(3)).image
        turned = rt.render_parameters(np.zeros(ict.n_expression), np.array([0, 0.5, 0])).image
        bare_target = avatar.target()
        bare_target.hair = None
        rt.set_target(bare_target)
        bare = rt.render_parameters(np.zeros(ict.n_expression), np.zeros(3)).image
    diff = np.abs(with_hair.astype(int) - bare).sum(2) > 30
    assert diff[:70].mean() > 0.1  # the top of the frame: hair
    assert diff[120:170, 100:156].mean() < 0.05  # the middle of the face: unchanged
    assert np.abs(turned.astype(int) - with_hair).sum(2).mean() > 10


def test_files_round_trip_folder_and_zip(ict, avatar, files, tmp_path) -> None:
    manifest = json.loads(files["manifest.json"])
    assert manifest["format_version"] == 1 and manifest["model"] == "ict"
    assert manifest["source_image_sha256"] == avatar.source_sha256
    assert manifest["sizes"]["shape"] == ict.n_shape
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_bytes(files[name])
    write_avatar_dir(files, tmp_path / "a")
    for back in (read_avatar(tmp_path / "a", ict), read_avatar(zip_bytes(files), ict)):
        assert np.array_equal(back.shape, avatar.shape)
        assert np.array_equal(back.texture, avatar.texture)
        assert np.array_equal(back.hair.positions, avatar.hair.positions)
        assert back.hair_rgb == pytest.approx(avatar.hair_rgb)
        assert back.iris_rgb == pytest.approx(avatar.iris_rgb)


def test_glb_and_obj_open_in_trimesh(files) -> None:
    scene = trimesh.load(io.BytesIO(files["avatar.glb"]), file_type="glb")
    assert "hair" in scene.geometry and "skin_face" in scene.geometry
    face = scene.geometry["skin_face"]
    assert face.visual.material.baseColorTexture is not None
    assert face.visual.uv.shape == (len(face.vertices), 2)
    extent = scene.bounds[1] - scene.bounds[0]
    assert 0.15 < extent[1] < 0.6  # metres: a head (and its hair), not centimetres
    mesh = trimesh.load(io.BytesIO(files["mesh.obj"]), file_type="obj", process=False,
                        force="mesh")
    assert len(mesh.vertices) > 20000
    hair_lines = files["hair.obj"].decode().splitlines()
    n_v = sum(ln.startswith("v ") for ln in hair_lines)
    n_l = sum(ln.startswith("l ") for ln in hair_lines)
    assert n_v == 100 * n_l and n_l > 100


def test_obj_eyes_are_open_over_the_iris_in_its_colour(files, avatar, ict) -> None:
    t = ict.topology
    mtl = files["mesh.mtl"].decode().split("newmtl ")
    iris = next(block for block in mtl if block.startswith("M_IrisLeft"))
    kd = [float(x) for x in iris.split("Kd ")[1].split()[:3]]
    assert kd == pytest.approx(avatar.iris_rgb, abs=1e-3)
    obj = files["mesh.obj"].decode()
    sclera = obj.split("usemtl M_ScleraLeft\n")[1].split("usemtl")[0]
    corners = np.array([[int(c.split("/")[0]) - 1 for c in ln.split()[1:]]
                        for ln in sclera.splitlines() if ln.startswith("f ")])  # (F, 3)
    d = t.eye_directions[corners].mean(1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cap = np.cos(np.radians(RenderConfig().iris_angle_deg))
    assert len(corners) > 100 and (d[:, 2] > cap).sum() == 0  # nothing over the iris
    assert (d[:, 2] < -0.5).sum() == 0  # nor the back of the eyeball


def glb_json(glb: bytes) -> dict:
    length = int.from_bytes(glb[12:16], "little")  # the first chunk: JSON
    return json.loads(glb[20:20 + length])


def test_glb_parts_are_named_lit_and_not_metal(files) -> None:
    gltf = glb_json(files["avatar.glb"])
    names = {node["name"] for node in gltf["nodes"]}
    assert names == {"skin_face", "skin_head", "eyelashes", "teeth", "gums_tongue",
                     "iris_left", "iris_right", "eyeball_left", "eyeball_right", "hair"}
    for mesh in gltf["meshes"]:  # smooth shading in every viewer (none falls back to flat)
        assert "NORMAL" in mesh["primitives"][0]["attributes"], mesh["name"]
    materials = {m["name"]: m for m in gltf["materials"]}
    for m in materials.values():
        assert m["pbrMetallicRoughness"].get("metallicFactor", 1.0) == 0.0, m["name"]
    teeth = materials["teeth"]["pbrMetallicRoughness"]["baseColorFactor"]
    assert teeth[0] == pytest.approx(material_for("M_Teeth").colour[0] ** 2.2, abs=1e-3)
    assert materials["eyeball_left"]["alphaMode"] == "MASK"
    assert materials["hair"]["alphaMode"] == "MASK" and materials["hair"]["doubleSided"]
    stored = {image["bufferView"] for image in gltf["images"]}  # the same image once
    assert len(stored) == 4  # the skin texture, an iris, an eyeball, hair fibres


def test_glb_eyes_show_the_iris_in_the_photos_colour(files, avatar) -> None:
    scene = trimesh.load(io.BytesIO(files["avatar.glb"]), file_type="glb")
    eyeball = np.asarray(scene.geometry["eyeball_left"].visual.material.baseColorTexture)
    n = eyeball.shape[0]
    assert eyeball[n // 2, n // 2, 3] == 0 and eyeball[n // 2, 2, 3] == 255  # clear cornea
    iris = np.asarray(scene.geometry["iris_left"].visual.material.baseColorTexture)[..., :3]
    yy, xx = np.mgrid[0:n, 0:n]
    r = np.hypot(xx + 0.5 - n / 2, yy + 0.5 - n / 2) / (n / 2)  # sin of the angle off-axis
    assert iris[r < 0.1].max() < 40  # the pupil (linear 0.01, as the shader)
    ring = np.median(iris[(r > 0.35) & (r < 0.5)], axis=0) / 255.0  # mid iris
    assert avatar.iris_rgb is not None
    assert np.abs(ring - np.asarray(avatar.iris_rgb)).max() < 0.12, (ring, avatar.iris_rgb)
    uv = scene.geometry["iris_left"].visual.uv
    assert uv.min() >= 0.0 and uv.max() <= 1.0


def test_glb_hair_cards_over_a_hair_base(files, avatar, ict) -> None:
    scene = trimesh.load(io.BytesIO(files["avatar.glb"]), file_type="glb")
    hair = scene.geometry["hair"]
    alpha = np.asarray(hair.visual.material.baseColorTexture)[..., 3]
    assert (alpha == 0).mean() > 0.2 and (alpha > 200).mean() > 0.2  # fibres and gaps
    assert len(hair.faces) > 20_000
    skin = np.asarray(scene.geometry["skin_face"].visual.material.baseColorTexture)[..., :3]
    changed = np.abs(skin.astype(int) - avatar.texture.astype(int)).sum(2) > 30
    assert 0.02 < changed.mean() < 0.4  # the scalp under the hair, not the whole head
    h = avatar.texture.shape[0]
    face_tile = changed[h // 3:2 * h // 3, h // 3:2 * h // 3]  # the middle of the face
    assert face_tile.mean() < 0.01


def rezip(files: dict[str, bytes], **changes: bytes | None) -> bytes:
    out = dict(files)
    for name, data in changes.items():
        name = name.replace("__", ".")
        if data is None:
            out.pop(name)
        else:
            out[name] = data
    return zip_bytes(out)


def test_store_add_list_export_import_delete(ict, avatar, tmp_path) -> None:
    store = AvatarStore(tmp_path / "store")
    avatar_id = store.add(avatar, ict)
    assert len(avatar_id) == 16 and int(avatar_id, 16) >= 0
    assert [e.id for e in store.entries()] == [avatar_id]
    assert store.add(avatar, ict) == avatar_id  # content hash: once
    other = AvatarStore(tmp_path / "other")
    assert other.import_avatar(store.zip(avatar_id), ict) == avatar_id
    glb = trimesh.load(io.BytesIO(other.glb(avatar_id)), file_type="glb")
    assert "hair" in glb.geometry
    target = load_target(avatar_id, ict, other)
    assert target.hair is not None and target.texture.shape == avatar.texture.shape
    other.delete(avatar_id)
    assert other.entries() == []
    with pytest.raises(StoreError):
        other.folder(avatar_id)


def test_store_visibility(ict, avatar, tmp_path) -> None:
    store = AvatarStore(tmp_path)
    avatar_id = store.add(avatar, ict, owner="alice")
    assert [e.id for e in store.entries("alice")] == [avatar_id]
    assert store.entries("bob") == [] and store.entries(None) == []
    store.set_public(avatar_id, True)
    assert [e.id for e in store.entries("bob")] == [avatar_id]


def test_the_same_photo_from_two_users_is_two_private_entries(ict, avatar, tmp_path) -> None:
    """No squatting: a second upload of the same content neither joins nor reveals the
    first; each entry keeps its own owner and visibility."""
    store = AvatarStore(tmp_path)
    alice = store.add(avatar, ict, owner="alice-key-0123456789", public=True)
    bob = store.add(avatar, ict, owner="bob-key-0123456789ab")
    assert alice != bob
    assert [e.id for e in store.entries("bob-key-0123456789ab")] == [bob, alice]
    assert [e.id for e in store.entries("carol-key-0123456789")] == [alice]  # bob's is private
    assert not store.entry(bob).visible_to("carol-key-0123456789")
    assert store.add(avatar, ict) == store.add(avatar, ict)  # the store's own: one per content


def test_a_symlinked_store_record_makes_the_entry_invisible(ict, avatar, tmp_path) -> None:
    store = AvatarStore(tmp_path / "store")
    avatar_id = store.add(avatar, ict, owner="alice-key-0123456789")
    public = tmp_path / "public.json"
    public.write_text('{"owner": null, "public": true}')
    record = store.root / avatar_id / "store.json"
    record.unlink()
    record.symlink_to(public)
    assert store.entries(everyone=True) == [] and store.entries("bob") == []
    with pytest.raises(StoreError):
        store.entry(avatar_id)


@pytest.mark.parametrize(
    "bad",
    ["../etc", "/etc/passwd", "..", "", "0123456789ABCDEF", "0123456789abcdef0", "a/b", None],
)
def test_store_refuses_ids_that_are_paths(tmp_path, bad) -> None:
    store = AvatarStore(tmp_path / "store")
    with pytest.raises(StoreError):
        store.folder(bad)


def test_store_refuses_symlinked_entries(ict, avatar, tmp_path) -> None:
    outside = tmp_path / "outside"
    write_avatar_dir(avatar_files(avatar, ict), outside)
    store = AvatarStore(tmp_path / "store")
    os.symlink(outside, store.root / "0123456789abcdef")
    with pytest.raises(StoreError):
        store.folder("0123456789abcdef")
    assert store.entries(everyone=True) == []


def test_store_rejects_corrupt_files_and_stays_intact(ict, files, tmp_path) -> None:
    store = AvatarStore(tmp_path / "store")
    good = zip_bytes(files)
    flipped = bytearray(files["texture.png"])
    flipped[len(flipped) // 2] ^= 0xFF
    wrong_shape = io.BytesIO()
    np.savez(wrong_shape, shape=np.zeros(7, np.float32))
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["params.npz"]["sha256"] = sha256_bytes(wrong_shape.getvalue())
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../evil.txt", "x")
    cases = {
        "truncated zip": good[: len(good) // 2],
        "not a zip": b"hello",
        "flipped byte": rezip(files, texture__png=bytes(flipped)),
        "no manifest": rezip(files, manifest__json=None),
        "bad manifest": rezip(files, manifest__json=b"{not json"),
        "missing file": rezip(files, params__npz=None),
        "wrong array shape": rezip(
            files, params__npz=wrong_shape.getvalue(),
            manifest__json=json.dumps(manifest).encode(),
        ),
        "path in zip": evil.getvalue(),
    }
    for label, data in cases.items():
        with pytest.raises(AvatarFileError):
            store.import_avatar(data, ict)
        assert store.entries(everyone=True) == [], label
        assert [p.name for p in store.root.iterdir()] == [], label  # no leftovers


def png_bytes(img: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def test_photo_limits_and_bad_photos(ict) -> None:
    with pytest.raises(AvatarError, match="larger"):
        decode_photo(b"x" * 2000, PhotoLimits(max_bytes=1000))
    with pytest.raises(AvatarError, match="could not be read"):
        decode_photo(b"not an image at all")
    gif = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(gif, "GIF")
    with pytest.raises(AvatarError, match="JPEG"):
        decode_photo(gif.getvalue())
    big = png_bytes(np.zeros((2000, 3000, 3), np.uint8))  # small file, 6 MP decoded
    with pytest.raises(AvatarError, match="pixels"):
        decode_photo(big, PhotoLimits(max_pixels=1_000_000))
    blank = decode_photo(png_bytes(np.full((300, 300, 3), 128, np.uint8)))
    builder = AvatarBuilder(ict)
    try:
        with pytest.raises(AvatarError, match="no face"):
            builder.build(blank, "blank", "0")
    finally:
        builder.close()


def test_cli_avatar_build_list_export_delete(tmp_path, capsys) -> None:
    from vn3d.cli import main

    store = str(tmp_path / "store")
    photo = str(asset_root() / "faces" / "london_set" / "london_003_neutral.jpg")
    assert main(["avatar", "build", photo, "--hair", "none", "--texture-size", "256",
                 "--store", store]) == 0
    out = capsys.readouterr().out
    avatar_id = out.split()[1]
    assert "landmarks" in out and "texture" in out
    assert main(["avatar", "list", "--store", store]) == 0
    assert avatar_id in capsys.readouterr().out
    assert main(["avatar", "export", avatar_id, "--out", str(tmp_path / "x"),
                 "--store", store]) == 0
    exported = sorted(p.suffix for p in Path(tmp_path / "x").iterdir())
    assert exported == [".glb", ".zip"]
    assert main(["avatar", "delete", avatar_id, "--store", store]) == 0
    assert main(["avatar", "show", avatar_id, "--store", store]) == 2
    assert main(["avatar", "build", photo, "--hair", "no-such-style", "--store", store]) == 2


def test_bald_portrait_gets_no_hair(ict) -> None:
    """london_021 is bald: 'auto' finds no hair colour and grows no hair."""
    data = (asset_root() / "faces" / "london_set" / "london_021_neutral.jpg").read_bytes()
    builder = AvatarBuilder(ict, AvatarConfig(texture_size=256))
    try:
        avatar = builder.build(decode_photo(data), "bald", sha256_bytes(data))
    finally:
        builder.close()
    assert avatar.hair is None


def write_avatar_dir(files: dict[str, bytes], folder) -> None:
    """An avatar's files as a folder (the form `vn3d avatar import` takes)."""
    folder.mkdir(parents=True, exist_ok=False)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def test_the_texture_leaves_out_a_band_over_each_eye() -> None:
    """The band over each eye opening (the lash line and upper lid rim, which the head's
    shut lids would show as a painted eye) is left out; under the eye only the opening's
    own rim is."""
    from avatars.builder import EYE_MARGIN, openings_mask
    from avatars.eye_colour import EYE_OPENINGS

    lms = np.zeros((478, 2))
    lms[:] = (100, 170)  # every other point on the mouth: a speck
    for ring, cx in zip(EYE_OPENINGS, (60, 140), strict=True):
        t = np.linspace(0, 2 * np.pi, len(ring), endpoint=False)
        lms[ring] = np.c_[cx + 20 * np.cos(t), 80 + 8 * np.sin(t)]  # 40 px wide, 16 tall
    mask = openings_mask(lms, (200, 200))
    band = round(EYE_MARGIN * 40)
    column = np.flatnonzero(mask[:, 60])  # through the left eye's middle
    assert column.min() == pytest.approx(72 - band, abs=2)  # the band over the eye
    assert column.max() <= 89  # under it: the opening and a pixel
    assert not mask[40:60, 100].any()  # nothing between the eyes' bands


def test_shut_eyes_show_lids_not_the_photos_open_eye(ict, avatar, photo_bytes, monkeypatch
                                                     ) -> None:
    """With the band over the eyes left out of the texture, the avatar's shut lids are
    nearer the skin round them than when only the eye openings are (the photo's lash line
    painted mid-lid), by scripts/bench_lids.py's measure."""
    import runpy

    import avatars.builder as builder_module

    bench = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "bench_lids.py"))
    monkeypatch.setattr(builder_module, "EYE_MARGIN", 0.0)
    builder = AvatarBuilder(ict, AvatarConfig(texture_size=512))
    try:
        openings_only = builder.build(decode_photo(photo_bytes), "london 001", "x")
    finally:
        builder.close()
    contrast = []
    for a in (avatar, openings_only):
        shape = torch.from_numpy(a.shape[None].copy())
        shut, opened = bench["shut_and_open"](ict, shape, a.texture, a.iris_rgb)
        contrast.append(bench["lid_scores"](shut, opened)["contrast"])
    assert contrast[0] < contrast[1] - 2.0, contrast
