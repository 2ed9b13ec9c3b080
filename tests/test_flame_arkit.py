"""``--model flame``: FLAME's head driven by ICT's parameters through the fitted ARKit ->
FLAME map. The FLAME files here are made from ICT's own face (turned and moved, in
metres, its 53 ARKit shapes as FLAME expression components), so the right map is known:
it must give ICT's shapes back; a second file skins the lower face to a jaw joint and
drops jawOpen, so only turning the jaw can match it."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from flame_files import (
    ICT_TO_TEST_FLAME_DEG,
    flame_from_ict,
    with_skinned_jaw,
    write_embedding,
    write_flame_pickle,
)

import engines.face.flame_arkit as flame_arkit
from engines.face.arkit_to_flame import fit_arkit_map
from engines.face.flame import FlameModel
from engines.face.flame_arkit import FlameArkitModel, load_flame_arkit
from engines.face.flame_landmarks import load_landmark_embedding
from engines.files.assets import asset_root
from vn3d.cli import main

GRID = asset_root() / "video" / "grid_corpus"


@pytest.fixture(scope="module")
def ict_flame(ict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("flame_from_ict")
    arrays, emb, keep = flame_from_ict(ict)
    jaw = with_skinned_jaw(arrays, 300 + ict.expression_names.index("jawOpen"))
    return {
        "flame": write_flame_pickle(root / "generic_model.pkl", arrays),
        "jaw_flame": write_flame_pickle(root / "jaw" / "generic_model.pkl", jaw),
        "landmarks": write_embedding(root / "landmark_embedding.npy", emb),
        "keep": keep, "arrays": arrays,
    }


@pytest.fixture(scope="module")
def flame_cache(ict_flame: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding the ARKit map of this module's FLAME, fitted once (the fit and its
    caching are tested on their own: test_the_map_is_fitted_once_and_cached)."""
    root = tmp_path_factory.mktemp("flame-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VN3D_CACHE", str(root))
        load_flame_arkit(ict_flame["flame"], ict_flame["landmarks"])
    return root


@pytest.fixture(scope="module")
def model(ict_flame: dict, flame_cache: Path) -> FlameArkitModel:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VN3D_CACHE", str(flame_cache))
        return load_flame_arkit(ict_flame["flame"], ict_flame["landmarks"])


def test_the_map_gives_icts_shapes_back(ict, model: FlameArkitModel) -> None:
    arkit = model.arkit
    assert arkit.names == ict.expression_names and arkit.n_points == len(model.flame.v_template)
    moving = np.abs(ict.expression_dirs.numpy()).reshape(53, -1).max(1) > 0.05  # cm
    assert moving.sum() >= 40
    assert arkit.residual[moving].max() < 0.03
    diagonal = np.diag(arkit.matrix[:53])
    assert np.abs(diagonal[moving] - 1).max() < 0.1
    off = arkit.matrix[:53] - np.diag(diagonal)
    assert np.abs(off).max() < 0.1 and np.abs(arkit.matrix[53:]).max() < 0.1  # the extras
    assert not arkit.jaw.any()  # nothing is skinned to the jaw: no jaw turn helps


def test_flame_moves_like_ict(ict, model: FlameArkitModel, ict_flame: dict) -> None:
    """Random ARKit weights: FLAME's vertices within 0.3 mm of ICT's (turned, in metres)."""
    rng = np.random.default_rng(1)
    psi = torch.as_tensor(rng.uniform(0, 1, (4, 53)), dtype=torch.float32)
    psi[:, [ict.expression_names.index(n) for n in ict.expression_names
            if n.startswith("eyeLook")]] = 0  # ICT turns its eyeballs for these: not skin
    pose = torch.zeros(4, 6)
    with torch.no_grad():
        ours = model(torch.zeros(4, 300), psi, pose).numpy()  # (4, V, 3) m
        theirs = ict(torch.zeros(4, 100), psi, pose)[:, ict_flame["keep"]].numpy()
    a = np.radians(ICT_TO_TEST_FLAME_DEG)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    theirs = theirs * 0.01 @ rot.T + [0.01, -0.02, 0.03]
    moved = np.linalg.norm(theirs - ict_flame["arrays"]["v_template"], axis=2).max()
    assert moved > 0.005  # the weights move the face by more than 5 mm somewhere
    assert np.linalg.norm(ours - theirs, axis=2).max() < 3e-4


