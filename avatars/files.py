"""Avatar files: a directory (or the same files in a zip) and one GLB.

Layout (``FORMAT_VERSION`` 1):

    manifest.json   format version, model, name, parameter sizes, source image sha256,
                    hairstyle, and the sha256 and size of every other file
    params.npz      shape (n_shape,), photo_expression (E,), photo_rotation (3,),
                    photo_translation (3,), photo_focal (), photo_size (2,), hair_rgb (3,),
                    iris_rgb (3,) when the photo showed the irises;
                    with hair: hair_positions (32, 32, 100, 3) and hair_extra (32, 32, 100, 1)
    mesh.obj/.mtl   the neutral head (cm) with UVs; textured materials use texture.png
    texture.png     the UV texture, its UDIM tiles side by side (u scaled into [0, 1])
    hair.obj        the strands as polylines (with hair only)
    avatar.glb      head (textured), eyes, teeth and hair ribbons, in metres

:func:`read_avatar` checks everything it reads (manifest, checksums, array shapes and
sizes, zip entry names and sizes) and raises :class:`AvatarFileError` saying what is wrong.
"""

from __future__ import annotations

import io
import itertools
import json
import struct
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch

from avatars.builder import Avatar
from avatars.glb import avatar_glb
from avatars.hair.export import strands_to_obj_lines
from avatars.hair.strands import GRID, POINTS, Hairstyle
from avatars.identity_fit import PhotoFit
from engines.face.model import FaceModel, MeshTopology
from engines.files.assets import sha256_bytes
from engines.render.materials import KIND_IRIS, KIND_SCLERA, Material, material_for
from engines.render.renderer import RenderConfig, hidden_eye_backs

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = ("params.npz", "mesh.obj", "mesh.mtl", "texture.png", "hair.obj", "avatar.glb")
REQUIRED = ("params.npz", "texture.png")
MAX_FILE_BYTES = 64 * 1024 * 1024  # per file, after decompression
MAX_TOTAL_BYTES = 128 * 1024 * 1024  # all of one avatar's files together
MAX_MANIFEST_BYTES = 64 * 1024
MAX_TEXTURE_SIDE = 4096
MAX_COORD = 200.0  # cm: any hair or parameter-made point beyond this is not a head


class AvatarFileError(ValueError):
    """An avatar file or folder is corrupt, truncated or not an avatar; says what."""


# ---------------------------------------------------------------------------------------
# writing


def avatar_files(avatar: Avatar, model: FaceModel) -> dict[str, bytes]:
    """Every file of an avatar, by name, manifest included."""
    files: dict[str, bytes] = {"params.npz": _params_bytes(avatar)}
    ok, png = cv2.imencode(".png", avatar.texture[:, :, ::-1])
    if not ok:
        raise AvatarFileError("could not encode the texture")
    files["texture.png"] = png.tobytes()
    with torch.no_grad():
        head = model.prepare_identity(torch.from_numpy(avatar.shape[None].copy()))[0].numpy()
    obj, mtl = head_obj(head, model, avatar.texture.shape[1] // avatar.texture.shape[0],
                        avatar.iris_rgb)
    files["mesh.obj"], files["mesh.mtl"] = obj.encode(), mtl.encode()
    if avatar.hair is not None:
        with tempfile.TemporaryDirectory() as tmp:
            strands_to_obj_lines(avatar.hair, str(Path(tmp) / "hair.obj"))
            files["hair.obj"] = (Path(tmp) / "hair.obj").read_bytes()
    files["avatar.glb"] = avatar_glb(avatar, head, model)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": avatar.model,
        "name": avatar.name,
        "sizes": {
            "shape": int(avatar.shape.shape[0]),
            "expression": int(avatar.photo.expression.shape[0]),
            "texture": list(avatar.texture.shape),
            "hair": None if avatar.hair is None else list(avatar.hair.positions.shape),
        },
        "hairstyle": None if avatar.hair is None else avatar.hair.name,
        "source_image_sha256": avatar.source_sha256,
        "files": {n: {"sha256": sha256_bytes(b), "bytes": len(b)} for n, b in files.items()},
    }
    files[MANIFEST] = json.dumps(manifest, indent=2).encode()
    return files


