"""FLAME's UV layout (DECA's ``head_template.obj``) and albedo model (DECA's ``FLAMETex``).

- The layout: the OBJ's ``vt`` lines and the texture ids of its ``f v/vt`` lines; its
  triangles must be FLAME's own (the same vertex ids in the same order).
- The albedo: ``FLAME_albedo_from_BFM.npz`` (``MU`` (786432,), ``PC`` (786432, 199), in
  [0, 1]) or FLAME's ``FLAME_texture.npz`` (``mean``, ``tex_dir`` (..., 200), in 0..255),
  both 512 × 512 × 3 in BGR order: texture = mean + PC[:, :n] @ code, as yfeng95/DECA
  ``decalib/models/FLAME.py`` ``FLAMETex`` computes it (then flipped to RGB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from engines.face.model import FaceModel
from engines.files.assets import AssetMissingError
from engines.files.registered import FLAME_ALBEDO, FLAME_UVS

ALBEDO_SIZE = 512


def read_obj_uvs(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(uvs (T, 2) float32, face_uvs (F, 3) int32, faces (F, 3) int32) of an OBJ whose
    faces are ``f v/vt ...`` triangles (0-based ids)."""
    uvs, faces, face_uvs = [], [], []
    with open(path) as fh:
        for line in fh:
            if line.startswith("vt "):
                uvs.append([float(x) for x in line.split()[1:3]])
            elif line.startswith("f "):
                corners = [c.split("/") for c in line.split()[1:]]
                if len(corners) != 3 or any(len(c) < 2 or not c[1] for c in corners):
                    raise ValueError(f"{path}: faces must be triangles with texture ids "
                                     f"(f v/vt v/vt v/vt), got {line.strip()[:80]!r}")
                faces.append([int(c[0]) - 1 for c in corners])
                face_uvs.append([int(c[1]) - 1 for c in corners])
    if not uvs or not faces:
        raise ValueError(f"{path}: no texture coordinates or faces in it")
    return (np.asarray(uvs, np.float32), np.asarray(face_uvs, np.int32),
            np.asarray(faces, np.int32))


def load_flame_uvs(faces: np.ndarray, path: str | os.PathLike[str] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(uvs, face_uvs) for FLAME's triangles ``faces`` (F, 3) from DECA's template."""
    file = FLAME_UVS.find(path)
    uvs, face_uvs, obj_faces = read_obj_uvs(file)
    if obj_faces.shape != faces.shape or not np.array_equal(obj_faces, faces):
        raise ValueError(
            f"{file}: its triangles are not this FLAME model's ({len(obj_faces)} against "
            f"{len(faces)}): {FLAME_UVS.how_to_get}"
        )
    if face_uvs.max() >= len(uvs) or face_uvs.min() < 0:
        raise ValueError(f"{file}: a face names a texture coordinate it does not have")
    return uvs, face_uvs


def attach_flame_uvs(model: FaceModel, path: str | os.PathLike[str] | None = None) -> bool:
    """Give ``model`` (FLAME, or FLAME driven by ARKit) DECA's UV layout when the template
    is found (``path``, else where :data:`FLAME_UVS` says); False when it is not there (a
    FLAME head without UVs renders in the skin colour). A given ``path`` must exist."""
    try:
        uvs, face_uvs = load_flame_uvs(model.topology.faces, path)
    except AssetMissingError:
        if path is not None:
            raise
        return False
    model.topology = replace(model.topology, uvs=uvs, face_uvs=face_uvs)
    return True


@dataclass(frozen=True)
class FlameAlbedo:
    """DECA's albedo model: a mean and a basis over a 512² BGR texture."""

    mean: np.ndarray  # (786432,) float32 in [0, 1]
    basis: np.ndarray  # (786432, K) float32

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, n_components: int = 50
             ) -> FlameAlbedo:
        file = FLAME_ALBEDO.find(path)
        try:
            with np.load(file, allow_pickle=False) as data:
                if "tex_dir" in data.files:  # FLAME's texture space, 0..255
                    mean, basis, scale = data["mean"], data["tex_dir"], 1 / 255
                else:  # BFM's albedo moved onto FLAME's UVs, 0..1
                    mean, basis, scale = data["MU"], data["PC"], 1.0
                mean = np.asarray(mean, np.float32).reshape(-1) * scale
                basis = basis.reshape(len(mean), -1)  # (786432, 199) float64: 1.2 GB
                n_file = basis.shape[1]
                basis = np.asarray(basis[:, :n_components], np.float32) * scale
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{file}: not a FLAME albedo model ({exc}); "
                             f"{FLAME_ALBEDO.how_to_get}") from exc
        if len(mean) != ALBEDO_SIZE * ALBEDO_SIZE * 3 or n_file < n_components:
            raise ValueError(
                f"{file}: not a FLAME albedo model: {len(mean)} values, {n_file} "
                f"components (need {ALBEDO_SIZE}² × 3 and >= {n_components})"
            )
        return cls(mean, np.ascontiguousarray(basis))

    def texture(self, code: np.ndarray) -> np.ndarray:  # (512, 512, 3) uint8 RGB
        """The albedo for DECA's texture code (K,), as an sRGB image (v up: row 0 is v=1)."""
        bgr = (self.mean + self.basis @ np.asarray(code, np.float32)).reshape(
            ALBEDO_SIZE, ALBEDO_SIZE, 3)
        return (np.clip(bgr[..., ::-1], 0, 1) * 255 + 0.5).astype(np.uint8)
