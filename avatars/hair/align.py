"""Aligning a hairstyle to a head (the thesis's anchor alignment), then out of its skin.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from avatars.hair.scalp import ROOT_OFFSET, HeadSurface, skin_faces
from avatars.hair.strands import POINTS, Hairstyle, curvature
from engines.face.model import MeshTopology

ANCHOR_FRACTION = 0.05  # anchors: the top 5% of points by height


# C, measured on the ICT neutral head the styles grow on, so that aligning to it changes
# nothing: the root anchors' mean sits ALIGN_OFFSET from the skin anchors' mean (the top
# 5% of skin vertices reach down the dense forehead, the top 5% of roots do not), and the
# root anchors span ALIGN_SCALE times the skin anchors' width.
ALIGN_OFFSET = np.array([0.0, 2.05, -2.70])  # cm


ALIGN_SCALE = 0.440


def anchors(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The thesis's anchor: mean (3,) and x extent of the top 5% of points (N, 3) by y."""
    top = points[points[:, 1] >= np.quantile(points[:, 1], 1.0 - ANCHOR_FRACTION)]
    return top.mean(0), float(np.ptp(top[:, 0]))


def anchor_aligned(style: Hairstyle, skin_vertices: np.ndarray) -> np.ndarray:
    """The thesis's anchor alignment alone (no mends): strands (1024, 100, 3) float64 for
    a head's skin vertices (N, 3) (see :func:`align_to_head`)."""
    a_head, w_head = anchors(np.asarray(skin_vertices, np.float64))
    a_hair, w_hair = anchors(style.roots.reshape(-1, 3).astype(np.float64))
    scale = ALIGN_SCALE * w_head / w_hair
    return scale * (style.positions.reshape(-1, POINTS, 3) - a_hair + ALIGN_OFFSET) + a_head


def align_to_head(
    style: Hairstyle,
    head_vertices: np.ndarray | torch.Tensor,
    topology: MeshTopology | np.ndarray,
    offset: float = ROOT_OFFSET,
) -> Hairstyle:
    """A hairstyle moved onto a head: vertices (V, 3) in the ICT frame (a fitted person's
    neutral head, ``model.prepare_identity(shape)[0]``) with an ICT topology (its skin is
    used) or the skin's triangles (F, 3).

    The thesis's alignment first: anchors A (mean) and W (x extent) of the top 5% by height
    of the head's skin vertices and of the strand roots; then every point
    ``p -> s (p - A_hair + C_t) + A_head`` with scale ``s = C_s W_head / W_hair``, where
    C_t = ALIGN_OFFSET and C_s = ALIGN_SCALE are measured on the ICT neutral head (the
    identity there; a multiplicative C_s, unlike an additive one, also recovers a head's
    uniform scale exactly). Then the mends: each root is moved along the skin normal to
    ``offset`` cm out of the skin, its strand with it, and the points left inside the head
    (or closer than ``offset``) are pushed out along the normal; a strand that still runs
    into the body (long hair on broader shoulders than the neutral head's, deeper than a
    push reaches) ends where it enters.
    """
    faces = skin_faces(topology) if isinstance(topology, MeshTopology) else topology
    vertices = np.asarray(head_vertices, np.float64).reshape(-1, 3)
    surface = HeadSurface(vertices, faces)
    strands = anchor_aligned(style, surface.vertices)

    sd, normal = surface.query(strands[:, 0])
    strands += ((offset - sd)[:, None] * normal)[:, None]  # roots onto the skin
    for _ in range(3):  # by the ears a moved root can meet another vertex's plane: again
        sd, normal = surface.query(strands[:, 0], exact=True)
        low = sd < 0.5 * offset
        if not low.any():
            break
        strands[low] += ((offset - sd[low])[:, None] * normal[low])[:, None]
    sd = push_out_strands(strands, surface, offset)
    end_where_entering(strands, sd)
    positions = strands.reshape(style.positions.shape).astype(np.float32)
    return replace(style, positions=positions, extra=curvature(positions))


def push_out_strands(strands: np.ndarray, surface: HeadSurface, offset: float) -> np.ndarray:
    """Strands (S, P, 3), in place: every point but the root within HeadSurface.NEAR of
    the skin and closer than ``offset`` to it (or inside) pushed out along the normal, a
    second time where the first push landed near another vertex's plane. Returns the
    points' exact signed distances afterwards (S, P), the roots' set to 0.

    One exact query of all points; only the pushed points are queried again."""
    flat = strands[:, 1:].reshape(-1, 3)  # (N, 3) a copy
    sd, normal, dist = surface.nearest(flat)  # exact
    todo = np.arange(len(flat))
    for _ in range(2):
        low = todo[(dist[todo] <= surface.NEAR) & (sd[todo] < offset)]
        if not len(low):
            break
        flat[low] += (offset - sd[low])[:, None] * normal[low]
        sd[low], normal[low], dist[low] = surface.nearest(flat[low])
        todo = low
    strands[:, 1:] = flat.reshape(len(strands), -1, 3)
    return np.concatenate([np.zeros((len(strands), 1)), sd.reshape(len(strands), -1)], 1)


def end_where_entering(strands: np.ndarray, sd: np.ndarray) -> None:
    """Strands (S, P, 3), in place, given their points' signed distances to the skin
    (S, P): from its first point inside the skin on, a strand stays at the point before
    (it ends there, as if cut at the shoulder)."""
    inside = sd < 0.0  # (S, P)
    inside[:, 0] = False  # roots sit on the skin
    hit = inside.any(1)
    first = np.where(hit, inside.argmax(1), strands.shape[1])  # (S,)
    after = np.arange(strands.shape[1])[None] >= first[:, None]  # (S, P)
    last = strands[np.arange(len(strands)), np.maximum(first - 1, 0)]  # (S, 3)
    strands[after] = np.repeat(last, after.sum(1), axis=0)