def test_head_and_gaze_go_to_flames_joints(model: FlameArkitModel) -> None:
    pose = torch.tensor([[0.1, -0.2, 0.05, 0.0, 0.15, 0.0]])
    psi = torch.zeros(1, 53)
    psi[0, model.expression_names.index("eyeLookUp_L")] = 1.0
    _, full = model.flame_parameters(psi, pose)  # (1, 15)
    torch.testing.assert_close(full[0, 3:6], pose[0, :3])  # the head turns on the neck
    assert not full[0, :3].any() and not full[0, 6:9].any()  # global and jaw still
    assert full[0, 9:12].norm() > 0.15 and full[0, 12:15].norm() > 0.1  # both eyes turn
    assert (full[0, 9:12] - full[0, 12:15]).abs().max() > 0.05  # the left eye looks up too


def test_jaw_open_turns_flames_jaw(ict, ict_flame: dict) -> None:
    flame = FlameModel(ict_flame["jaw_flame"], n_expression=None)
    arkit = fit_arkit_map(ict, flame, load_landmark_embedding(ict_flame["landmarks"]))
    k = ict.expression_names.index("jawOpen")
    assert arkit.jaw[k, 0] > 0.03 and not arkit.jaw[k, 1:].any()
    assert arkit.residual[k] < 0.5  # the expression basis alone cannot do it (ratio ~1)
    model = FlameArkitModel(flame, arkit)
    psi = torch.zeros(1, 53)
    psi[0, k] = 1.0
    with torch.no_grad():
        rest = model(torch.zeros(1, 300), torch.zeros(1, 53), torch.zeros(1, 6))[0]
        open_ = model(torch.zeros(1, 300), psi, torch.zeros(1, 6))[0]
    assert (rest[:, 1] - open_[:, 1]).max() > 0.005  # the chin drops by > 5 mm