def _params_bytes(avatar: Avatar) -> bytes:
    p = avatar.photo
    arrays = {
        "shape": avatar.shape.astype(np.float32),
        "photo_expression": p.expression.astype(np.float32),
        "photo_rotation": np.asarray(p.rotation, np.float64),
        "photo_translation": np.asarray(p.translation, np.float64),
        "photo_focal": np.float64(p.focal_px),
        "photo_size": np.array([p.width, p.height], np.int64),
        "photo_residual": np.float64(p.residual_px),
        "hair_rgb": np.asarray(avatar.hair_rgb, np.float32),
    }
    if avatar.iris_rgb is not None:
        arrays["iris_rgb"] = np.asarray(avatar.iris_rgb, np.float32)
    if avatar.hair is not None:
        arrays["hair_positions"] = avatar.hair.positions.astype(np.float32)
        arrays["hair_extra"] = avatar.hair.extra.astype(np.float32)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def over_the_iris(topology: MeshTopology, looks: list[Material]) -> np.ndarray:
    """(F,) bool: eyeball (sclera) faces whose centre lies over the iris' cap."""
    if topology.eye_directions is None:
        return np.zeros(len(topology.faces), bool)
    d = topology.eye_directions[topology.faces].mean(1)  # (F, 3)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    sclera = np.array([look.kind == KIND_SCLERA for look in looks])[topology.face_material]
    return sclera & (d[:, 2] > np.cos(np.radians(RenderConfig().iris_angle_deg)))


def head_obj(vertices: np.ndarray, model: FaceModel, tiles: int,
             iris_rgb: tuple[float, float, float] | None = None) -> tuple[str, str]:
    """OBJ and MTL text for a head (V, 3); UDIM u scaled by 1 / tiles into one texture.
    OBJ has no alpha masks: the eyeballs are cut open over the irises (the cornea) and
    their backs left out, so an OBJ viewer shows the irises, in ``iris_rgb`` when given."""
    t = model.topology
    looks = [material_for(n) for n in t.material_names]
    drop = hidden_eye_backs(t, looks) | over_the_iris(t, looks)
    uv = t.uvs.copy()
    uv[:, 0] /= tiles
    units = {0.01: "centimetres", 1.0: "metres"}.get(model.units_in_metres, "model units")
    lines = [f"# vn3d avatar head ({model.name}), {units}", "mtllib mesh.mtl"]
    lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in vertices]
    lines += [f"vt {u:.6f} {v:.6f}" for u, v in uv]
    mtl = []
    for m, name in enumerate(t.material_names):
        look = material_for(name)
        if look.alpha <= 0.0:
            continue
        sel = np.nonzero((t.face_material == m) & ~drop)[0]
        if not len(sel):
            continue
        lines.append(f"usemtl {name}")
        f, fu = t.faces[sel] + 1, t.face_uvs[sel] + 1
        lines += [
            f"f {a}/{ua} {b}/{ub} {c}/{uc}"
            for (a, b, c), (ua, ub, uc) in zip(f.tolist(), fu.tolist(), strict=True)
        ]
        r, g, b = iris_rgb if look.kind == KIND_IRIS and iris_rgb else look.colour
        mtl += [f"newmtl {name}", f"Kd {r:.3f} {g:.3f} {b:.3f}", f"d {look.alpha:.2f}"]
        if look.textured:
            mtl.append("map_Kd texture.png")
    return "\n".join(lines) + "\n", "\n".join(mtl) + "\n"


ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every entry's time: the same files give the same zip


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """The files as a zip, manifest first; byte for byte the same for the same files
    (fixed entry times), so two downloads made at once are one and the same."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files, key=lambda n: (n != MANIFEST, n)):  # manifest first
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # a plain readable file
            zf.writestr(info, files[name])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# reading


def read_files(path: Path | bytes) -> dict[str, bytes]:
    """An avatar's files from a folder, a .zip path or zip bytes. Only the files the
    manifest lists are read, each after its size is checked against the manifest, the
    per-file limit and the total (nothing is inflated or read past what was promised)."""
    if isinstance(path, bytes | bytearray):
        return _read_zip(io.BytesIO(path))
    path = Path(path)
    if path.is_dir():
        return _read_folder(path)
    if path.is_file():
        with open(path, "rb") as f:
            return _read_zip(f)
    raise AvatarFileError(f"{path} is neither an avatar folder nor a zip file")


def _read_folder(path: Path) -> dict[str, bytes]:
    def regular_file(name: str) -> Path:
        p = path / name
        if p.is_symlink() or not p.is_file():
            raise AvatarFileError(f"{name} is missing or not a regular file")
        return p

    manifest_file = regular_file(MANIFEST)
    if manifest_file.stat().st_size > MAX_MANIFEST_BYTES:
        raise AvatarFileError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    files = {MANIFEST: manifest_file.read_bytes()}
    sizes = listed_sizes(parse_manifest(files[MANIFEST]))
    for name, size in sizes.items():
        p = regular_file(name)
        if p.stat().st_size != size:
            raise AvatarFileError(f"{name} has {p.stat().st_size} bytes; the manifest says {size}")
        files[name] = p.read_bytes()
    return files


def _read_zip(stream) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(stream) as zf:
            entries = _checked_entries(zf.infolist())
            manifest = entries.get(MANIFEST)
            if manifest is None:
                raise AvatarFileError("manifest.json is missing")
            files = {MANIFEST: _inflate(zf, manifest, MAX_MANIFEST_BYTES)}
            sizes = listed_sizes(parse_manifest(files[MANIFEST]))
            for name, size in sizes.items():
                info = entries.get(name)
                if info is None:
                    raise AvatarFileError(f"{name} is missing")
                if info.file_size != size:
                    raise AvatarFileError(f"{name} has {info.file_size} bytes; the manifest "
                                          f"says {size}")
                files[name] = _inflate(zf, info, size)
            return files
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        if isinstance(exc, AvatarFileError):
            raise
        raise AvatarFileError(f"not a readable avatar zip: {exc}") from exc


def _checked_entries(infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """The zip's entries by name: only known names, each once, none sharing bytes."""
    if len(infos) > len(FILES) + 1:
        raise AvatarFileError(f"the avatar zip has {len(infos)} entries; at most "
                              f"{len(FILES) + 1} are possible")
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename not in (MANIFEST, *FILES):
            raise AvatarFileError(f"unexpected entry {info.filename!r} in the avatar zip")
        if info.filename in entries:
            raise AvatarFileError(f"{info.filename} appears twice in the avatar zip")
        entries[info.filename] = info
    spans = sorted((i.header_offset, i.header_offset + i.compress_size) for i in infos)
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise AvatarFileError("entries of the avatar zip overlap")
    return entries


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """One entry's bytes, never more than ``limit`` (checked before and while reading)."""
    if info.file_size > limit:
        raise AvatarFileError(f"{info.filename} is larger than {limit} bytes")
    with zf.open(info) as f:
        data = f.read(limit + 1)
    if len(data) != info.file_size:
        raise AvatarFileError(f"{info.filename} does not inflate to its stated size")
    return data


