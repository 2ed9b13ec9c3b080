"""Where a photo's texels are trusted, and a seamless fill for the rest (issue #21).

* :func:`silhouette_fade`: texels whose photo pixel lies within a few pixels of the
  projected head's outline take no colour (there the photo shows the background as often
  as the ear rim, jaw or neck side: the fit is a few pixels off).
* :func:`not_skin`: outside the face's central features (eyes, brows, nose, mouth:
  :func:`outside_core`), a texel whose colour is far from the face's skin
  (:func:`skin_model`, CIELAB) loses its weight: background, collars, shadows and stray
  hair at the ears, jaw line, hairline and neck. Anywhere, such colours do not anchor
  the fill (it continues skin, not a brow or a fringe).
* :func:`vertex_fill`: the unseen texels' colour is a screened Poisson (membrane) fill over
  the mesh's vertex graph: it meets the seen texels' tone at their boundary, across UV
  seams (the graph is the 3D surface, not the texture) and fades to the median skin some
  centimetres away. The photo then lies over it with its weight, so the photo's detail
  stays where it is seen and no tone step remains where it ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from avatars.colour import to_lab
from engines.face.model import MeshTopology

SILHOUETTE_MARGIN = (0.012, 0.035)  # of the head's size in the photo: no weight -> full
SKIN_SIGMAS = (3.0, 6.0)  # CIELAB distance from the median skin in its robust sigmas
SIGMA_FLOOR = (4.0, 1.5, 1.5)  # L, a, b: the least spread a face's skin is given
# the central features on the rest head (cm): from under the chin to above the brows,
# half as wide as the brows at the top and as the chin at the bottom (a trapezoid)
CORE_HEIGHTS = (-8.0, 7.0)
CORE_HALF_WIDTHS = (3.5, 6.2)  # at the bottom, and from 2 cm up (brows, eyes, cheekbones)
CORE_RAMP = 0.08  # the skin check comes in over this fraction of the core's size outside
FILL_DECAY_CM = 3.0  # how far the boundary's tone reaches into the fill before the skin's
ANCHOR = (0.3, 0.6)  # share of a vertex's texels seen: anchors not at all -> fully
DATA_STIFFNESS = 1e4  # cm^-2: how firmly seen vertices keep their colour in the fill
FILL_TEXELS = 400_000  # at most this many texels (a stride) make the vertices' colours


def silhouette_fade(zbuf: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """(T,) weights in [0, 1] of texels at photo pixels ``pix`` (T, 2) by their distance to
    the outline of the z-buffer ``zbuf`` (H, W) (inf off the mesh; holes are filled)."""
    mask = np.isfinite(zbuf).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    solid = np.zeros_like(mask)
    cv2.drawContours(solid, contours, -1, 1, cv2.FILLED)
    dist = cv2.distanceTransform(solid, cv2.DIST_L2, 3)  # px to the nearest outside pixel
    scale = np.sqrt(solid.sum())
    lo, hi = SILHOUETTE_MARGIN[0] * scale, SILHOUETTE_MARGIN[1] * scale
    h, w = zbuf.shape
    xi = np.clip(np.floor(pix[:, 0]).astype(np.int64), 0, w - 1)
    yi = np.clip(np.floor(pix[:, 1]).astype(np.int64), 0, h - 1)
    return np.clip((dist[yi, xi] - lo) / max(hi - lo, 1e-6), 0, 1)


@dataclass(frozen=True)
class SkinModel:
    """The face's skin colour: CIELAB median and robust spread per channel."""

    median: np.ndarray  # (3,)
    sigma: np.ndarray  # (3,)


def skin_model(
    albedo: np.ndarray,  # (N, 3) sRGB 0-255 of seen texels
    weight: np.ndarray,  # (N,) their photo weights
    rest: np.ndarray,  # (N, 3) their points on the rest head (cm)
) -> SkinModel | None:
    """The skin of the confidently seen central face (None when too little is seen)."""
    ref = (weight > 0.9) & (outside_core(rest) == 0)
    if ref.sum() < 200:
        return None
    lab = to_lab(albedo[ref])  # (R, 3)
    median = np.median(lab, 0)
    sigma = np.maximum(1.4826 * np.median(np.abs(lab - median), 0), SIGMA_FLOOR)
    return SkinModel(median, sigma)