def test_the_map_is_fitted_once_and_cached(ict_flame: dict, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VN3D_CACHE", str(tmp_path))
    first = load_flame_arkit(ict_flame["flame"], ict_flame["landmarks"])
    assert len(list(tmp_path.rglob("*.npz"))) == 1

    def no_fit(*args: object) -> None:
        raise AssertionError("the cached map should have been used")

    monkeypatch.setattr(flame_arkit, "fit_arkit_map", no_fit)
    again = load_flame_arkit(ict_flame["flame"], ict_flame["landmarks"])
    np.testing.assert_array_equal(first.arkit.matrix, again.arkit.matrix)


def test_render_and_retarget_a_clip_with_model_flame(
        ict_flame: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, seed_cache, flame_cache: Path) -> None:
    monkeypatch.setenv("VN3D_FLAME_MODEL", str(ict_flame["flame"]))
    monkeypatch.setenv("VN3D_FLAME_LANDMARKS", str(ict_flame["landmarks"]))
    monkeypatch.setenv("VN3D_CACHE", str(seed_cache(tmp_path / "cache", flame_cache)))
    import cv2

    images = {}
    for name, expression in (("rest", ""), ("open", "jawOpen=1")):
        out = tmp_path / f"{name}.png"
        assert main(["render", "--model", "flame", "--size", "160", "--samples", "0",
                     "--expression", expression, "--out", str(out)]) == 0
        images[name] = cv2.imread(str(out)).astype(int)
    changed = np.abs(images["open"] - images["rest"]).sum(2) > 30
    ys = np.nonzero(changed)[0]
    assert changed.sum() > 100 and ys.mean() > 80  # the lower half of the head moved

    target = tmp_path / "someone.npz"
    ict_file = tmp_path / "ict_identity.npz"  # no model field: an ICT identity
    np.savez(ict_file, shape=np.zeros(100, np.float32))
    assert main(["retarget-clip", str(GRID / "bbaf2n.mpg"), "--model", "flame", "--target",
                 str(ict_file), "--out", str(tmp_path / "no.mp4")]) == 2
    assert "is a ict head; use --model ict" in capsys.readouterr().err
    np.savez(target, shape=np.random.default_rng(0).normal(size=300).astype(np.float32),
             model="flame")
    clip = tmp_path / "clip.mp4"
    assert main(["retarget-clip", str(GRID / "bbaf2n.mpg"), "--model", "flame", "--target",
                 str(target), "--size", "128", "--out", str(clip)]) == 0
    with av.open(str(clip)) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    assert len(frames) == 75
    mouth = frames[:, 70:110, 44:84].astype(float)  # (T, 40, 40, 3)
    # the FLAME head speaks: its mouth area changes by 9 levels a pixel at the most (the
    # area's mean brightness moves under 2 levels in all, as lips and teeth trade places)
    assert np.abs(mouth - mouth[0]).mean(axis=(1, 2, 3)).max() > 4

    assert main(["retarget-clip", str(GRID / "bbaf2n.mpg"), "--model", "flame",
                 "--target", "sample:london_001", "--out", str(clip)]) == 2
    assert "is built on the ict head" in capsys.readouterr().err


def test_serve_with_model_flame(ict_flame: dict, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, seed_cache,
                                flame_cache: Path) -> None:
    """The live server on FLAME: the default head and target files in the picker, no
    uploads without DECA's files, no hair (ICT's), the modes rendering through the map."""
    import asyncio
    import json
    import time
    from fractions import Fraction

    from server.app import App
    from server.config import ServerConfig
    from server.protocol import ProtocolError

    monkeypatch.setenv("VN3D_FLAME_MODEL", str(ict_flame["flame"]))
    monkeypatch.setenv("VN3D_FLAME_LANDMARKS", str(ict_flame["landmarks"]))
    monkeypatch.setenv("VN3D_CACHE", str(seed_cache(tmp_path / "cache", flame_cache)))
    for absent in ("VN3D_DECA_MODEL", "VN3D_FLAME_UVS"):
        monkeypatch.setenv(absent, str(tmp_path / "absent"))
    someone = tmp_path / "someone.npz"
    np.savez(someone, shape=np.random.default_rng(0).normal(size=300).astype(np.float32),
             model="flame")
    config = ServerConfig(size=64, model="flame", target_files=[str(someone)],
                          avatar_store=str(tmp_path / "store"))
    app = App(config)
    app.prepare()
    assert [e["id"] for e in app.picker.entries(None)] == ["default", "file:someone"]
    assert app.picker.thumbnail("file:someone", None)[:4] == b"\x89PNG"
    session = app.new_session()
    welcome = app.welcome(session)
    assert welcome["avatars"] is False and welcome["hairstyles"] == []
    assert app.routes.respond("/hairstyles/bob.png").status_code == 404  # no hair on FLAME

    async def refused(msg: dict) -> str:
        with pytest.raises(ProtocolError) as err:
            await app.dispatch(session, msg)
        return err.value.code

    assert asyncio.run(refused({"type": "avatar_begin", "name": "me.jpg", "bytes": 10})) \
        == "no_avatar_builds"  # no DECA files here
    assert "DECA model" in app.builds.unavailable and "FLAME UV layout" in app.builds.unavailable
    assert asyncio.run(refused({"type": "hair", "style": "none"})) == "ict_only"
    assert asyncio.run(app.dispatch(session, {"type": "target", "id": "file:someone"}))["ok"]

    frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 90, np.uint8), "rgb24")
    frame.pts, frame.time_base = 0, Fraction(1, 90000)

    def render() -> np.ndarray:
        session.prepare()
        return session.render(frame, time.perf_counter(), session.track(frame))

    neutral = render()
    session.mode = "sliders"
    session.sliders = np.array([0, 0, 0, 0, 1, 0], np.float32)  # surprised, by the ERM
    surprised = render()
    assert neutral.shape == (64, 64, 3)
    assert np.abs(neutral.astype(int) - surprised.astype(int)).max() > 40
    session.close_retargeter()

    from engines.dataset.loader import FORMAT_VERSION

    ict_dataset = tmp_path / "ict_dataset"
    ict_dataset.mkdir()
    (ict_dataset / "manifest.json").write_text(json.dumps(
        {"format_version": FORMAT_VERSION, "model": "ict", "subjects": {}}))
    with pytest.raises(ValueError, match="its subjects are ict heads; serve it with --model ict"):
        App(ServerConfig(size=64, model="flame", datasets=[str(ict_dataset)],
                         avatar_store=str(tmp_path / "store")))
    with pytest.raises(ValueError, match="is a flame head; use --model flame"):
        App(ServerConfig(size=64, target_files=[str(someone)], sample_gallery=False,
                         avatar_store=str(tmp_path / "store")))


