"""Least-squares alignment of corresponding point sets (Umeyama 1991)."""

from __future__ import annotations

import numpy as np


def rigid_align(
    src: np.ndarray, dst: np.ndarray, with_scale: bool = False
) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R (D, D), t (D,)) minimising ||s R src + t - dst||² over points (N, D), D = 2
    or 3; s = 1 unless ``with_scale``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.ones(src.shape[1])
    d[-1] = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag(d) @ vt
    scale = float((sig * d).sum() / (a**2).sum(1).mean()) if with_scale else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s
