"""Quads to triangles, keeping each triangle's source face."""

from __future__ import annotations

import numpy as np


def triangulate(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split quads (F, 4) (-1 in the last slot marks a triangle) into triangles.

    Returns triangles (T, 3) and, per triangle, the index of its source face (T,).
    """
    is_quad = quads[:, 3] >= 0
    first = quads[:, [0, 1, 2]]
    second = quads[is_quad][:, [0, 2, 3]]
    tris = np.concatenate([first, second]).astype(np.int32)
    src = np.concatenate([np.arange(len(quads)), np.nonzero(is_quad)[0]])
    return tris, src