def test_bench_flame_map_reports_each_shape_against_no_motion(ict_flame: dict,
                                                             tmp_path: Path) -> None:
    """scripts/bench_flame_map.py: per ARKit shape, ICT's motion (the error of no motion),
    the fit's error and their ratio; the jaw turn where the jaw makes the shape."""
    import json
    import runpy

    bench = runpy.run_path(str(Path(__file__).parents[1] / "scripts" / "bench_flame_map.py"))
    out = tmp_path / "map.json"
    summary = bench["main"](["--flame", str(ict_flame["jaw_flame"]), "--landmarks",
                             str(ict_flame["landmarks"]), "--out", str(out)])
    shapes = {r["shape"]: r for r in json.loads(out.read_text())["shapes"]}
    assert len(shapes) == 53 and summary["mean_ratio_moving_shapes"] < 0.1
    smile = shapes["mouthSmile_L"]
    assert smile["motion_mm"] > 1.0 and smile["error_mm"] < 0.05 * smile["motion_mm"]
    jaw = shapes["jawOpen"]
    assert jaw["jaw_rad"][0] > 0.03 and jaw["ratio"] < 0.5  # only the jaw turn can do it
    assert jaw["error_mm"] == pytest.approx(jaw["ratio"] * jaw["motion_mm"], rel=1e-4)


PORTRAIT = asset_root() / "faces" / "london_set" / "london_004_neutral.jpg"


def use_deca(ict_flame: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             cache: Path) -> np.ndarray:
    """The ICT-made FLAME with a DECA checkpoint (its code: returned) and a UV template;
    no MICA and no albedo model (the photo gives the texture); ``cache`` as the cache."""
    from flame_files import write_deca, write_head_template

    from engines.flame_encoders.deca import CODE_SIZE

    code = np.zeros(CODE_SIZE, np.float32)
    code[:100] = np.random.default_rng(1).normal(scale=0.3, size=100)  # shape
    code[200:203] = [0.05, np.radians(10), 0.0]  # DECA's global rotation
    code[206:209] = [7.0, 0.0, 0.01]  # camera: the face fills about half the crop
    monkeypatch.setenv("VN3D_FLAME_MODEL", str(ict_flame["flame"]))
    monkeypatch.setenv("VN3D_FLAME_LANDMARKS", str(ict_flame["landmarks"]))
    monkeypatch.setenv("VN3D_DECA_MODEL", str(write_deca(tmp_path / "deca_model.tar", code)))
    monkeypatch.setenv("VN3D_FLAME_UVS", str(write_head_template(
        tmp_path / "head_template.obj", ict_flame["arrays"])))
    for absent in ("VN3D_MICA_MODEL", "VN3D_FLAME_ALBEDO"):
        monkeypatch.setenv(absent, str(tmp_path / "absent"))
    monkeypatch.setenv("VN3D_CACHE", str(cache))
    return code


