"""A portrait's exposure, read from the whites of the eyes, and the gain that restores it.

A face in shadow (a webcam photo against a lit wall, a lamp behind the person) comes out
dark, and an avatar textured from it is as dark: a light-skinned person gets the skin of
a much darker one. The skin's own lightness cannot tell the two apart; the sclera can:
its albedo is much the same in every person, so a dark sclera means a dark exposure, not
dark skin. On the London Set (studio photos, every skin tone) the sclera's 75th
percentile of lightness is 48-76 (CIELAB L); on the webcam photos of lisa_cc0, whose face
is in shadow, 17-32, while the same person's well-lit photos (zoom_cc0) read 75-80.

So a photo whose sclera reads below ``SCLERA_FLOOR_L`` (under every London photo) is
brightened in linear light. The eyes bound the gain: at least what lifts the sclera to the
floor, at most what lifts it to ``SCLERA_TYPICAL_L`` (the London Set's median); within
those bounds the scene's whites decide (auto-levels: the photo's brightest 1 % back to
white, which restores an evenly dark photo, while a backlit face against a lit wall keeps
the floor's gain). Never more than ``MAX_GAIN``, and never so far that the face's median
skin passes ``FACE_MAX_L`` (the lightest well-lit face seen, so dark lenses read as a dark
sclera cannot blow a face out). Every other photo is left exactly as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatars.colour import to_lab
from avatars.eye_colour import eye_pixels
from avatars.hair.photo import FACE_OVAL

SCLERA_PERCENTILE = 75.0  # of the sclera's lightness: lashes and the lids' shadow below
MIN_SCLERA_PIXELS = 20  # fewer (closed eyes, a tiny face): no reading, no gain
SCLERA_FLOOR_L = 45.0  # below the London Set's lowest (48.0)
SCLERA_TYPICAL_L = 64.8  # the London Set's median (44 photos)
WHITES_PERCENTILE = 99.0  # the scene's whites: its brightest 1 % (mean of the channels)
MAX_GAIN = 8.0  # three stops: darker photos hold too little to restore
FACE_MAX_L = 72.0  # the lightest well-lit face seen (the NASA portrait's 72.4)
SHOULDER = 0.8  # linear values above roll off towards 1 instead of clipping
WORK_SIDE = 1024  # px: the face's colour and the scene's whites are read at most this big


@dataclass(frozen=True)
class Exposure:
    """What the eyes said and the gain taken (1.0: the photo is used as it is)."""

    sclera_l: float | None  # the sclera's lightness (CIELAB L), None when too little seen
    face_l: float  # the face's median lightness
    gain: float  # in linear light


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """Linear light of sRGB values in [0, 1]."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """sRGB values in [0, 1] of linear light in [0, 1]."""
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.maximum(v, 0) ** (1 / 2.4) - 0.055)


def luminance_of_l(lightness: float) -> float:
    """Relative luminance Y in [0, 1] of a CIELAB lightness."""
    f = (lightness + 16.0) / 116.0
    return f**3 if f > 6 / 29 else 3 * (6 / 29) ** 2 * (f - 4 / 29)


def face_lab(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(3,) the median CIELAB of a photo's (H, W, 3) uint8 RGB face oval, from its pixel
    landmarks (478, 2); zeros when the oval holds no pixel."""
    oval = cv2.fillPoly(np.zeros(image.shape[:2], np.uint8),
                        [np.round(landmarks[FACE_OVAL]).astype(np.int32)], 1)
    face = image[oval > 0]  # (N, 3)
    return np.median(to_lab(face.astype(np.float32)), 0) if len(face) else np.zeros(3)


def read_exposure(image: np.ndarray, landmarks: np.ndarray) -> Exposure:
    """The exposure of a photo (H, W, 3) uint8 RGB with its pixel landmarks (478, 2). The
    sclera is read at full size; the face and the whites from the photo scaled down to
    ``WORK_SIDE`` (a 37 MP upload: 0.15 s instead of 2 s)."""
    h, w = image.shape[:2]
    k = min(1.0, WORK_SIDE / max(h, w))
    small = image if k == 1.0 else cv2.resize(
        image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
    face_l = float(face_lab(small, landmarks * k)[0])
    _, sclera, _ = eye_pixels(image, landmarks)
    if len(sclera) < MIN_SCLERA_PIXELS:
        return Exposure(None, face_l, 1.0)
    sclera_l = float(np.percentile(to_lab(sclera.astype(np.float32))[:, 0], SCLERA_PERCENTILE))
    if sclera_l >= SCLERA_FLOOR_L:
        return Exposure(sclera_l, face_l, 1.0)
    sclera_y = max(luminance_of_l(sclera_l), 1e-4)
    least = luminance_of_l(SCLERA_FLOOR_L) / sclera_y
    most = luminance_of_l(SCLERA_TYPICAL_L) / sclera_y
    gain = min(max(whites_gain(small), least), most)
    face_cap = luminance_of_l(FACE_MAX_L) / max(luminance_of_l(face_l), 1e-4)
    return Exposure(sclera_l, face_l, float(max(1.0, min(gain, MAX_GAIN, face_cap))))


def whites_gain(image: np.ndarray) -> float:
    """The gain (linear light) that takes the photo's brightest 1 % to white."""
    level = image.mean(2)  # (H, W)
    top = float(level[level >= np.percentile(level, WHITES_PERCENTILE)].mean()) / 255.0
    return 1.0 / max(float(srgb_to_linear(np.array(top))), 1e-4)


def apply_gain(image: np.ndarray, gain: float) -> np.ndarray:
    """The photo (H, W, 3) uint8 with its light multiplied by ``gain`` (linear light, the
    same for the three channels, so hues stay); highlights roll off instead of clipping.
    A gain of 1 returns the photo itself."""
    if gain == 1.0:
        return image
    lin = srgb_to_linear(np.arange(256) / 255.0) * gain  # (256,)
    over = lin > SHOULDER
    lin[over] = SHOULDER + (1 - SHOULDER) * np.tanh((lin[over] - SHOULDER) / (1 - SHOULDER))
    lut = np.round(linear_to_srgb(lin) * 255).clip(0, 255).astype(np.uint8)
    return cv2.LUT(image, lut)


def exposed(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, Exposure]:
    """The photo as an avatar's texture and colours should be taken from it (brightened
    when its eyes say it is under-exposed, else itself), and the reading."""
    exposure = read_exposure(image, landmarks)
    return apply_gain(image, exposure.gain), exposure