def not_skin(colour: np.ndarray, skin: SkinModel | None) -> np.ndarray:
    """(N,) in [0, 1]: how far colours (N, 3) (sRGB 0-255) are from ``skin``, in CIELAB per
    channel in units of the skin's robust spread (a shadow, mostly lightness, is tolerated
    more than the grey of a wall or the brown of hair): 0 within ``SKIN_SIGMAS[0]``, 1
    beyond ``SKIN_SIGMAS[1]``."""
    if skin is None:
        return np.zeros(len(colour), np.float32)
    d = np.linalg.norm((to_lab(colour) - skin.median) / skin.sigma, axis=1)  # (N,)
    lo, hi = SKIN_SIGMAS
    return np.clip((d - lo) / (hi - lo), 0, 1).astype(np.float32)


def outside_core(rest: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: 0 on the central features, 1 ``CORE_RAMP`` outside them, of rest
    points (N, 3) (cm)."""
    (bottom, top), (narrow, wide) = CORE_HEIGHTS, CORE_HALF_WIDTHS
    x, y = np.abs(rest[:, 0]), rest[:, 1]
    half_w = np.interp(y, [bottom, 2.0], [narrow, wide])
    r = np.maximum(x / half_w, np.abs(y - (top + bottom) / 2) / ((top - bottom) / 2))
    return np.clip((r - 1) / CORE_RAMP, 0, 1)


def vertex_graph(topology: MeshTopology, neutral: np.ndarray, faces: np.ndarray) -> sp.csr_matrix:
    """The (V, V) weighted Laplacian of the triangles ``faces`` (F,) on the rest mesh,
    edge weights 1 / length^2 (cm^-2), so that it approximates the surface's -∇²."""
    tri = topology.faces[faces]  # (F, 3)
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])  # (3F, 2)
    e = np.unique(np.sort(e, 1), axis=0)
    w = 1.0 / np.maximum(((neutral[e[:, 0]] - neutral[e[:, 1]]) ** 2).sum(1), 1e-4)
    n = len(neutral)
    adj = sp.coo_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])),
                        shape=(n, n)).tocsr()
    return (sp.diags(np.asarray(adj.sum(1)).ravel()) - adj).tocsr()


def vertex_fill(
    laplacian: sp.csr_matrix,  # (V, V) from vertex_graph
    corners: np.ndarray,  # (T, 3) vertex ids of each texel's triangle
    bary: np.ndarray,  # (T, 3)
    colour: np.ndarray,  # (T, 3) the texels' colours where seen
    weight: np.ndarray,  # (T,) how much each texel is seen
    skin: np.ndarray,  # (3,) the colour far from any seen texel
) -> np.ndarray:
    """(V, 3) a smooth fill on the vertices: it minimises the membrane energy plus
    ``DATA_STIFFNESS`` * anchor * (f - seen colour)^2 plus (f - skin)^2 / decay^2, where
    a vertex's anchor grows with the share of its texels confidently seen."""
    step = max(1, len(weight) // FILL_TEXELS)
    sure = np.clip(2 * weight[::step] - 1, 0, 1)  # only confidently seen texels anchor it
    ids, b = corners[::step].ravel(), (bary[::step] * sure[:, None]).ravel()  # (3T',)
    n = laplacian.shape[0]
    seen = np.bincount(ids, b, n)
    cover = np.bincount(ids, bary[::step].ravel(), n)
    rgb = np.stack([np.bincount(ids, b * np.repeat(colour[::step, c], 3), n)
                    for c in range(3)], 1) / np.maximum(seen, 1e-9)[:, None]  # (V, 3)
    # a vertex anchors the fill when much of it is seen (not a few specks)
    anchor = np.clip((seen / np.maximum(cover, 1e-9) - ANCHOR[0]) / (ANCHOR[1] - ANCHOR[0]),
                     0, 1)
    stiff = DATA_STIFFNESS * anchor + 1.0 / FILL_DECAY_CM**2
    sub = np.nonzero(laplacian.diagonal() > 0)[0]  # the textured surface's vertices
    system = (laplacian[sub][:, sub] + sp.diags(stiff[sub])).tocsc()
    rhs = DATA_STIFFNESS * anchor[sub, None] * rgb[sub] + skin / FILL_DECAY_CM**2
    f = np.tile(np.asarray(skin, np.float64), (n, 1))
    f[sub] = spsolve(system, rhs).reshape(len(sub), 3)
    return f
