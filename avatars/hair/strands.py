"""The strand hair format (HairNet's, as in the thesis): a hairstyle is a 32x32 grid of
strands on a 2D scalp map with 100 points each: ``positions`` (32, 32, 100, 3) float32 in the
ICT neutral head's frame (cm, y up, the face looks along +z) and one extra channel per
point, ``extra`` (32, 32, 100, 1): the discrete curvature in 1/cm. A cell without hair
holds a zero-length strand (all its points at the root).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID = 32  # strands per side of the scalp map


POINTS = 100  # points per strand


@dataclass(frozen=True)
class Hairstyle:
    """One hairstyle in the scalp-grid format (see the module docstring)."""

    name: str
    positions: np.ndarray  # (32, 32, 100, 3) float32, cm
    extra: np.ndarray  # (32, 32, 100, 1) float32, curvature in 1/cm

    @property
    def roots(self) -> np.ndarray:  # (32, 32, 3)
        return self.positions[:, :, 0]

    @property
    def lengths(self) -> np.ndarray:  # (32, 32) cm along each strand
        return np.linalg.norm(np.diff(self.positions, axis=2), axis=3).sum(2)

    @property
    def active(self) -> np.ndarray:  # (32, 32) bool: cells that grow hair
        return self.lengths > 1e-3


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def curvature(positions: np.ndarray) -> np.ndarray:
    """Discrete curvature (1/cm) at each point (..., P, 1): turning angle over segment
    length at inner points, 0 at the ends and on zero-length strands."""
    seg = np.diff(positions.astype(np.float64), axis=-2)  # (..., P-1, 3)
    length = np.linalg.norm(seg, axis=-1)
    a, b = seg[..., :-1, :], seg[..., 1:, :]
    cos = np.einsum("...c,...c->...", a, b) / np.maximum(length[..., :-1] * length[..., 1:], 1e-12)
    mean = 0.5 * (length[..., :-1] + length[..., 1:])
    inner = np.where(mean > 1e-6, np.arccos(np.clip(cos, -1.0, 1.0)) / np.maximum(mean, 1e-6), 0)
    pad = np.zeros((*inner.shape[:-1], 1))
    return np.concatenate([pad, inner, pad], -1)[..., None].astype(np.float32)
