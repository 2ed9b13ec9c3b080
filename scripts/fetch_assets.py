#!/usr/bin/env python
"""Download the open assets into the asset root: an explicit, opt-in set-up step.

Tests and jobs never download; this is for machines without ``../shared/assets``::

    python scripts/fetch_assets.py [ict_facekit|face_landmarker|canonical_face_model|all]
                                   [--dest DIR]

Each file comes from its public original, is checked (sha256, or for the ICT head the
archive and the packed arrays' shapes), is written atomically (temporary file, then
rename) and is never overwritten once it verifies. A licence notice goes next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np

from engines.files.assets import ASSETS, asset_root, sha256_file

MEDIAPIPE_COMMIT = "85c0cdc7d70653888903c88df45962b764296342"
ICT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
ICT_ARCHIVE_URL = f"https://codeload.github.com/ICT-VGL/ICT-FaceKit/zip/{ICT_COMMIT}"
URLS = {
    "face_landmarker": "https://storage.googleapis.com/mediapipe-models/face_landmarker/"
    "face_landmarker/float16/1/face_landmarker.task",
    "canonical_face_model": "https://raw.githubusercontent.com/google-ai-edge/mediapipe/"
    f"{MEDIAPIPE_COMMIT}/mediapipe/modules/face_geometry/data/canonical_face_model.obj",
}
ICT_SHAPES = {"n_vertices": 26719, "n_identities": 100, "n_expressions": 53}
ICT_KEYS = frozenset(
    {
        "neutral",
        "identity_deltas",
        "expression_deltas",
        "faces",
        "face_uv",
        "uv",
        "face_material",
        "material_names",
        "expression_names",
        "identity_names",
        "vertex_indices_json",
    }
)
NOTICES = {
    "mediapipe": (
        "# MediaPipe assets (Google) - Apache License 2.0\n\n"
        "Fetched unmodified by scripts/fetch_assets.py:\n"
        f"* face_landmarker.task from {URLS['face_landmarker']}\n"
        f"* canonical_face_model.obj from {URLS['canonical_face_model']}\n\n"
        "Licence: Apache-2.0, https://www.apache.org/licenses/LICENSE-2.0 (the text is also "
        f"github.com/google-ai-edge/mediapipe/blob/{MEDIAPIPE_COMMIT}/LICENSE).\n"
    ),
    "ict_facekit": (
        "# ICT-FaceKit data - MIT licence\n\n"
        "`ict_facekit_light.npz` was packed by scripts/fetch_assets.py from the `FaceXModel/` "
        f"OBJ files of github.com/ICT-VGL/ICT-FaceKit @ {ICT_COMMIT}.\n"
        "`LICENSE` is that repository's licence file (MIT, Copyright (c) 2020 USC Institute "
        "for Creative Technologies).\n"
    ),
}


class ChecksumError(ValueError):
    """A downloaded file's sha256 is not the pinned one."""


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ChecksumError` unless the file's sha256 is ``expected``."""
    digest = sha256_file(path)
    if digest != expected:
        raise ChecksumError(f"{path}: sha256 {digest}, expected {expected}")


@contextmanager
def atomic_target(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed onto it only if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp makes it 0600
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download(url: str, out: Path) -> None:
    print(f"  downloading {url}")
    with urllib.request.urlopen(url, timeout=60) as response, open(out, "wb") as fh:
        shutil.copyfileobj(response, fh, 1 << 20)


def write_notice(folder: Path) -> None:
    """Write the folder's NOTICE.md unless one is there already."""
    notice = folder / "NOTICE.md"
    if not notice.exists():
        notice.write_text(NOTICES[folder.name])


def fetch_verified(key: str, dest: Path) -> None:
    """Download a checksummed asset (``face_landmarker``, ``canonical_face_model``)."""
    asset = ASSETS[key]
    target = dest / asset.relpath
    if target.is_file() and sha256_file(target) == asset.sha256:
        print(f"{key}: {target} is present and verified; left as is")
        return
    with atomic_target(target) as tmp:
        download(URLS[key], tmp)
        verify_sha256(tmp, asset.sha256)
    write_notice(target.parent)
    print(f"{key}: wrote {target} (sha256 verified)")


# ---------------------------------------------------------------------------------------
# ICT-FaceKit: the repository archive's FaceXModel/ OBJ files packed into one npz
# ---------------------------------------------------------------------------------------


def read_obj_vertices(path: Path) -> np.ndarray:
    """The ``v`` lines of an OBJ file as a (V, 3) float64 array."""
    with open(path) as fh:
        rows = [line.split()[1:4] for line in fh if line.startswith("v ")]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def read_obj_mesh(path: Path) -> dict[str, np.ndarray]:
    """Positions, uvs and faces (triangles or quads, ``v/vt`` corners, ``usemtl`` groups).

    Faces are padded to 4 corners with -1; indices become 0-based; ``face_material``
    indexes ``material_names`` (the sorted ``usemtl`` names).
    """
    vertices, uvs, faces, face_uvs, materials = [], [], [], [], []
    material = None
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                vertices.append(parts[1:4])
            elif parts[0] == "vt":
                uvs.append(parts[1:3])
            elif parts[0] == "usemtl":
                material = parts[1]
            elif parts[0] == "f":
                corners = [corner.split("/") for corner in parts[1:]]
                if not 3 <= len(corners) <= 4 or any(len(c) < 2 or not c[1] for c in corners):
                    raise ValueError(f"{path}:{number}: expected a triangle or quad of v/vt")
                if material is None:
                    raise ValueError(f"{path}:{number}: a face before any usemtl")
                pad = [-1] * (4 - len(corners))
                faces.append([int(c[0]) - 1 for c in corners] + pad)
                face_uvs.append([int(c[1]) - 1 for c in corners] + pad)
                materials.append(material)
    material_names = sorted(set(materials))
    index = {name: i for i, name in enumerate(material_names)}
    return {
        "vertices": np.array(vertices, dtype=np.float64).reshape(-1, 3),
        "uv": np.array(uvs, dtype=np.float32).reshape(-1, 2),
        "faces": np.array(faces, dtype=np.int32).reshape(-1, 4),
        "face_uv": np.array(face_uvs, dtype=np.int32).reshape(-1, 4),
        "face_material": np.array([index[m] for m in materials], dtype=np.int16),
        "material_names": np.array(material_names),
    }


def _deltas(facex_dir: Path, names: list[str], neutral: np.ndarray) -> np.ndarray:
    """Each ``NAME.obj``'s vertices minus the neutral's, as (len(names), V, 3) float32."""
    deltas = np.empty((len(names), *neutral.shape), dtype=np.float32)
    for i, name in enumerate(names):
        vertices = read_obj_vertices(facex_dir / f"{name}.obj")
        if vertices.shape != neutral.shape:
            raise ValueError(f"{name}.obj has {len(vertices)} vertices, not {len(neutral)}")
        deltas[i] = vertices - neutral
    return deltas


def pack_ict_facekit(facex_dir: Path, out: Path) -> None:
    """Pack an ICT-FaceKit ``FaceXModel/`` folder into the npz that engines.face.ict reads.

    Reads ``generic_neutral_mesh.obj`` (positions, uvs, faces, materials), the identities
    ``identity000.obj``, ``identity001.obj``, ... (up to the first gap, as the upstream
    loader does), the expressions named by ``vertex_indices.json``'s ``expressions`` list
    (in that order), and stores that JSON itself as a string.
    """
    config = json.loads((facex_dir / "vertex_indices.json").read_text())
    mesh = read_obj_mesh(facex_dir / "generic_neutral_mesh.obj")
    neutral = mesh["vertices"]
    identity_names = []
    while (facex_dir / f"identity{len(identity_names):03d}.obj").is_file():
        identity_names.append(f"identity{len(identity_names):03d}")
    expression_names = list(config["expressions"])
    with open(out, "wb") as fh:  # a file object: np.savez would append .npz to a name
        np.savez_compressed(
            fh,
            neutral=neutral.astype(np.float32),
            identity_deltas=_deltas(facex_dir, identity_names, neutral),
            expression_deltas=_deltas(facex_dir, expression_names, neutral),
            faces=mesh["faces"],
            face_uv=mesh["face_uv"],
            uv=mesh["uv"],
            face_material=mesh["face_material"],
            material_names=mesh["material_names"],
            expression_names=np.array(expression_names),
            identity_names=np.array(identity_names),
            vertex_indices_json=np.array(json.dumps(config)),
        )


def check_ict_npz(path: Path, n_vertices: int, n_identities: int, n_expressions: int) -> None:
    """Raise ``ValueError`` unless the npz has every key and the expected array shapes."""
    with np.load(path) as data:
        missing = ICT_KEYS - set(data.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}")
        shapes = {
            "neutral": (n_vertices, 3),
            "identity_deltas": (n_identities, n_vertices, 3),
            "expression_deltas": (n_expressions, n_vertices, 3),
        }
        for key, shape in shapes.items():
            if data[key].shape != shape:
                raise ValueError(f"{path}: {key} has shape {data[key].shape}, not {shape}")


def extract_facex_model(archive: Path, out_dir: Path) -> Path:
    """Extract ``FaceXModel/*`` and ``LICENSE`` of the repository zip; FaceXModel's path."""
    if not zipfile.is_zipfile(archive):
        raise ValueError(f"{archive}: the download is not a zip archive")
    facex_dir = out_dir / "FaceXModel"
    facex_dir.mkdir(parents=True)
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")  # <repo>-<commit>/...
            if len(parts) == 3 and parts[1] == "FaceXModel" and parts[2] not in ("", ".", ".."):
                dest = facex_dir / parts[2]
            elif len(parts) == 2 and parts[1] == "LICENSE":
                dest = out_dir / "LICENSE"
            else:
                continue
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if not (facex_dir / "generic_neutral_mesh.obj").is_file():
        raise ValueError(f"{archive}: no FaceXModel/generic_neutral_mesh.obj in the archive")
    return facex_dir


def fetch_ict_facekit(dest: Path) -> None:
    """Download the ICT-FaceKit archive at the pinned commit and pack FaceXModel/."""
    asset = ASSETS["ict_facekit"]
    target = dest / asset.relpath
    if target.is_file():
        try:
            check_ict_npz(target, **ICT_SHAPES)
        except (OSError, ValueError) as exc:
            print(f"ict_facekit: replacing {target}: {exc}")
        else:
            print(f"ict_facekit: {target} is present and verified; left as is")
            return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work_dir:
        work = Path(work_dir)
        download(ICT_ARCHIVE_URL, work / "ICT-FaceKit.zip")
        facex_dir = extract_facex_model(work / "ICT-FaceKit.zip", work)
        print(f"  packing {facex_dir} (about 150 OBJ files)")
        with atomic_target(target) as tmp:
            pack_ict_facekit(facex_dir, tmp)
            check_ict_npz(tmp, **ICT_SHAPES)
        if (work / "LICENSE").is_file() and not (target.parent / "LICENSE").exists():
            shutil.copyfile(work / "LICENSE", target.parent / "LICENSE")
    write_notice(target.parent)
    print(f"ict_facekit: wrote {target} (shapes verified)")


FETCHERS: dict[str, Callable[[Path], None]] = {
    "ict_facekit": fetch_ict_facekit,
    "face_landmarker": partial(fetch_verified, "face_landmarker"),
    "canonical_face_model": partial(fetch_verified, "canonical_face_model"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("asset", nargs="?", default="all", choices=[*FETCHERS, "all"])
    parser.add_argument(
        "--dest", type=Path, help="asset root to fill (default: $VN3D_ASSETS or ../shared/assets)"
    )
    args = parser.parse_args(argv)
    dest = args.dest or asset_root()
    failed = 0
    for key in FETCHERS if args.asset == "all" else [args.asset]:
        try:
            FETCHERS[key](dest)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            print(f"{key}: error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
