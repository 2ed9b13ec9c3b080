"""MICA (Zielon et al. 2022): an ArcFace identity feature of the aligned face -> 300 FLAME
shape coefficients.

Cross-checked against Zielon/MICA:

- ``micalib/models/mica.py``: ``load_model`` reads ``checkpoint['arcface']`` into the
  ArcFace network and ``checkpoint['flameModel']`` into the generator; ``encode`` takes
  ``F.normalize(self.arcface(arcface_imgs))``; ``decode`` maps it with
  ``self.flameModel(identity_code)`` to the shape code;
- ``micalib/models/generator.py``: ``Generator.regressor`` is a ``MappingNetwork(512, 300,
  300, hidden=3)``: ``network`` = Linear(512, 300) then 3 x Linear(300, 300), each followed
  by leaky ReLU (0.2), and ``output`` = Linear(300, 300); no skip below 6 hidden layers.
  The generator's FLAME buffers (``generator.*``) are not needed: the project has FLAME;
- ``demo.py`` / ``get_arcface_input``: insightface's ``norm_crop`` to 112² on five points
  (eyes, nose tip, mouth corners) and ``blobFromImages(1 / 127.5, mean 127.5, swapRB)``:
  RGB in [-1, 1].
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.files.registered import MICA_MODEL
from engines.flame_encoders.checkpoints import load_weights, read_checkpoint
from engines.flame_encoders.iresnet import IResNet100
from engines.geometry.alignment import rigid_align

ARCFACE_SIZE = 112
N_SHAPE = 300
# insightface's face_align.arcface_dst: the five points' places in the 112² crop
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], np.float32
)
# MediaPipe landmarks for the five points, image left to right as insightface orders them:
# the subject's right eye (outer 33, inner 133), left eye (362, 263), nose tip (4), mouth
# corners (61, 291)
MEDIAPIPE_FIVE = ((33, 133), (362, 263), (4,), (61,), (291,))


class MappingNetwork(nn.Module):
    """(B, 512) unit identity feature -> (B, 300) FLAME shape (MICA's ``MappingNetwork``)."""

    def __init__(self, z_dim: int = 512, hidden_dim: int = 300, out_dim: int = N_SHAPE,
                 hidden: int = 3) -> None:
        super().__init__()
        self.network = nn.ModuleList(
            [nn.Linear(z_dim, hidden_dim)]
            + [nn.Linear(hidden_dim, hidden_dim) for _ in range(hidden)]
        )
        self.output = nn.Linear(hidden_dim, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, 300)
        h = z
        for layer in self.network:
            h = F.leaky_relu(layer(h), negative_slope=0.2)
        return self.output(h)


class Mica(nn.Module):
    """(B, 3, 112, 112) aligned face, RGB in [-1, 1] -> (B, 300) FLAME shape."""

    def __init__(self) -> None:
        super().__init__()
        self.arcface = IResNet100()
        self.regressor = MappingNetwork()

    def forward(self, faces: torch.Tensor) -> torch.Tensor:  # (B, 300)
        return self.regressor(F.normalize(self.arcface(faces)))


def load_mica(path: str | os.PathLike[str] | None = None) -> Mica:
    """MICA from ``mica.tar`` (found as :data:`MICA_MODEL` says)."""
    file = MICA_MODEL.find(path)
    data = read_checkpoint(file, MICA_MODEL, ("arcface", "flameModel"))
    mica = Mica()
    load_weights(mica.arcface, data["arcface"], file, MICA_MODEL, "arcface")
    load_weights(mica.regressor, data["flameModel"], file, MICA_MODEL, "flameModel",
                 prefix="regressor.")
    return mica.eval()


def five_points(landmarks_px: np.ndarray) -> np.ndarray:  # (5, 2)
    """ArcFace's five points from MediaPipe's landmarks (478, 2+) in pixels."""
    return np.array([landmarks_px[list(ids), :2].mean(0) for ids in MEDIAPIPE_FIVE], np.float32)


def align_face(image_rgb: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """(3, 112, 112) float32 RGB in [-1, 1]: insightface's ``norm_crop`` on the five points."""
    scale, rot, shift = rigid_align(five_points(landmarks_px), ARCFACE_DST, with_scale=True)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError("cannot align the face for ArcFace (degenerate landmarks)")
    matrix = np.c_[scale * rot, shift]  # (2, 3) the least-squares similarity, as norm_crop
    face = cv2.warpAffine(image_rgb, matrix, (ARCFACE_SIZE, ARCFACE_SIZE), borderValue=0)
    return ((face.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)
