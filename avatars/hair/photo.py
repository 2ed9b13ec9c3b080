"""Hair seen in a photo: its colour and mask (GrabCut seeded from the face oval), and the
style whose silhouette matches the mask best.
"""

from __future__ import annotations

from math import ceil, floor

import cv2
import numpy as np

from avatars.hair.styles import STYLE_TRAITS, HairTraits

# MediaPipe face-mesh landmarks round the face oval, in order
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21,
             54, 103, 67, 109]  # fmt: skip


BROWS = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # their upper edges


SKIN_DELTA_E = 16.0  # Lab distance under which a pixel counts as the face's skin


MIN_HAIR_AREA = 0.08  # hair masks smaller than this fraction of the face oval: no hair


# a bald crown: hair on less than this share of the pixels over the forehead (the oval's
# top to 0.35 face heights above it, the middle half of its width). On the 53 portraits:
# the bald man 0.00-0.01 (his hair and shadows at the temples pass MIN_HAIR_AREA), every
# other 0.17-0.89 (the shaved head's stubble 0.43: told apart by its colour, bare_scalp)
CROWN_BARE = 0.05
CROWN_SPAN = (0.35, 0.25)  # face heights above the oval's top, face widths from its middle


WORK_SIDE = 320  # grab-cut runs on the photo scaled to this long side at most
HEAD_MARGIN = 0.25  # face heights of the photo kept round the head's region (head_box)
WHOLE_PHOTO = 0.8  # a head box whose long side is this much of the photo's: the whole photo


# where hair may be, in face heights (fh) and widths (fw) of the oval's bounding box: an
# ellipse round the head, and a band beside the neck down to the shoulders (hair hanging
# there tells long hair from short), less the neck
HEAD_ABOVE = 0.6  # fh: the ellipse's top over the oval's top ...
HEAD_HEIGHT = 1.95  # fh: ... its height ...
HEAD_HALF_WIDTH = 0.75  # fw: ... and its half width
HANG_BELOW = 0.9  # fh under the chin
HANG_HALF_WIDTH = 1.1  # fw
NECK_HALF_WIDTH = 0.38  # fw


BORDER_COLOURS = 6  # k-means clusters of the background's colours along the photo's border
KMEANS_ATTEMPTS = 5  # the most compact of this many starts: one start's clusters varied
# with the seed enough to take a cluttered background's hair-coloured door for the hair


BACKGROUND_DELTA_E = 12.0  # Lab distance to one of them under which a pixel is background


FOREHEAD_DARKER_L = 10.0  # hair over the forehead is darker than the skin by this much


SCALP_CHROMA = 4.0  # a/b distance to the skin under which a pixel not darker is bare scalp


HAIR_OVER_SKIN = 0.7  # forehead hair: nearer the hair's colour than this times the skin's


FOREHEAD_ABOVE = 0.2  # face heights over the oval's top still forehead (or a fringe)