def test_a_flame_avatar_from_one_portrait(ict, ict_flame: dict, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture, seed_cache,
                                          flame_cache: Path) -> None:
    """``vn3d avatar build --model flame``: DECA's shape (no MICA here), the photo's texture
    on FLAME's UVs (no albedo model), DECA's camera kept as the photo's; the avatar is a
    store avatar like any other (zip, GLB in metres) and a --model flame target."""
    import io

    import cv2
    import trimesh

    from avatars.flame_avatar import photo_camera
    from avatars.store import AvatarStore
    from engines.flame_encoders.photo_to_flame import load_photo_to_flame
    from engines.tracking.arkit_mapping import arkit_names
    from engines.tracking.tracker import FaceTracker, TrackerConfig

    code = use_deca(ict_flame, tmp_path, monkeypatch, seed_cache(tmp_path / "cache", flame_cache))
    store = tmp_path / "avatars"
    monkeypatch.setenv("VN3D_AVATARS", str(store))
    photo_path = PORTRAIT

    assert main(["avatar", "build", str(photo_path), "--model", "flame", "--hair",
                 "side_part"]) == 2
    assert "no strand hair" in capsys.readouterr().err
    assert main(["avatar", "build", str(photo_path), "--model", "flame", "--name", "me"]) == 0
    printed = capsys.readouterr().out
    assert "MICA not found, DECA's shape is used" in printed
    (entry,) = AvatarStore(store).entries(everyone=True)
    model = load_flame_arkit()
    avatar = AvatarStore(store).load(entry.id, model)
    assert avatar.model == "flame" and avatar.hair is None and avatar.name == "me"
    np.testing.assert_allclose(avatar.shape[:100], code[:100], atol=1e-5)
    assert avatar.texture.shape == (512, 512, 3)
    red, green, blue = np.median(avatar.texture.reshape(-1, 3), 0)
    assert red > green > blue  # skin from the photo
    glb = trimesh.load(io.BytesIO(AvatarStore(store).glb(entry.id)), file_type="glb")
    assert 0.08 < glb.extents.max() < 0.4  # a face in metres
    with pytest.raises(ValueError, match="for model 'flame', not 'ict'"):
        AvatarStore(store).load(entry.id, ict)

    # the photo's camera: the unposed head under it lands where DECA's camera puts the
    # posed head (the global rotation moved into the camera)
    image = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    tracker = FaceTracker(arkit_names(), TrackerConfig(video=False, smoothing=None))
    try:
        landmarks = tracker.process(image, 0.0).landmarks[:, :2] * [w, h]
    finally:
        tracker.close()
    reader, _ = load_photo_to_flame()
    fit = reader(image, landmarks)
    camera = photo_camera(fit, reader, (h, w), landmarks, avatar.shape, 53)
    pose = torch.from_numpy(fit.pose[None].copy())
    pose[:, :3] = 0
    still = reader.flame(torch.from_numpy(fit.shape[None].copy()),
                         torch.from_numpy(fit.expression[None].copy()), pose)[0].numpy()
    rot = cv2.Rodrigues(camera.rotation)[0]
    cam = still @ rot.T + camera.translation
    pixels = camera.focal_px * cam[:, :2] / cam[:, 2:] + [w / 2, h / 2]
    np.testing.assert_allclose(pixels, fit.project(fit.vertices), atol=0.05)

    clip = tmp_path / "avatar.mp4"
    assert main(["retarget-clip", str(GRID / "bbaf2n.mpg"), "--model", "flame", "--target",
                 entry.id, "--size", "128", "--out", str(clip)]) == 0
    with av.open(str(clip)) as c:
        frame = next(iter(c.decode(video=0))).to_ndarray(format="rgb24").astype(int)
    face = frame[40:100, 34:94].reshape(-1, 3)
    assert (face[:, 0] > face[:, 2] + 15).mean() > 0.3  # the photo's skin on the head


