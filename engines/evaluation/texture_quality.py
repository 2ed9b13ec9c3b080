"""Measures of an unwrapped UV texture that need no hand labels (issue #21).

* **background leak**: the share of texels in the ear and side (jaw line, temples, cheek
  silhouette) regions of the UV layout whose colour is far (CIELAB ΔE > ``LEAK_DELTA_E``)
  from the face's median skin. The regions come from the ICT rest mesh: ears by position,
  the sides (temples, the cheeks' and jaw's silhouette, the neck's sides; not the nose and
  mouth) by a rest normal turned away from the front, on the head's front half. The
  "light" share counts, over both regions, only such texels lighter than the skin: the
  wall or collar behind the head rather than hair, beard or shadow.
* **seam step**: the mean CIELAB ΔE between the texture a short step inside the photo
  region (seen weight > 0.5) and a short step outside it, along the boundary's normal.
* **detail**: the high-frequency energy (lightness minus its blur) over a texel mask; the
  ratio of two textures' energies over the same mask says how much detail one kept.

A texture filled entirely with the median skin scores 0 leak and 0 seam step, and no
detail: the three are read together.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from avatars.colour import to_lab
from avatars.texture_unwrap import UVLayout
from engines.face.model import MeshTopology
from engines.geometry.normals import vertex_normals

LEAK_DELTA_E = 25.0  # CIELAB distance from the median skin that counts as not skin
SIDE_COS = 0.5  # rest normals with a smaller z (frontal) component are the head's side
SIDE_BELOW = -13.0  # cm: the side region's lowest rest height (the photo's neck ends there)
SEAM_STEP = 1 / 64  # of the texture size: how far each side of the boundary is read
DETAIL_SIGMA = 1 / 512  # of the texture size: the blur that detail is measured against


@dataclass(frozen=True)
class TextureRegions:
    """Texel masks (T,) over a :class:`UVLayout`'s texels."""

    skin: np.ndarray  # frontal cheeks, forehead and nose: the reference skin
    ears: np.ndarray  # both ears, front and back
    side: np.ndarray  # the front half's sides: temples, cheeks' and jaw's silhouette, neck


def texture_regions(lay: UVLayout, topology: MeshTopology, neutral: np.ndarray) -> TextureRegions:
    """The regions of ``lay`` from the rest mesh ``neutral`` (V, 3) in cm (ICT)."""
    normals = vertex_normals(
        torch.from_numpy(np.asarray(neutral, np.float32)),
        torch.as_tensor(topology.faces, dtype=torch.long),
    ).numpy()
    nrm = (normals[topology.faces[lay.triangle]] * lay.bary[:, :, None]).sum(1)  # (T, 3)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-12
    x, y, z = lay.rest[:, 0], lay.rest[:, 1], lay.rest[:, 2]
    face_tile = lay.texel % (lay.tiles * lay.size) < lay.size
    ears = (np.abs(x) > 7.0) & (z < 3.0) & (y > -4.0) & (y < 6.0)
    skin = face_tile & (nrm[:, 2] > 0.8) & (np.abs(x) < 5.0) & (y > -8.0) & (y < 8.0) & (z > 5.0)
    inner = (np.abs(x) < 4.0) & (y > -7.0) | ~face_tile & (z > 3.0)  # nose, mouth, sockets
    side = ~ears & ~inner & (nrm[:, 2] < SIDE_COS) & (z > -3.0) & (y > SIDE_BELOW)
    return TextureRegions(skin, ears, side)


def texel_colours(texture: np.ndarray, lay: UVLayout) -> np.ndarray:
    """The layout's texel colours (T, 3) of a texture (S, tiles * S, 3)."""
    return texture.reshape(-1, 3)[lay.texel]


def background_leak(
    texture: np.ndarray, lay: UVLayout, regions: TextureRegions
) -> dict[str, float]:
    """Shares of ear and side texels far from the median skin (see the module docstring),
    and of both together far and lighter than the skin (a wall, a collar: "light")."""
    lab = to_lab(texel_colours(texture, lay))  # (T, 3)
    skin = np.median(lab[regions.skin], 0)
    far = np.linalg.norm(lab - skin, axis=1) > LEAK_DELTA_E
    both = regions.ears | regions.side
    return {"ears": float(far[regions.ears].mean()), "side": float(far[regions.side].mean()),
            "light": float((far & (lab[:, 0] > skin[0]))[both].mean())}


def seam_step(texture: np.ndarray, seen: np.ndarray, lay: UVLayout) -> float:
    """Mean ΔE across the seen/filled boundary of ``texture`` (S, k*S, 3) with photo
    weights ``seen`` (S, k*S), read ``SEAM_STEP`` * S each side along the normal."""
    h, w = seen.shape
    on = np.zeros(h * w, bool)
    on[lay.texel] = True
    on = on.reshape(h, w)
    inside = on & (seen > 0.5)
    outside = on & ~inside
    near_out = cv2.dilate(outside.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ys, xs = np.nonzero(inside & near_out)  # boundary texels on the photo's side
    if len(ys) == 0:
        return 0.0
    smooth = cv2.GaussianBlur(seen.astype(np.float32), (0, 0), max(1.0, h / 256))
    gy, gx = np.gradient(smooth)
    g = np.stack([gx[ys, xs], gy[ys, xs]], 1)  # (B, 2) towards the photo
    g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-12
    d = SEAM_STEP * h
    lab = to_lab(cv2.GaussianBlur(texture.astype(np.float32), (0, 0), d / 2))  # (h, w, 3): tone
    a = np.round(np.stack([xs, ys], 1) + d * g).astype(np.int64)  # (B, 2) photo side
    b = np.round(np.stack([xs, ys], 1) - d * g).astype(np.int64)  # (B, 2) fill side
    ok = (a >= 0).all(1) & (b >= 0).all(1) & (a[:, 0] < w) & (b[:, 0] < w)
    ok &= (a[:, 1] < h) & (b[:, 1] < h)
    a, b = a[ok], b[ok]
    ok = inside[a[:, 1], a[:, 0]] & outside[b[:, 1], b[:, 0]]
    a, b = a[ok], b[ok]
    if len(a) == 0:
        return 0.0
    return float(np.linalg.norm(lab[a[:, 1], a[:, 0]] - lab[b[:, 1], b[:, 0]], axis=1).mean())


def detail_energy(texture: np.ndarray, mask: np.ndarray) -> float:
    """Mean squared high-frequency lightness (L minus its blur) of ``texture`` (S, k*S, 3)
    over ``mask`` (S, k*S) bool, eroded so that the mask's own edge does not count."""
    light = to_lab(texture)[..., 0]
    hf = light - cv2.GaussianBlur(light, (0, 0), DETAIL_SIGMA * texture.shape[0])
    keep = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return float((hf[keep] ** 2).mean()) if keep.any() else 0.0
