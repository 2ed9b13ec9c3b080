"""Hair seen in a photo: its colour and mask (GrabCut seeded from the face oval), and the
style whose silhouette matches the mask best.
"""

from __future__ import annotations

import cv2
import numpy as np

# MediaPipe face-mesh landmarks round the face oval, in order
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109]  # fmt: skip


BROWS = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # their upper edges


SKIN_DELTA_E = 16.0  # Lab distance under which a pixel counts as the face's skin


MIN_HAIR_AREA = 0.08  # hair masks smaller than this fraction of the face oval: no hair


WORK_SIDE = 320  # grab-cut runs on the photo scaled to this long side at most


def hair_colour(
    image_rgb: np.ndarray, landmarks_px: np.ndarray
) -> tuple[tuple[float, float, float] | None, np.ndarray]:
    """The hair colour (sRGB in [0, 1], for ``MeshRenderer.set_hair``) and hair mask
    (H, W) bool of a photo (H, W, 3) uint8 with its face-mesh landmarks (478, 2) in pixels.

    No learned model: GrabCut on a mask laid out from the face oval (``FACE_OVAL``), on
    the photo scaled to ``WORK_SIDE`` px. Skin is the median colour of the oval from the
    brows down; that part is painted in it (its dark eyes and brows would pass for hair)
    and is sure background, as is the image's 5% border away from the head. Probable
    hair: the pixels not skin-coloured (Lab distance over ``SKIN_DELTA_E``, twice that on
    the often shaded forehead) in an ellipse round the head (the oval widened 1.5 times,
    from 0.6 face heights over its top to 0.35 under its chin, less the neck) outside the
    oval. Everything else: probable background. The hair is GrabCut's foreground (5
    iterations) in that ellipse, less the lower oval, skin-coloured pixels (a bald scalp,
    ears) and specks. The colour is the mask's median; a mask under ``MIN_HAIR_AREA`` of
    the oval's area means no hair: colour None.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8; got {image_rgb.shape} {image_rgb.dtype}")
    h, w = image_rgb.shape[:2]
    k = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(image_rgb, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    lm = np.asarray(landmarks_px, float) * k  # (478, 2)
    oval = np.round(lm[FACE_OVAL]).astype(np.int32)  # (36, 2)
    face, lower, head = head_regions(small.shape[:2], oval, lm[BROWS, 1].min())
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    skin_delta = np.linalg.norm(lab - np.median(lab[lower], axis=0), axis=2)  # (h, w)
    skin_like = skin_delta < np.where(face, 2.0, 1.0) * SKIN_DELTA_E  # foreheads: shaded

    small[lower] = np.median(small[lower], axis=0)  # eyes and brows would pass for hair
    mask = np.full(face.shape, cv2.GC_PR_BGD, np.uint8)
    mask[head & ~face & ~skin_like] = cv2.GC_PR_FGD
    mask[lower] = cv2.GC_BGD
    border = np.ones(face.shape, bool)
    m = max(1, round(0.05 * min(face.shape)))
    border[m:-m, m:-m] = False
    mask[border & ~head] = cv2.GC_BGD
    if not (mask == cv2.GC_PR_FGD).any():
        return None, np.zeros((h, w), bool)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's RNG: the same each call
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(small, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    hair = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)) & head & ~lower & ~skin_like
    hair = cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    full = cv2.resize(hair, (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    if hair.sum() < MIN_HAIR_AREA * face.sum():
        return None, full
    rgb = np.median(image_rgb[full], axis=0) / 255.0
    return (float(rgb[0]), float(rgb[1]), float(rgb[2])), full


def head_regions(
    shape: tuple[int, int], oval: np.ndarray, brow_y: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks (H, W) bool from the face oval's polygon (K, 2) px and the brows' top edge
    (px): the oval, its part from the brows down, and the ellipse round the head where
    hair may be (see hair_colour)."""
    face = cv2.fillPoly(np.zeros(shape, np.uint8), [oval], 1).astype(bool)
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    fw, fh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2.0, y0 - 0.6 * fh + 1.95 * fh / 2.0
    axes = (round(0.75 * fw), round(1.95 * fh / 2.0))
    head = cv2.ellipse(np.zeros(shape, np.uint8), (round(cx), round(cy)), axes, 0, 0, 360, 1, -1)
    ys, xs = np.arange(shape[0])[:, None], np.arange(shape[1])[None]
    neck = (ys > y1 - 0.1 * fh) & (np.abs(xs - cx) < 0.45 * fw)
    return face, face & (ys > brow_y - 0.02 * fh), head.astype(bool) & ~neck


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def choose_style(hair_mask: np.ndarray, render_silhouettes: dict[str, np.ndarray]) -> str:
    """The style whose rendered hair silhouette (H, W) bool best overlaps (IoU) the photo's
    hair mask (H, W); ties go to the smaller silhouette (less hair)."""
    if not render_silhouettes:
        raise ValueError("no silhouettes to choose from")
    return max(
        render_silhouettes,
        key=lambda n: (mask_iou(hair_mask, render_silhouettes[n]), -render_silhouettes[n].sum()),
    )
