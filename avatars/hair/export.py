"""Strand hair as files: OBJ polylines, and ribbons for glTF.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatars.hair.scalp import SCALP_CENTRE
from avatars.hair.strands import POINTS, Hairstyle, unit


def strands_to_obj_lines(style: Hairstyle, path: str | Path) -> int:
    """Write the style's grown strands as OBJ polylines ('v' and 'l' records); returns the
    number of vertices written (100 per strand with hair)."""
    strands = style.positions[style.active]  # (S, P, 3)
    ids = np.arange(strands.size // 3).reshape(len(strands), -1) + 1
    with open(path, "w") as f:
        f.write(f"# hairstyle {style.name}: {len(strands)} strands, cm\no {style.name}\n")
        np.savetxt(f, strands.reshape(-1, 3), fmt="v %.4f %.4f %.4f")
        np.savetxt(f, ids, fmt="l" + " %d" * ids.shape[1])
    return int(strands.size // 3)


def strands_to_ribbons(
    style: Hairstyle, width_cm: float = 0.05, subsample: int = 1, point_step: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Thin ribbons for a mesh file: vertices (N, 3) float32 and triangles (M, 3) int32.

    Every ``subsample``-th strand with hair, every ``point_step``-th point (and the tip);
    each point becomes two vertices ``width_cm`` apart across the strand, facing away from
    the head. All 1024 strands at the default steps: about 100k triangles (~2.5 MB).
    """
    strands = style.positions[style.active][::subsample].astype(np.float64)  # (S, P, 3)
    keep = np.unique(np.r_[np.arange(0, POINTS, point_step), POINTS - 1])
    strands = strands[:, keep]
    s, q = strands.shape[:2]
    tangent = unit(np.gradient(strands, axis=1))
    across = unit(np.cross(tangent, strands - SCALP_CENTRE))  # (S, Q, 3)
    half = 0.5 * width_cm * across
    vertices = np.stack([strands - half, strands + half], 2).reshape(-1, 3)  # (S*Q*2, 3)
    a = (np.arange(s)[:, None] * q + np.arange(q - 1)[None]) * 2  # (S, Q-1) left of a point
    faces = np.concatenate(
        [np.stack([a, a + 1, a + 3], -1), np.stack([a, a + 3, a + 2], -1)], 1
    ).reshape(-1, 3)
    return vertices.astype(np.float32), faces.astype(np.int32)
