"""Colour spaces for judging photo colours: CIELAB, where distances are perceptual."""

from __future__ import annotations

import cv2
import numpy as np


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) (L in 0-100) of sRGB colours (..., 3) in 0-255."""
    flat = np.clip(rgb, 0, 255).astype(np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(np.shape(rgb))