def hair_colour(
    image_rgb: np.ndarray, landmarks_px: np.ndarray
) -> tuple[tuple[float, float, float] | None, np.ndarray]:
    """The hair colour (sRGB in [0, 1], for ``MeshRenderer.set_hair``) and hair mask
    (H, W) bool of a photo (H, W, 3) uint8 with its face-mesh landmarks (478, 2) in pixels.

    No learned model: GrabCut on a mask laid out from the face oval (``FACE_OVAL``), on
    the photo scaled to ``WORK_SIDE`` px. Skin is the median colour of the oval from the
    brows down; that part is painted in it (its dark eyes and brows would pass for hair)
    and is sure background, as is the image's 5% border away from the head. Background:
    pixels within ``BACKGROUND_DELTA_E`` of the border's colours. Probable hair: the pixels
    neither skin-coloured (Lab distance over ``SKIN_DELTA_E``) nor background in an
    ellipse round the head (the oval widened 1.5 times, from 0.6 face heights over its
    top to 0.35 under its chin) outside the oval and above the mouth, and the forehead's
    pixels clearly darker than the skin. The band beside the neck down to the shoulders
    starts as probable background: GrabCut takes from it what looks like the hair above.
    The hair is GrabCut's foreground (5 iterations) in those regions, less the lower
    oval, skin-coloured and background pixels, bare scalp (the skin's hue,
    ``SCALP_CHROMA``, and not darker), forehead pixels nearer the skin than the hair's
    median colour (``HAIR_OVER_SKIN``: a shaded forehead is no fringe) and specks. The
    colour is the mask's median; a mask under ``MIN_HAIR_AREA`` of the oval's area (times
    the part of the head over the face the photo shows), or one that leaves the crown
    bare (``CROWN_BARE``: hair at the temples only), means no hair: colour None. The
    same photo gives the same mask every time (OpenCV's RNG is seeded first).
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8; got {image_rgb.shape} {image_rgb.dtype}")
    h, w = image_rgb.shape[:2]
    # the background's k-means and GrabCut's start from OpenCV's RNG (one per thread):
    # seeded, a photo gives the same mask whatever this thread measured before
    cv2.setRNGSeed(0)
    bx0, by0, bx1, by1 = head_box((h, w), np.asarray(landmarks_px, float))
    crop = image_rgb[by0:by1, bx0:bx1]
    ch, cw = crop.shape[:2]
    k = min(1.0, WORK_SIDE / max(ch, cw))
    small = cv2.resize(crop, (round(cw * k), round(ch * k)), interpolation=cv2.INTER_AREA)
    lm = (np.asarray(landmarks_px, float) - (bx0, by0)) * k  # (478, 2)
    oval = np.round(lm[FACE_OVAL]).astype(np.int32)  # (36, 2)
    brow_y = lm[BROWS, 1].min()
    face, lower, head, upper = head_regions(small.shape[:2], oval, brow_y)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB).astype(np.float32)
    skin = np.median(lab[lower], axis=0)  # (3,)
    skin_delta = np.linalg.norm(lab - skin, axis=2)  # (h, w)
    skin_like = skin_delta < np.where(face, 2.0, 1.0) * SKIN_DELTA_E  # foreheads: shaded
    border = np.ones(face.shape, bool)
    m = max(1, round(0.05 * min(face.shape)))
    border[m:-m, m:-m] = False
    background = background_like(lab, border & ~head)
    darker = lab[..., 0] < skin[0] - FOREHEAD_DARKER_L
    scalp_like = np.linalg.norm(lab[..., 1:] - skin[1:], axis=2) < SCALP_CHROMA
    scalp_like &= lab[..., 0] > skin[0] - FOREHEAD_DARKER_L  # a bare scalp: skin's hue

    small[lower] = np.median(small[lower], axis=0)  # eyes and brows would pass for hair
    mask = np.full(face.shape, cv2.GC_PR_BGD, np.uint8)
    mask[upper & ~face & ~skin_like & ~background] = cv2.GC_PR_FGD
    mask[face & ~lower & ~skin_like & darker & ~background] = cv2.GC_PR_FGD
    mask[lower] = cv2.GC_BGD
    mask[border & ~head] = cv2.GC_BGD
    if not (mask == cv2.GC_PR_FGD).any():
        return None, np.zeros((h, w), bool)
    bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(small, mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    hair = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)) & head & ~lower
    hair &= ~skin_like & ~scalp_like & ~background
    hair &= ~nearer_skin(lab, hair & ~face, skin_delta, face, lower, brow_y)
    hair = cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    full = np.zeros((h, w), bool)
    full[by0:by1, bx0:bx1] = cv2.resize(hair, (cw, ch), interpolation=cv2.INTER_NEAREST) > 0
    if hair.sum() < MIN_HAIR_AREA * face.sum() * shown_fraction(face.shape, oval):
        return None, full
    if (cover := crown_cover(hair.astype(bool), oval)) is not None and cover < CROWN_BARE:
        return None, full
    rgb = np.median(image_rgb[full], axis=0) / 255.0
    return (float(rgb[0]), float(rgb[1]), float(rgb[2])), full


def head_box(shape: tuple[int, int], landmarks_px: np.ndarray) -> tuple[int, int, int, int]:
    """The part of a photo (H, W) the hair is looked for in, (x0, y0, x1, y1) px: the box
    of :func:`head_regions`' region (the ellipse round the head, the band beside the neck)
    and ``HEAD_MARGIN`` face heights of background round it, within the photo. Cropped to
    it before scaling to ``WORK_SIDE``, a head is measured at the same resolution however
    much of the photo it fills. A portrait whose head box is nearly the photo
    (``WHOLE_PHOTO``) is measured whole, as the resolution would hardly change."""
    (x0, y0), (x1, y1) = landmarks_px[FACE_OVAL].min(0), landmarks_px[FACE_OVAL].max(0)
    fw, fh, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    half = max(HANG_HALF_WIDTH, HEAD_HALF_WIDTH) * fw + HEAD_MARGIN * fh
    top, bottom = y0 - (HEAD_ABOVE + HEAD_MARGIN) * fh, y1 + (HANG_BELOW + HEAD_MARGIN) * fh
    h, w = shape
    x_0, y_0 = max(0, floor(cx - half)), max(0, floor(top))
    x_1, y_1 = min(w, ceil(cx + half)), min(h, ceil(bottom))
    if x_1 - x_0 < 8 or y_1 - y_0 < 8:  # the face is off the photo: all of it
        return 0, 0, w, h
    if max(x_1 - x_0, y_1 - y_0) >= WHOLE_PHOTO * max(h, w):  # little to gain: all of it
        return 0, 0, w, h
    return x_0, y_0, x_1, y_1


def head_regions(
    shape: tuple[int, int], oval: np.ndarray, brow_y: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Masks (H, W) bool from the face oval's polygon (K, 2) px and the brows' top edge
    (px): the oval, its part from the brows down, where hair may be (the ellipse round
    the head and the band beside the neck, less the neck; see hair_colour) and that
    region's part above the mouth, where hair is seeded."""
    face = cv2.fillPoly(np.zeros(shape, np.uint8), [oval], 1).astype(bool)
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    fw, fh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2.0, y0 - HEAD_ABOVE * fh + HEAD_HEIGHT * fh / 2.0
    axes = (round(HEAD_HALF_WIDTH * fw), round(HEAD_HEIGHT * fh / 2.0))
    head = cv2.ellipse(np.zeros(shape, np.uint8), (round(cx), round(cy)), axes, 0, 0, 360, 1, -1)
    ys, xs = np.arange(shape[0])[:, None], np.arange(shape[1])[None]
    beside = (ys > y0 + 0.5 * fh) & (ys < y1 + HANG_BELOW * fh)
    beside = beside & (np.abs(xs - cx) < HANG_HALF_WIDTH * fw)
    neck = (ys > y1 - 0.1 * fh) & (np.abs(xs - cx) < NECK_HALF_WIDTH * fw)
    region = (head.astype(bool) | beside) & ~neck
    return face, face & (ys > brow_y - 0.02 * fh), region, region & (ys < y0 + 0.75 * fh)


