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


def strands_to_cards(
    style: Hairstyle, width_cm: float = 0.8, subsample: int = 1, point_step: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hair cards for viewers without strand rendering: ribbons ``width_cm`` wide along
    the strands (see :func:`strands_to_ribbons`), with UVs (N, 2) float32 — u across the
    card in [0, 1], v from the root (0) to the tip (1) — for a texture of fibres whose
    alpha cuts each card into hairs (:func:`card_texture`)."""
    vertices, faces = strands_to_ribbons(style, width_cm, subsample, point_step)
    q = len(np.unique(np.r_[np.arange(0, POINTS, point_step), POINTS - 1]))
    along = np.linspace(0.0, 1.0, q, dtype=np.float32)  # (Q,)
    card = np.stack(np.broadcast_arrays(np.array([0.0, 1.0], np.float32)[None],
                                        along[:, None]), -1)  # (Q, 2, 2): u, v
    uvs = np.tile(card.reshape(-1, 2), (len(vertices) // (2 * q), 1))  # (N, 2)
    return vertices, faces, uvs


def card_texture(rgb: tuple[float, float, float], width: int = 64, height: int = 256,
                 fibres: int = 9, seed: int = 0) -> np.ndarray:
    """(height, width, 4) uint8 sRGBA: ``fibres`` hairs side by side along v, each a
    little lighter or darker than ``rgb`` (sRGB in [0, 1]), thinning towards the tip;
    transparent between them. Row 0 is the root."""
    rng = np.random.default_rng(seed)
    u = (np.arange(width) + 0.5) / width  # (W,)
    v = (np.arange(height) + 0.5) / height  # (H,)
    centres = (np.arange(fibres) + 0.5 + rng.uniform(-0.3, 0.3, fibres)) / fibres  # (K,)
    shade = rng.uniform(0.75, 1.2, fibres)  # (K,)
    half = 0.5 / fibres * (1.0 - 0.7 * v[:, None, None] ** 2)  # (H, 1, 1) thinner at the tip
    cover = np.clip(1.0 - np.abs(u[None, :, None] - centres) / half, 0.0, 1.0)  # (H, W, K)
    k = cover.argmax(-1)  # (H, W) the fibre each texel belongs to
    alpha = cover.max(-1) ** 0.5 * np.clip((1.0 - v[:, None]) / 0.15, 0.0, 1.0)  # tip fade
    colour = np.clip(np.asarray(rgb)[None, None] * shade[k][..., None], 0.0, 1.0)
    return (np.dstack([colour, alpha]) * 255).round().astype(np.uint8)
