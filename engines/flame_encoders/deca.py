"""DECA's coarse encoder (Feng et al. 2021): a 224² face crop -> FLAME shape, expression,
jaw and head pose, albedo code, camera and light.

Cross-checked against yfeng95/DECA:

- ``decalib/models/encoders.py`` ``ResnetEncoder``: ``self.encoder`` (ResNet-50, 2048
  features) and ``self.layers = Sequential(Linear(2048, 1024), ReLU(), Linear(1024, 236))``,
  hence the keys ``encoder.*``, ``layers.0.*``, ``layers.2.*``;
- ``decalib/deca.py``: ``E_flame`` is loaded from ``checkpoint['E_flame']``; the code is
  cut in ``param_dict`` order shape 100, tex 50, exp 50, pose 6 (global 3 + jaw 3,
  axis-angle), cam 3 (scale, tx, ty; ``util.batch_orth_proj``), light 27 (9 x 3 SH);
  images go in as RGB in [0, 1] with no mean/std normalisation;
- ``decalib/datasets/datasets.py`` ``TestData``: the box of the 68 landmarks, its mean
  side x 1.1 (``bbox2point``, type ``kpt68``), x 1.25 (``scale``), a similarity from that
  square to 224², bilinear.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from engines.face.flame import FlameModel
from engines.files.registered import DECA_MODEL
from engines.flame_encoders.checkpoints import load_weights, read_checkpoint
from engines.flame_encoders.resnet import ResNet50Features

CROP_SIZE = 224
CODE_SPLIT = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
CODE_SIZE = sum(n for _, n in CODE_SPLIT)  # 236
KPT_BOX_FACTOR = 1.1  # bbox2point for 68 keypoints
CROP_SCALE = 1.25  # TestData's default scale


class DecaEncoder(nn.Module):
    """(B, 3, 224, 224) RGB in [0, 1] -> (B, 236) code (DECA's ``ResnetEncoder``)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ResNet50Features()
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, CODE_SIZE))

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # (B, 236)
        return self.layers(self.encoder(images))


@dataclass(frozen=True)
class DecaCode:
    """DECA's code, cut as ``decompose_code`` cuts it."""

    shape: torch.Tensor  # (B, 100) FLAME identity
    tex: torch.Tensor  # (B, 50) albedo-space coefficients
    exp: torch.Tensor  # (B, 50) FLAME expression
    pose: torch.Tensor  # (B, 6) global + jaw axis-angle
    cam: torch.Tensor  # (B, 3) orthographic scale, tx, ty
    light: torch.Tensor  # (B, 9, 3) spherical-harmonics light

    @classmethod
    def split(cls, code: torch.Tensor) -> DecaCode:
        if code.ndim != 2 or code.shape[1] != CODE_SIZE:
            raise ValueError(f"a DECA code is (B, {CODE_SIZE}); got {tuple(code.shape)}")
        parts = dict(zip([k for k, _ in CODE_SPLIT],
                         torch.split(code, [n for _, n in CODE_SPLIT], dim=1), strict=True))
        parts["light"] = parts["light"].reshape(-1, 9, 3)
        return cls(**parts)

    def flame_pose(self) -> torch.Tensor:  # (B, 15)
        return FlameModel.pose_from_deca(self.pose)


def load_deca(path: str | os.PathLike[str] | None = None) -> DecaEncoder:
    """DECA's coarse encoder from ``deca_model.tar`` (found as :data:`DECA_MODEL` says)."""
    file = DECA_MODEL.find(path)
    state = read_checkpoint(file, DECA_MODEL, ("E_flame",))["E_flame"]
    encoder = DecaEncoder()
    load_weights(encoder, state, file, DECA_MODEL, "E_flame")
    return encoder.eval()


def crop_transform(landmarks68: np.ndarray) -> np.ndarray:  # (3, 3)
    """The similarity from image pixels to DECA's 224² crop, from 68 landmarks (68, 2)."""
    left, top = landmarks68[:, :2].min(0)
    right, bottom = landmarks68[:, :2].max(0)
    size = (right - left + bottom - top) / 2 * KPT_BOX_FACTOR
    size = int(size * CROP_SCALE)
    cx, cy = right - (right - left) / 2.0, bottom - (bottom - top) / 2.0
    if size < 2:
        raise ValueError("the face is too small to crop (its landmark box is under 2 px)")
    scale = (CROP_SIZE - 1) / size  # TestData's DST_PTS span 0..223
    return np.array(
        [[scale, 0.0, -scale * (cx - size / 2)],
         [0.0, scale, -scale * (cy - size / 2)],
         [0.0, 0.0, 1.0]]
    )


def crop_face(image_rgb: np.ndarray, landmarks68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, 224, 224) float32 RGB in [0, 1], and the (3, 3) image -> crop transform."""
    tform = crop_transform(landmarks68)
    crop = cv2.warpAffine(image_rgb, tform[:2], (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return (crop.astype(np.float32) / 255.0).transpose(2, 0, 1), tform
