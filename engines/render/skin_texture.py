"""A plain procedural skin texture for the default target (no albedo ships with ICT light).

Vertex colours on the neutral mesh (skin tone, darker brows, tinted lips, a little cheek
colour), baked into the model's UV space: one tile per textured material's UDIM tile,
side by side (tile 0 = face, tile 1 = back of the head for ICT).
"""

from __future__ import annotations

import cv2
import numpy as np
from matplotlib.path import Path as PolyPath

from engines.face.ict import ICTFaceModel
from engines.render.materials import material_for

SKIN_RGB = np.array([214, 166, 142], np.float32)
LIP_RGB = np.array([176, 98, 96], np.float32)
BROW_RGB = np.array([92, 66, 52], np.float32)
CHEEK_RGB = np.array([214, 140, 128], np.float32)


def skin_vertex_colours(model: ICTFaceModel) -> np.ndarray:
    """sRGB colours (V, 3) float32 for the neutral mesh."""
    v = model.neutral.numpy()
    lm = v[model.topology.landmark_vertex_ids]  # iBUG 68 at rest
    colours = np.tile(SKIN_RGB, (len(v), 1))
    front = v[:, 2] > lm[:, 2].min() - 1.0
    # lips: inside the outer lip contour (iBUG 48-59) seen from the front, feathered
    lips = PolyPath(lm[48:60, :2]).contains_points(v[:, :2], radius=-0.05) & front
    lip_w = cv2.GaussianBlur(lips.astype(np.float32)[None], (1, 1), 0)[0]
    colours = mix(colours, LIP_RGB, 0.85 * lip_w)
    # brows: near the brow polylines (17-21, 22-26), thinning towards the temples
    for ids in (range(17, 22), range(22, 27)):
        pts = lm[list(ids), :2] - np.array([0.0, 0.35])
        t = np.linspace(0.0, len(pts) - 1.0, 60)
        line = np.stack([np.interp(t, np.arange(len(pts)), pts[:, k]) for k in (0, 1)], 1)
        d = np.min(np.linalg.norm(v[:, None, :2] - line[None], axis=2), axis=1)
        colours = mix(colours, BROW_RGB, 0.6 * np.clip(1.5 - d / 0.3, 0, 1) * front)
    # cheeks: a soft warm tint under the eyes, beside the nose
    for centre in (lm[[1, 31]].mean(0), lm[[15, 35]].mean(0)):
        d = np.linalg.norm(v[:, :2] - centre[:2], axis=1)
        colours = mix(colours, CHEEK_RGB, 0.35 * np.exp(-((d / 2.0) ** 2)) * front)
    return colours.astype(np.float32)


def mix(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, np.float32)[:, None]
    return a * (1 - w) + b * w


def bake_vertex_colours(model: ICTFaceModel, colours: np.ndarray, size: int = 512) -> np.ndarray:
    """Rasterise per-vertex colours (V, 3) into a (size, tiles * size, 3) uint8 UV texture."""
    t = model.topology
    textured = np.array([material_for(n).textured for n in t.material_names])
    faces = np.nonzero(textured[t.face_material])[0]
    uv = t.uvs[t.face_uvs[faces]]  # (F, 3, 2)
    tiles = int(np.floor(uv[..., 0].min(1)).max()) + 1
    tex = np.empty((size, tiles * size, 3), np.uint8)
    tex[:] = SKIN_RGB.astype(np.uint8)
    px = np.stack([uv[..., 0] * size, (1.0 - uv[..., 1]) * size], -1)  # tiles side by side
    face_rgb = colours[t.faces[faces]].mean(1)  # (F, 3)
    for tri, rgb in zip(np.round(px * 16).astype(np.int32), face_rgb, strict=True):
        cv2.fillConvexPoly(tex, tri, rgb.tolist(), lineType=cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(tex, (0, 0), size / 512)


def plain_skin_texture(model: ICTFaceModel, size: int = 512) -> np.ndarray:
    """The default target's texture: (size, 2 * size, 3) uint8 for ICT."""
    return bake_vertex_colours(model, skin_vertex_colours(model), size)
