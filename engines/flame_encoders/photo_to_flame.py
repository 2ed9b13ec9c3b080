"""One photo -> FLAME, as the paper's pipeline reads it: identity shape from MICA (DECA's
own 100 when MICA's file is absent), expression, jaw and head pose and camera from DECA.

Reads top to bottom per photo: MediaPipe's landmarks (given) -> DECA's 224² crop -> DECA's
code -> MICA's aligned 112² face -> 300 β -> the FLAME mesh -> its 68 landmarks and every
point projected back into the photo with DECA's orthographic camera.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from engines.face.correspondence import MEDIAPIPE_IBUG68
from engines.face.flame import FlameModel
from engines.face.flame_landmarks import LandmarkEmbedding, flame_landmarks68
from engines.face.flame_texture import FlameAlbedo, attach_flame_uvs
from engines.files.assets import AssetMissingError
from engines.files.registered import FLAME_UVS
from engines.flame_encoders.deca import CROP_SIZE, DecaCode, DecaEncoder, crop_face, load_deca
from engines.flame_encoders.mica import Mica, align_face, load_mica

PathArg = str | os.PathLike[str] | None
T = TypeVar("T")


@dataclass(frozen=True)
class FlameFit:
    """What one photo reads as in FLAME (metres), and how to project it into the photo."""

    shape: np.ndarray  # (300,) MICA's, or (100,) DECA's
    shape_from: str  # "mica" or "deca"
    expression: np.ndarray  # (50,) DECA's
    pose: np.ndarray  # (15,) FLAME joints: global, neck, jaw, eyes
    cam: np.ndarray  # (3,) orthographic scale, tx, ty (DECA's crop, NDC)
    tex: np.ndarray  # (50,) DECA's albedo coefficients
    light: np.ndarray  # (9, 3) spherical harmonics
    crop_tform: np.ndarray  # (3, 3) photo pixels -> DECA's 224² crop pixels
    vertices: np.ndarray  # (V, 3) the posed mesh
    landmarks68: np.ndarray | None  # (68, 3) on the mesh, when the embedding is there
    texture: np.ndarray | None = None  # (512, 512, 3) uint8 DECA's albedo, with the model

    def project(self, points: np.ndarray) -> np.ndarray:  # (N, 2) photo pixels
        """DECA's ``batch_orth_proj`` (y flipped), then the crop's inverse similarity."""
        s, tx, ty = self.cam
        half = CROP_SIZE / 2
        crop = np.c_[(s * (points[:, 0] + tx) + 1) * half, (1 - s * (points[:, 1] + ty)) * half]
        inv = np.linalg.inv(self.crop_tform)
        return crop @ inv[:2, :2].T + inv[:2, 2]


class PhotoToFlame:
    """Holds FLAME, DECA and (optionally) MICA and the landmark embedding across photos."""

    def __init__(self, flame: FlameModel, deca: DecaEncoder, mica: Mica | None = None,
                 embedding: LandmarkEmbedding | None = None,
                 albedo: FlameAlbedo | None = None) -> None:
        self.flame, self.deca, self.mica, self.embedding = flame, deca, mica, embedding
        self.albedo = albedo  # used when the model has FLAME's UVs

    @torch.no_grad()
    def __call__(self, image_rgb: np.ndarray, landmarks_px: np.ndarray) -> FlameFit:
        """``image_rgb`` (H, W, 3) uint8 and MediaPipe's landmarks (478, 2) in its pixels."""
        crop, tform = crop_face(image_rgb, landmarks_px[MEDIAPIPE_IBUG68])
        code = DecaCode.split(self.deca(torch.from_numpy(crop)[None]))  # (1, ...) each
        if self.mica is not None:
            face = torch.from_numpy(align_face(image_rgb, landmarks_px))[None]
            shape, shape_from = self.mica(face), "mica"  # (1, 300)
        else:
            shape, shape_from = code.shape, "deca"  # (1, 100)
        pose = code.flame_pose()  # (1, 15)
        n_shape, n_exp = self.flame.n_shape, self.flame.n_expression
        vertices = self.flame(shape[:, :n_shape], code.exp[:, :n_exp], pose)  # (1, V, 3)
        landmarks = None
        if self.embedding is not None:
            faces = torch.as_tensor(self.flame.topology.faces, dtype=torch.long)
            landmarks = flame_landmarks68(vertices, faces, pose, self.embedding)[0].numpy()
        texture = None
        if self.albedo is not None and self.flame.topology.uvs is not None:
            texture = self.albedo.texture(code.tex[0].numpy())
        return FlameFit(
            shape[0].numpy(), shape_from, code.exp[0].numpy(), pose[0].numpy(),
            code.cam[0].numpy(), code.tex[0].numpy(), code.light[0].numpy(), tform,
            vertices[0].numpy(), landmarks, texture,
        )

    @torch.no_grad()
    def still_vertices(self, fit: FlameFit) -> np.ndarray:  # (V, 3) float64
        """The fit's mesh (its shape, expression and jaw) without DECA's head rotation."""
        pose = torch.from_numpy(fit.pose[None].copy())
        pose[:, :3] = 0  # DECA's global rotation (its neck is still)
        flame = self.flame
        v = flame(torch.from_numpy(fit.shape[None, :flame.n_shape].copy()),
                  torch.from_numpy(fit.expression[None, :flame.n_expression].copy()), pose)
        return v[0].numpy().astype(np.float64)


def optional(load: Callable[[PathArg], T], path: PathArg, missing: str, notes: list[str]
             ) -> T | None:
    """``load(path)``, or None with a note when the file is not there and no ``path`` named
    it (a named file must exist)."""
    try:
        return load(path)
    except AssetMissingError as exc:
        if path is not None:
            raise
        notes.append(f"{missing}: {exc.args[0].splitlines()[1].strip()}")
        return None


def load_photo_to_flame(flame: PathArg = None, deca: PathArg = None, mica: PathArg = None,
                        landmarks: PathArg = None, uvs: PathArg = None, albedo: PathArg = None
                        ) -> tuple[PhotoToFlame, list[str]]:
    """FLAME and DECA must be found; MICA, the landmark embedding, the UV template and the
    albedo model are used when found. Returns the reader and a line per optional file that
    was not found."""
    from engines.face.flame_landmarks import load_landmark_embedding

    model = FlameModel(flame, n_shape=300, n_expression=50)
    encoder = load_deca(deca)
    notes: list[str] = []
    identity = optional(load_mica, mica, "MICA not found, DECA's shape is used", notes)
    embedding = optional(load_landmark_embedding, landmarks, "no FLAME landmarks", notes)
    albedo_model = None
    if attach_flame_uvs(model, uvs):
        albedo_model = optional(FlameAlbedo.load, albedo, "no texture (no albedo model)",
                                notes)
    else:
        notes.append(f"no texture (no UV template): {FLAME_UVS.candidate()[0].absolute()}")
    return PhotoToFlame(model, encoder, identity, embedding, albedo_model), notes