def parse_manifest(data: bytes) -> dict:
    """manifest.json, checked to be this format's, with a well-formed list of files."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise AvatarFileError(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise AvatarFileError(f"manifest.json: format_version must be {FORMAT_VERSION}")
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise AvatarFileError("manifest.json: 'files' must map names to checksums")
    for name in REQUIRED:
        if name not in listed:
            raise AvatarFileError(f"manifest.json does not list {name}")
    for name, entry in listed.items():
        if name not in FILES:
            raise AvatarFileError(f"manifest.json lists an unknown file {name!r}")
        size = entry.get("bytes") if isinstance(entry, dict) else None
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            raise AvatarFileError(f"manifest.json: {name} needs its size in bytes "
                                  f"(at most {MAX_FILE_BYTES})")
    return manifest


def listed_sizes(manifest: dict) -> dict[str, int]:
    """The size of every file the (parsed) manifest lists; their total is bounded."""
    sizes = {name: entry["bytes"] for name, entry in manifest["files"].items()}
    if sum(sizes.values()) > MAX_TOTAL_BYTES:
        raise AvatarFileError(f"the avatar's files add up to more than {MAX_TOTAL_BYTES} bytes")
    return sizes


def check_files(files: dict[str, bytes]) -> dict:
    """The manifest, after checking it and every file's size and checksum."""
    if MANIFEST not in files:
        raise AvatarFileError("manifest.json is missing")
    manifest = parse_manifest(files[MANIFEST])
    for name, size in listed_sizes(manifest).items():
        if name not in files:
            raise AvatarFileError(f"{name} is missing")
        if len(files[name]) != size:
            raise AvatarFileError(f"{name} has {len(files[name])} bytes; the manifest says {size}")
        if manifest["files"][name].get("sha256") != sha256_bytes(files[name]):
            raise AvatarFileError(f"{name} does not match its checksum (corrupt or truncated)")
    return manifest


def read_avatar(path: Path | bytes, model: FaceModel) -> Avatar:
    """An avatar from a folder, a zip path or zip bytes, checked for ``model``."""
    return avatar_from_files(read_files(path), model)