def test_a_flame_server_builds_and_lists_flame_avatars(
        ict, ict_flame: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed_cache,
        flame_cache: Path, probe_avatar) -> None:
    """With DECA's files a FLAME server turns an uploaded portrait into a FLAME avatar that
    its uploader can pick; ICT avatars in the same store stay out of its picker."""
    import asyncio
    import base64
    import hashlib
    import json

    from avatars.store import AvatarStore
    from server.app import App
    from server.config import ServerConfig

    use_deca(ict_flame, tmp_path, monkeypatch, seed_cache(tmp_path / "cache", flame_cache))
    store = AvatarStore(tmp_path / "store")
    ict_id = store.add(probe_avatar, ict)  # an ICT avatar in the same store
    app = App(ServerConfig(size=64, model="flame", avatar_store=str(store.root)))
    app.prepare()
    session = app.new_session("user-0123456789abcdef")
    welcome = app.welcome(session)
    assert welcome["avatars"] is True and welcome["hairstyles"] == []
    assert [t["id"] for t in welcome["targets"]] == ["default"]  # not the ICT avatar
    assert not app.catalogue.visible_avatar(ict_id, session.user)

    data = PORTRAIT.read_bytes()

    async def upload() -> dict:
        await app.dispatch(session, {"type": "avatar_begin", "name": "me", "bytes": len(data)})
        step = 32 * 1024
        for seq, i in enumerate(range(0, len(data), step)):
            await app.dispatch(session, {"type": "avatar_chunk", "seq": seq,
                                         "data": base64.b64encode(data[i:i + step]).decode()})
        return await app.dispatch(session, {"type": "avatar_end",
                                            "sha256": hashlib.sha256(data).hexdigest()})

    reply = asyncio.run(upload())
    assert reply["type"] == "avatar" and reply["ok"], json.dumps(reply)[:300]
    assert [t["id"] for t in reply["targets"]] == ["default", reply["id"]]
    assert store.entry(reply["id"]).model == "flame"
    assert app.picker.thumbnail(reply["id"], session.user)[:4] == b"\x89PNG"
    assert asyncio.run(app.dispatch(session, {"type": "target", "id": reply["id"]}))["ok"]
    assert app.picker.entries(None) == app.picker.entries(None)[:1]  # another user: not it
    asyncio.run(app.builds.close())


def test_arkit_weights_from_a_flame_reading(model: FlameArkitModel) -> None:
    """DECA reads FLAME coefficients and a jaw turn; their ARKit ψ (for datasets and the
    ERM's space) comes back through the map, within [0, 1]."""
    rng = np.random.default_rng(4)
    for _ in range(3):
        truth = np.where(rng.random(53) < 0.15, rng.uniform(0.2, 1.0, 53), 0.0)
        exp = model.arkit.matrix @ truth
        jaw = model.arkit.jaw.T @ truth
        psi, error = model.arkit_from_flame(exp, jaw)
        assert psi.shape == (53,) and psi.min() >= 0 and psi.max() <= 1
        assert error < 0.1 and np.abs(psi - truth).mean() < 0.05, (error, np.abs(psi - truth))
    psi, error = model.arkit_from_flame(np.zeros(50), np.zeros(3))
    assert np.abs(psi).max() < 1e-6 and error == 0.0


