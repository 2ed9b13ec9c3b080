"""What a photo's hair mask says about the hair (length class, tied, fringe), measured
against the face and the fitted head, and which strands of a style the head hides.

A style's silhouette over a photo is its strands projected with the photo's camera; the
strands behind the head must be left out (the back of a long style would otherwise cover
the face and make every long style a bad match). Traits come from where the mask's hair
lies relative to the face (MediaPipe landmarks) and to the fitted head's outline: hair
hanging below the nose outside the head (long, or a tail if narrow), a mound on the
crown (a bun), hair down the sides of the face (medium) and over the forehead (fringe).
A tightly tied ponytail seen from the front is not told from short hair: its tail hides
behind the neck.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatars.hair.photo import FACE_OVAL
from avatars.hair.styles import HairTraits

OCCLUSION_MARGIN = 0.5  # cm: a strand point this far behind the skin still shows

# MediaPipe face-mesh landmarks: forehead top, chin, cheeks at the ears, eye corners,
# mouth corners and the nose's base
TOP, CHIN, CHEEKS, EYES, MOUTH, NOSE = 10, 152, [234, 454], [33, 263], [61, 291], 2

# Thresholds on the measures (face heights fh, widths fw), set on the London Set photos
# with ids <= 061 (scripts/bench_hair_choice.py; the rest is held out): in the gap between
# those photos' classes, or where it is empty or overlaps, from the hair's geometry.
HANG_AREA = 0.01  # fh^2 hanging below the nose outside the head (a tail 0.05 fw by 0.3 fh)
CURTAIN_WIDTH = 0.3  # fw per row: hanging hair this wide (two 0.15 fw curtains) is loose
BUN_HEIGHT = 0.145  # fh of hair over the crown's centre ...
BUN_LUMP = 0.01  # ... standing this much higher than over its sides: a bun, not a layer
SIDE_AREA = 0.045  # fh^2 beside the face from the eyes to the mouth: more than sideburns
FRINGE_AREA = 0.03  # fh^2 inside the face oval above the eyes


@dataclass(frozen=True)
class HairMeasures:
    """Where a photo's hair lies, in face heights (fh) and widths (fw)."""

    hang: float  # fh^2: hair below the nose outside the fitted head's outline
    hang_width: float  # fw: its mean width per row
    side: float  # fh^2: hair beside the face (outside the oval) from the eyes to the mouth
    crown: float  # fh: hair over the skull's top, over its centre (|x| < 0.15 fw)
    crown_lump: float  # fh: that, less the hair over the crown's sides (0.25..0.4 fw)
    fringe: float  # fh^2: hair inside the face oval above the eyes

    def traits(self) -> HairTraits:
        """The traits these measures say (thresholds above): a bun or a narrow hanging
        tail is tied long hair, a wide hanging curtain loose long hair, hair down the
        sides of the face medium, anything else short."""
        fringe = self.fringe >= FRINGE_AREA
        if self.crown >= BUN_HEIGHT and self.crown_lump >= BUN_LUMP:
            return HairTraits("long", tied=True, fringe=fringe)
        if self.hang >= HANG_AREA:
            return HairTraits("long", tied=self.hang_width < CURTAIN_WIDTH, fringe=fringe)
        return HairTraits("medium" if self.side >= SIDE_AREA else "short", fringe=fringe)


def measure_hair(
    hair_mask: np.ndarray, landmarks_px: np.ndarray, head_mask: np.ndarray
) -> HairMeasures:
    """The measures of a hair mask (H, W) bool, with the face-mesh landmarks (>= 468, 2)
    and the fitted head's silhouette (H, W) bool in the same pixels."""
    lm = np.asarray(landmarks_px, float)
    h, w = hair_mask.shape
    ys = np.arange(h)[:, None]
    fh = max(lm[CHIN, 1] - lm[TOP, 1], 1.0)
    fw = max(lm[CHEEKS[1], 0] - lm[CHEEKS[0], 0], 1.0)
    eye_y, mouth_y = lm[EYES, 1].mean(), lm[MOUTH, 1].mean()
    face = cv2.fillPoly(np.zeros((h, w), np.uint8), [np.round(lm[FACE_OVAL]).astype(np.int32)], 1)
    face = face.astype(bool)
    outline = cv2.dilate(head_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    hang = hair_mask & ~outline & (ys >= lm[NOSE, 1])  # skin edges stay inside the outline
    rows = int(hang.any(1).sum())
    side = hair_mask & ~face & (ys >= eye_y) & (ys < mouth_y)
    centre, sides = crown_thickness(hair_mask, head_mask, lm[CHEEKS, 0].mean(), fw)
    return HairMeasures(
        hang=float(hang.sum() / fh**2),
        hang_width=float(hang.sum() / max(rows, 1) / fw),
        side=float(side.sum() / fh**2),
        crown=centre / fh,
        crown_lump=(centre - sides) / fh,
        fringe=float((hair_mask & face & (ys < eye_y)).sum() / fh**2),
    )


def crown_thickness(
    hair_mask: np.ndarray, head_mask: np.ndarray, cx: float, fw: float
) -> tuple[float, float]:
    """Mean thickness (px) of the hair (H, W) over the head's (H, W) top edge, column by
    column: over the centre (|x - cx| < 0.15 fw) and over the sides (0.25..0.4 fw)."""
    w = hair_mask.shape[1]
    cols = np.arange(max(0, round(cx - 0.4 * fw)), min(w, round(cx + 0.4 * fw) + 1))
    on_head = head_mask[:, cols].any(0)
    cols = cols[on_head]
    if len(cols) == 0:
        return 0.0, 0.0
    head_top = np.argmax(head_mask[:, cols], axis=0)  # (C,) first head row per column
    has_hair = hair_mask[:, cols].any(0)
    hair_top = np.where(has_hair, np.argmax(hair_mask[:, cols], axis=0), head_top)
    thick = np.maximum(head_top - hair_top, 0).astype(float)  # (C,)
    off = np.abs(cols - cx) / fw
    centre, sides = thick[off < 0.15], thick[(off > 0.25) & (off < 0.4)]
    return (
        float(centre.mean()) if len(centre) else 0.0,
        float(sides.mean()) if len(sides) else 0.0,
    )


def depth_buffer(pixels: np.ndarray, depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 nearest depth of points at pixels (N, 2) with camera depths (N,)
    (a dense mesh's vertices), inf where none falls; holes between points closed by a
    3x3 minimum. ``size`` is (W, H)."""
    w, h = size
    buffer = np.full((h, w), np.inf, np.float32)
    xi, yi = np.floor(pixels[:, 0]).astype(int), np.floor(pixels[:, 1]).astype(int)
    ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    np.minimum.at(buffer, (yi[ok], xi[ok]), depth[ok].astype(np.float32))
    return cv2.erode(buffer, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE)


def in_front(pixels: np.ndarray, depth: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """(N,) bool: which points at pixels (N, 2) with depths (N,) are not hidden by the
    head's depth buffer (H, W) (``OCCLUSION_MARGIN`` of slack); points off the image
    count as shown."""
    h, w = buffer.shape
    xi, yi = np.floor(pixels[:, 0]).astype(int), np.floor(pixels[:, 1]).astype(int)
    ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    front = np.ones(len(pixels), bool)
    front[ok] = depth[ok] < buffer[yi[ok], xi[ok]] + OCCLUSION_MARGIN
    return front