def avatar_from_files(files: dict[str, bytes], model: FaceModel) -> Avatar:
    """An avatar from its files (see :func:`read_files`), everything checked."""
    manifest = check_files(files)
    if manifest.get("model") != model.name:
        raise AvatarFileError(f"the avatar is for model {manifest.get('model')!r}, "
                              f"not {model.name!r}")
    arrays = load_params(files["params.npz"], param_shapes(model))
    shape = _array(arrays, "shape", (model.n_shape,))
    expression = _array(arrays, "photo_expression", (model.n_expression,))
    rotation = _array(arrays, "photo_rotation", (3,))
    translation = _array(arrays, "photo_translation", (3,))
    focal = float(_array(arrays, "photo_focal", ()))
    size = _array(arrays, "photo_size", (2,)).astype(np.int64)
    hair_rgb = _array(arrays, "hair_rgb", (3,))
    iris_rgb = _array(arrays, "iris_rgb", (3,)) if "iris_rgb" in arrays else None
    colours = hair_rgb if iris_rgb is None else np.r_[hair_rgb, iris_rgb]
    if np.abs(shape).max(initial=0) > 20 or not (colours.min() >= 0 and colours.max() <= 1):
        raise AvatarFileError("params.npz: shape, hair or iris colour out of range")
    hair = None
    if "hair_positions" in arrays:
        pos = _array(arrays, "hair_positions", (GRID, GRID, POINTS, 3))
        extra = _array(arrays, "hair_extra", (GRID, GRID, POINTS, 1))
        if np.abs(pos).max() > MAX_COORD:
            raise AvatarFileError("params.npz: hair points lie far outside a head")
        hair = Hairstyle(str(manifest.get("hairstyle") or "hair"), pos.astype(np.float32),
                         extra.astype(np.float32))
    texture = read_texture(files["texture.png"])
    photo = PhotoFit(shape.astype(np.float32), expression.astype(np.float32), rotation,
                     translation, focal, int(size[0]), int(size[1]),
                     float(arrays.get("photo_residual", np.nan)), np.zeros((0, 2)))
    name = str(manifest.get("name") or "avatar")[:80]
    return Avatar(name, model.name, shape.astype(np.float32), texture, hair,
                  tuple(float(c) for c in hair_rgb), str(manifest.get("source_image_sha256")),
                  photo, None if iris_rgb is None else tuple(float(c) for c in iris_rgb))


def param_shapes(model: FaceModel) -> dict[str, tuple[int, ...]]:
    """Every array params.npz may hold, with its shape; anything else in it is not read."""
    return {
        "shape": (model.n_shape,), "photo_expression": (model.n_expression,),
        "photo_rotation": (3,), "photo_translation": (3,), "photo_focal": (), "photo_size": (2,),
        "photo_residual": (), "hair_rgb": (3,), "iris_rgb": (3,),
        "hair_positions": (GRID, GRID, POINTS, 3),
        "hair_extra": (GRID, GRID, POINTS, 1),
    }


def load_params(data: bytes, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """The arrays of params.npz named in ``shapes``, each read only after its header says
    that shape and a plain number type (an array of another size is never allocated)."""
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {i.filename: i for i in zf.infolist()}
            for key, shape in shapes.items():
                info = members.get(f"{key}.npy")
                if info is None:
                    continue
                if info.file_size > 8 * int(np.prod(shape)) + 4096:  # 8-byte numbers + header
                    raise AvatarFileError(f"params.npz: {key} is larger than {shape} numbers")
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    header_shape, _, dtype = read_header(f)
                    if header_shape != shape or dtype.kind not in "fi" or dtype.itemsize > 8:
                        raise AvatarFileError(f"params.npz: {key} must be numbers of shape "
                                              f"{shape}; got {dtype} {header_shape}")
                with zf.open(info) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, AvatarFileError):
            raise
        raise AvatarFileError(f"params.npz is not readable: {exc}") from exc
    return arrays


def read_texture(png: bytes) -> np.ndarray:
    """texture.png as RGB (S, k*S, 3), its size checked from the PNG header first."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR" or len(png) < 24:
        raise AvatarFileError("texture.png is not a PNG")
    w, h = struct.unpack(">II", png[16:24])
    if not 0 < h <= MAX_TEXTURE_SIDE or w % h or not 1 <= w // h <= 4:
        raise AvatarFileError(f"texture.png must be (S, k*S) with S <= {MAX_TEXTURE_SIDE}, "
                              f"k <= 4; got {w}x{h}")
    texture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if texture is None or texture.shape[:2] != (h, w):
        raise AvatarFileError("texture.png is not a readable PNG")
    return texture[:, :, ::-1].copy()


def _array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in arrays:
        raise AvatarFileError(f"params.npz has no {key!r}")
    a = arrays[key]
    if a.shape != shape or a.dtype.kind not in "fi" or not np.isfinite(a).all():
        raise AvatarFileError(f"params.npz: {key} must be finite numbers of shape {shape}; "
                              f"got {a.dtype} {a.shape}")
    return a