def test_a_flame_dataset_the_papers_way(ict_flame: dict, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture, seed_cache,
                                        flame_cache: Path) -> None:
    """``vn3d dataset build --model flame``: DECA's shape (no MICA here) per subject, DECA's
    reading per photo (kept, and as ARKit ψ), the ERM for the rest; a FLAME server and
    ``vn3d eval`` read it; an ICT run cannot resume it."""
    import json

    from engines.dataset.loader import Dataset
    from engines.emotion.facs import LABELS

    code = use_deca(ict_flame, tmp_path, monkeypatch, seed_cache(tmp_path / "cache", flame_cache))
    photos = tmp_path / "photos" / "someone"
    photos.mkdir(parents=True)
    london = asset_root() / "faces" / "london_set"
    (photos / "neutral.jpg").write_bytes((london / "london_003_neutral.jpg").read_bytes())
    (photos / "happy.jpg").write_bytes((london / "london_003_smiling.jpg").read_bytes())
    out = tmp_path / "dataset"
    assert main(["dataset", "build", str(photos.parent), "--model", "flame", "--out", str(out),
                 "--workers", "1"]) == 0
    ds = Dataset(out)
    assert ds.manifest["model"] == "flame" and ds.subjects == ["someone"]
    assert sorted(ds.manifest["subjects"]["someone"]["synthesised"]) == sorted(
        e for e in LABELS if e not in ("neutral", "happy"))
    model = load_flame_arkit()
    np.testing.assert_allclose(ds.shape("someone", model)[:100], code[:100], atol=1e-5)
    happy = np.load(out / "subjects" / "someone" / "happy.npz")
    np.testing.assert_allclose(happy["deca_expression"], code[150:200], atol=1e-5)
    np.testing.assert_allclose(happy["pose"][:3], code[200:203], atol=1e-5)  # the head turn
    psi, _ = ds.parameters("someone", "happy")
    assert psi.min() >= 0 and psi.max() <= 1 and 0 <= float(happy["map_error"]) <= 1
    surprised, _ = ds.parameters("someone", "surprised")  # by the ERM
    assert surprised[model.expression_names.index("jawOpen")] > 0.2
    target = ds.target("someone", model)
    assert target.texture.shape == (512, 512, 3) and target.hair is None

    assert main(["eval", str(out), "--no-synthetic"]) == 0
    assert "2 pairs" in capsys.readouterr().out
    assert main(["eval", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mesh (synthetic, 7 meshes): median" in printed  # DECA reads each render
    mesh = json.loads((out / "eval.json").read_text())["mesh"]["synthetic"]
    assert all(np.isfinite(r["median_mm"]) and r["points"] > 100 for r in mesh["rows"])
    assert main(["dataset", "build", str(photos.parent), "--out", str(out)]) == 2
    assert "holds a flame dataset; resume it with --model flame" in capsys.readouterr().err
    assert main(["retarget-clip", str(GRID / "bbaf2n.mpg"), "--model", "flame", "--target",
                 f"{out}:someone", "--size", "96", "--out", str(tmp_path / "clip.mp4")]) == 0


def test_the_deca_reader_tracks_through_the_map(ict_flame: dict, model: FlameArkitModel,
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                flame_cache: Path) -> None:
    """``--reader deca``: DECA's expression and jaw come back as the ARKit ψ that made them,
    its global pose as the head rotation; a clip retargets with it."""
    import cv2
    from flame_files import write_deca

    from engines.flame_encoders.deca import CODE_SIZE
    from engines.tracking.tracker import FaceTracker, TrackerConfig

    names = list(model.expression_names)
    truth = np.zeros(53)
    truth[names.index("jawOpen")], truth[names.index("mouthSmile_L")] = 0.6, 0.8
    full = model.arkit.matrix @ truth  # FLAME coefficients; DECA reads the first 50
    assert np.abs(full[50:]).max() < 0.05
    code = np.zeros(CODE_SIZE, np.float32)
    code[150:200] = full[:50]
    code[200:203] = [0.1, -0.25, 0.05]  # the head's rotation
    code[203:206] = model.arkit.jaw.T @ truth
    code[206] = 7.0
    monkeypatch.setenv("VN3D_FLAME_MODEL", str(ict_flame["flame"]))
    monkeypatch.setenv("VN3D_FLAME_LANDMARKS", str(ict_flame["landmarks"]))
    monkeypatch.setenv("VN3D_DECA_MODEL", str(write_deca(tmp_path / "deca_model.tar", code)))
    monkeypatch.setenv("VN3D_CACHE", str(shutil.copytree(flame_cache, tmp_path / "cache")))
    image = cv2.cvtColor(cv2.imread(str(PORTRAIT)), cv2.COLOR_BGR2RGB)
    with FaceTracker(model.expression_names, TrackerConfig(
            video=False, smoothing=None, reader="deca")) as tracker:
        result = tracker.process(image, 0.0)
    assert result.status == "tracked"
    assert np.abs(result.expression - truth).max() < 0.05, np.abs(result.expression - truth)
    np.testing.assert_allclose(result.rotation, code[200:203], atol=1e-5)

    short = tmp_path / "short.mp4"  # DECA takes ~0.2 s a frame here: 8 frames of speech
    with av.open(str(GRID / "bbaf2n.mpg")) as src, av.open(str(short), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == 8:
                break
            dst.mux(stream.encode(frame.reformat(format="yuv420p")))
        dst.mux(stream.encode())
    clip = tmp_path / "deca.mp4"
    assert main(["retarget-clip", str(short), "--reader", "deca", "--size", "96",
                 "--out", str(clip)]) == 0
    with av.open(str(clip)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8