def shown_fraction(shape: tuple[int, int], oval: np.ndarray) -> float:
    """The fraction of the head over the face (the hair ellipse of :func:`head_regions`
    above the oval's top) inside an image of this shape (H, W): a photo that cuts the
    top of the head off shows less hair, which is no sign of a bald head."""
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    fw, fh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2.0, y0 - HEAD_ABOVE * fh + HEAD_HEIGHT * fh / 2.0
    a, b = HEAD_HALF_WIDTH * fw, HEAD_HEIGHT * fh / 2.0
    u, v = np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 41))  # the ellipse's box
    xs, ys = cx + a * u, cy + b * v
    inside = (u**2 + v**2 <= 1.0) & (ys < y0)
    shown = inside & (xs >= 0) & (xs < shape[1]) & (ys >= 0) & (ys < shape[0])
    return float(shown.sum() / max(inside.sum(), 1))


def crown_cover(hair: np.ndarray, oval: np.ndarray) -> float | None:
    """The share of the pixels over the forehead (``CROWN_SPAN``) that the hair mask (H, W)
    bool covers, for the face oval's polygon (K, 2) px; None when the photo shows under
    a quarter of that region (its top cut off: no sign either way)."""
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    above, half_width = CROWN_SPAN
    top, cx, hw = y0 - above * (y1 - y0), (x0 + x1) / 2, half_width * (x1 - x0)
    left, right = cx - hw, cx + hw
    whole = max((y0 - top) * (right - left), 1.0)
    rows = slice(max(0, round(top)), max(0, round(y0)))
    cols = slice(max(0, round(left)), max(0, round(right)))
    region = hair[rows, cols]
    if region.size < 0.25 * whole:
        return None
    return float(region.mean())


