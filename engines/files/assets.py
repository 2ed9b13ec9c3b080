"""Finding the open assets (ICT-FaceKit, MediaPipe model, ...) outside the repository.

The asset root is ``$VN3D_ASSETS`` when set, else ``../shared/assets`` relative to the
working directory (the layout of this project's checkouts). Nothing here downloads:
``scripts/fetch_assets.py`` is the explicit, checksummed set-up step for other machines.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "VN3D_ASSETS"
DEFAULT_ROOT = Path("..") / "shared" / "assets"


class AssetMissingError(FileNotFoundError):
    """An asset file is absent; the message names it, the paths searched and the fix."""


@dataclass(frozen=True)
class Asset:
    """A known asset: where it lives under the root and how a user gets it."""

    relpath: str
    sha256: str | None
    licence: str
    how_to_get: str


ASSETS: dict[str, Asset] = {
    "ict_facekit": Asset(
        "ict_facekit/ict_facekit_light.npz",
        "7aefe65e88c2f155811ed92854ede5f792ffd2d448befd654a6a1a3032fecaf1",
        "MIT (ICT-FaceKit)",
        "run `python scripts/fetch_assets.py ict_facekit` (packs the FaceXModel OBJ files of "
        "github.com/ICT-VGL/ICT-FaceKit), or point $VN3D_ASSETS at a folder holding it",
    ),
    "face_landmarker": Asset(
        "mediapipe/face_landmarker.task",
        "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
        "Apache-2.0 (Google MediaPipe)",
        "run `python scripts/fetch_assets.py face_landmarker` (Google's public model URL)",
    ),
    "canonical_face_model": Asset(
        "mediapipe/canonical_face_model.obj",
        "8bac80443397e113f41a8b565ea72c59390bc031d9defab289dba7bc0c54e618",
        "Apache-2.0 (Google MediaPipe)",
        "run `python scripts/fetch_assets.py canonical_face_model`",
    ),
    "lpips_squeezenet": Asset(
        "lpips/squeezenet1_1_features.pth",
        "435cedb387e95bc8291893f61a3a64f0345b8c23a05139aceef43947efb3d52d",
        "BSD-3-Clause (torchvision SqueezeNet 1.1 ImageNet weights)",
        "copy it into the asset root: torchvision's squeezenet1_1 ImageNet weights, the "
        "`features` state dict only (see lpips/NOTICE.md); only LPIPS needs it",
    ),
}


def asset_root() -> Path:
    """The asset root: ``$VN3D_ASSETS`` if set, else ``../shared/assets`` (not checked)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_ROOT


def asset_path(key: str) -> Path:
    """The path of a known asset (a key of :data:`ASSETS`), checked to exist."""
    asset = ASSETS[key]
    path = asset_root() / asset.relpath
    if not path.is_file():
        raise AssetMissingError(
            f"missing asset {asset.relpath!r} ({key}, {asset.licence}).\n"
            f"  searched: {path.resolve()} (asset root from "
            f"{'$' + ENV_VAR if os.environ.get(ENV_VAR) else 'the default ../shared/assets'})\n"
            f"  fix: {asset.how_to_get}"
        )
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes in memory."""
    return hashlib.sha256(data).hexdigest()
