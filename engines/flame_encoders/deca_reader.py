"""``--reader deca``: DECA as the tracker (the paper's reading of expressions), per frame.

DECA reads the frame's 224² crop (the box of MediaPipe's 68 landmarks, as for a photo)
into FLAME's expression coefficients, jaw and head rotation. ψ is what every target
takes, ARKit weights, so DECA's expression and jaw come back through the ARKit -> FLAME
map (:meth:`~engines.face.flame_arkit.FlameArkitModel.arkit_from_flame`, bounded least
squares on the face); the head rotation is DECA's global pose. Needs the FLAME file,
DECA's landmark embedding (for the map) and ``deca_model.tar``; about 0.1 s a frame on a
CPU (ResNet-50), so for clips rather than live calls there.
"""

from __future__ import annotations

import numpy as np
import torch

from engines.face.correspondence import MEDIAPIPE_IBUG68
from engines.face.flame_arkit import FlameArkitModel, load_flame_arkit
from engines.flame_encoders.deca import DecaCode, DecaEncoder, crop_face, load_deca


class DecaReader:
    """(RGB frame, MediaPipe's landmarks in its pixels) -> (ψ (53,), head rotation (3,))."""

    def __init__(self, expression_names: tuple[str, ...], model: FlameArkitModel | None = None,
                 deca: DecaEncoder | None = None) -> None:
        self.model = model or load_flame_arkit()
        if tuple(expression_names) != tuple(self.model.expression_names):
            raise ValueError("the deca reader reads ARKit weights (ICT's 53 names); this face "
                             "model has other expressions")
        self.deca = deca or load_deca()
        self.map_error = float("nan")  # the last frame's: DECA's face that ψ leaves out

    @torch.no_grad()
    def __call__(self, rgb: np.ndarray, landmarks_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        crop, _ = crop_face(rgb, landmarks_px[MEDIAPIPE_IBUG68])
        code = DecaCode.split(self.deca(torch.from_numpy(crop)[None]))
        pose = code.pose[0].numpy()  # (6,) global, jaw
        psi, self.map_error = self.model.arkit_from_flame(code.exp[0].numpy(), pose[3:6])
        return psi, pose[:3].astype(np.float64)