def background_like(lab: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels of a Lab image (H, W, 3) float32 within ``BACKGROUND_DELTA_E``
    of one of the ``BORDER_COLOURS`` k-means colours of the ``sample`` (H, W) bool pixels
    (the photo's border away from the head); none when the sample is too small."""
    samples = lab[sample]  # (N, 3)
    if len(samples) < 4 * BORDER_COLOURS:
        return np.zeros(sample.shape, bool)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER, 10, 0.0)
    _, _, centres = cv2.kmeans(
        samples, BORDER_COLOURS, None, criteria, KMEANS_ATTEMPTS, cv2.KMEANS_PP_CENTERS
    )
    nearest = np.linalg.norm(lab[:, :, None] - centres[None, None], axis=3).min(2)  # (H, W)
    return nearest < BACKGROUND_DELTA_E


def nearer_skin(
    lab: np.ndarray,
    hair: np.ndarray,
    skin_delta: np.ndarray,
    face: np.ndarray,
    lower: np.ndarray,
    brow_y: float,
) -> np.ndarray:
    """(H, W) bool: forehead pixels nearer the skin than the hair's colour
    (``HAIR_OVER_SKIN``): shading on a forehead is not a fringe. The forehead: over the
    oval's width from ``FOREHEAD_ABOVE`` face heights over its top down to the brows. Lab
    image (H, W, 3); hair (H, W) the pixels that give the hair's median colour;
    skin_delta (H, W) the distance to the lower face's skin; the forehead's own skin (a
    band over the brows) counts too when it is skin-like (no fringe there)."""
    if hair.sum() < 10:
        return np.zeros(hair.shape, bool)
    d_hair = np.linalg.norm(lab - np.median(lab[hair], axis=0), axis=2)
    rows, cols = np.nonzero(face)
    fh = np.ptp(rows)
    ys, xs = np.arange(face.shape[0])[:, None], np.arange(face.shape[1])[None]
    band = face & (ys > brow_y - 0.15 * fh) & (ys < brow_y - 0.02 * fh)
    d_skin = skin_delta
    if band.sum() > 5:
        forehead = np.median(lab[band], axis=0)
        if np.linalg.norm(forehead - np.median(lab[lower], axis=0)) < 2 * SKIN_DELTA_E:
            d_skin = np.minimum(d_skin, np.linalg.norm(lab - forehead, axis=2))
    window = (ys > rows.min() - FOREHEAD_ABOVE * fh) & (ys < brow_y)
    window = window & (xs >= cols.min()) & (xs <= cols.max())
    return window & (d_hair >= HAIR_OVER_SKIN * d_skin)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def choose_style(
    hair_mask: np.ndarray,
    render_silhouettes: dict[str, np.ndarray],
    traits: HairTraits | None = None,
) -> str:
    """The style whose traits (``STYLE_TRAITS``) agree best with the photo's ``traits``
    (when given), then whose rendered hair silhouette (H, W) bool best overlaps (IoU) the
    photo's hair mask (H, W); ties go to the smaller silhouette (less hair)."""
    if not render_silhouettes:
        raise ValueError("no silhouettes to choose from")

    def key(name: str) -> tuple[int, float, int]:
        agree = traits.agreement(STYLE_TRAITS[name]) if traits is not None else 0
        sil = render_silhouettes[name]
        return agree, mask_iou(hair_mask, sil), -int(sil.sum())

    return max(render_silhouettes, key=key)
