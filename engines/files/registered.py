"""The files a user brings after registering (FLAME, DECA, MICA): where each is looked for.

None of them may be redistributed, so the project never ships or downloads them. Each is
found at an explicit path, else through its environment variable, else under the asset
root's ``flame/`` folder; a missing one raises :class:`AssetMissingError` naming every
place searched and how to get the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engines.files.assets import AssetMissingError, asset_root


@dataclass(frozen=True)
class RegisteredFile:
    """A file the user downloads after registering, and how the project finds it."""

    what: str  # e.g. "FLAME model"
    env_var: str
    relpath: str  # under the asset root
    how_to_get: str
    used_for: str

    @property
    def default_path(self) -> Path:
        return asset_root() / self.relpath

    def candidate(self, path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
        """Where the file is looked for, and why there."""
        if path is not None:
            return Path(path).expanduser(), "the path argument"
        if os.environ.get(self.env_var):
            return Path(os.environ[self.env_var]).expanduser(), f"${self.env_var}"
        return self.default_path, "the default location under the asset root"

    def find(self, path: str | os.PathLike[str] | None = None) -> Path:
        """The file's path, checked to exist; otherwise the error says how to get it."""
        candidate, source = self.candidate(path)
        if candidate.is_file():
            return candidate
        raise AssetMissingError(
            f"{self.what} file not found.\n"
            f"  searched: {candidate.absolute()} (from {source})\n"
            f"  fix: {self.how_to_get}; then put it at {self.default_path.absolute()} "
            f"or set ${self.env_var} to its path"
        )


FLAME_MODEL = RegisteredFile(
    "FLAME model",
    "VN3D_FLAME_MODEL",
    "flame/generic_model.pkl",
    "FLAME may not be redistributed: register at https://flame.is.tue.mpg.de and download "
    "FLAME 2020 (`generic_model.pkl`) or FLAME 2023 (`flame2023.pkl`, renamed "
    "generic_model.pkl)",
    "--model flame",
)
FLAME_LANDMARKS = RegisteredFile(
    "FLAME landmark embedding",
    "VN3D_FLAME_LANDMARKS",
    "flame/landmark_embedding.npy",
    "take `data/landmark_embedding.npy` from DECA (github.com/yfeng95/DECA, its `data/` "
    "folder)",
    "the 68 FLAME landmarks (DECA's crop, the landmark overlay, fitting)",
)
DECA_MODEL = RegisteredFile(
    "DECA model",
    "VN3D_DECA_MODEL",
    "flame/deca_model.tar",
    "register at https://deca.is.tue.mpg.de (and FLAME's site), then download "
    "`deca_model.tar` (DECA's fetch_data.sh does both)",
    "DECA: expression, jaw and head pose, texture and light from a photo",
)
MICA_MODEL = RegisteredFile(
    "MICA model",
    "VN3D_MICA_MODEL",
    "flame/mica.tar",
    "accept FLAME's licence (https://flame.is.tue.mpg.de), then download `mica.tar` as "
    "MICA's install.sh does (github.com/Zielon/MICA)",
    "MICA: the identity shape (300 FLAME coefficients) from a photo",
)
FLAME_UVS = RegisteredFile(
    "FLAME UV layout",
    "VN3D_FLAME_UVS",
    "flame/head_template.obj",
    "take `data/head_template.obj` from DECA (github.com/yfeng95/DECA, its `data/` folder)",
    "textures on FLAME (with the albedo model)",
)
FLAME_ALBEDO = RegisteredFile(
    "FLAME albedo model",
    "VN3D_FLAME_ALBEDO",
    "flame/FLAME_albedo_from_BFM.npz",
    "make `FLAME_albedo_from_BFM.npz` from the Basel Face Model (register at "
    "https://faces.dmi.unibas.ch/bfm/bfm2017.html) with github.com/TimoBolkart/BFM_to_FLAME, "
    "or download FLAME's own texture space `FLAME_texture.npz` from https://flame.is.tue.mpg.de "
    "(renamed)",
    "DECA's albedo texture on FLAME",
)
REGISTERED_FILES = (FLAME_MODEL, FLAME_LANDMARKS, DECA_MODEL, MICA_MODEL, FLAME_UVS,
                    FLAME_ALBEDO)
