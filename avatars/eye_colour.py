"""The iris colour of a portrait, from MediaPipe's iris landmarks.

Each eye's iris is the circle through its four rim landmarks around the centre one. The
pixels taken are inside that circle, outside the pupil, and inside the eye opening (the
eyelids cover the iris' top and bottom); of those, the darker half (lashes, the shadow of
the upper lid) and the brightest tenth (catchlights) are dropped, and the median of the
rest, over both eyes, in CIELAB is the photo's iris.

A photo's iris is darker and greyer than the iris itself (shadowed by the lids, blurred
with the pupil and lashes, JPEG's chroma subsampling): lightness is raised and chroma
amplified, after half the colour cast of the photo's sclera (white balance; a sclera is
never quite white) is taken out; a dark iris gets a brown hue (below). On the London Set
this keeps dark brown eyes dark brown and makes blue and grey eyes light and cool instead
of the fixed brown of before.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatars.colour import to_lab

# MediaPipe face mesh (478 points): iris centre, then four points on its rim, per eye
IRISES = ((468, 469, 470, 471, 472), (473, 474, 475, 476, 477))
EYE_OPENINGS = (
    [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7],
    [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249],
)
PUPIL_FRACTION = 0.4  # of the iris radius: darker than the iris, left out
RIM_FRACTION = 0.9  # the limbal ring and the sclera beyond it are left out
KEEP_PERCENTILES = (50.0, 90.0)  # of lightness: lashes/shadow below, catchlights above
MIN_PIXELS = 12  # fewer seen iris pixels (a tiny face): no measurement
MIN_SEEN = 0.15  # of the irises' ring area: less is seen between the lids (closed eyes)
SCLERA_FROM = 1.15  # of the iris radius: the eye opening beyond is sclera
CAST_SHARE, MAX_CAST = 0.5, 8.0  # of the sclera's a*b* taken out, and at most that much
LIGHTNESS_GAIN, CHROMA_GAIN = 1.25, 2.0
LIGHTNESS_RANGE = (12.0, 65.0)
# a dark iris is brown: the hue its few, noisy chroma values cannot give is added, in
# full at lightness DARK[0] and below, fading out at DARK[1] (grey, blue, green and
# hazel eyes are lighter and keep their own hue)
BROWN_AB = np.array([6.0, 12.0])
DARK = (28.0, 45.0)


def eye_pixels(image: np.ndarray, landmarks: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, float]:
    """RGB pixels (N, 3) and (M, 3) uint8 of both irises and of the sclera that the
    eyelids leave visible, from a photo (H, W, 3) and its pixel landmarks (478, 2); and
    the pixel area the irises' rings would have with the lids wide open."""
    h, w = image.shape[:2]
    irises, scleras, area = [], [], 0.0
    for iris, opening in zip(IRISES, EYE_OPENINGS, strict=True):
        ring = np.round(landmarks[opening]).astype(np.int32)  # (16, 2)
        x0, y0 = np.clip(ring.min(0) - 2, 0, None)
        x1, y1 = np.minimum(ring.max(0) + 3, [w, h])
        centre = landmarks[iris[0]]
        radius = float(np.linalg.norm(landmarks[list(iris[1:])] - centre, axis=1).mean())
        if radius < 1.0 or x1 <= x0 or y1 <= y0:
            continue
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [ring - [x0, y0]], 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = np.hypot(xx - centre[0], yy - centre[1]) / radius  # in iris radii
        crop = image[y0:y1, x0:x1]
        irises.append(crop[(d > PUPIL_FRACTION) & (d < RIM_FRACTION) & (inside > 0)])
        area += np.pi * radius**2 * (RIM_FRACTION**2 - PUPIL_FRACTION**2)
        inner = cv2.erode(inside, np.ones((3, 3), np.uint8))
        scleras.append(crop[(d > SCLERA_FROM) & (inner > 0)])
    empty = np.zeros((0, 3), np.uint8)
    return (np.concatenate(irises) if irises else empty,
            np.concatenate(scleras) if scleras else empty, area)


def iris_colour(image: np.ndarray, landmarks: np.ndarray) -> tuple[float, float, float] | None:
    """The iris' sRGB colour in [0, 1] (see the module docstring), or None when too little
    of either iris is seen to tell."""
    iris, sclera, area = eye_pixels(image, landmarks)
    if len(iris) < max(MIN_PIXELS, MIN_SEEN * area):
        return None
    lab = to_lab(iris)  # (N, 3)
    lo, hi = np.percentile(lab[:, 0], KEEP_PERCENTILES)
    lab = np.median(lab[(lab[:, 0] >= lo) & (lab[:, 0] <= hi)], axis=0)  # (3,)
    cast = np.zeros(2)
    if len(sclera) >= MIN_PIXELS:
        white = to_lab(sclera)
        white = white[white[:, 0] >= np.median(white[:, 0])]  # out of the lids' shadow
        cast = np.clip(np.median(white[:, 1:], axis=0), -MAX_CAST, MAX_CAST)
    lightness = np.clip(lab[0] * LIGHTNESS_GAIN, *LIGHTNESS_RANGE)
    darkness = np.clip((DARK[1] - lightness) / (DARK[1] - DARK[0]), 0.0, 1.0)
    ab = (lab[1:] - CAST_SHARE * cast) * CHROMA_GAIN + darkness * BROWN_AB
    out = np.array([[[lightness, ab[0], ab[1]]]], np.float32)
    rgb = np.clip(cv2.cvtColor(out, cv2.COLOR_LAB2RGB)[0, 0], 0.0, 1.0)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))
