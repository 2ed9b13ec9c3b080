"""The iris colour measured from a portrait: synthetic eyes with known irises, and two
London Set portraits (blue-grey and dark brown eyes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from avatars.eye_colour import EYE_OPENINGS, IRISES, iris_colour

SKIN = (200, 160, 140)
SCLERA = (235, 228, 222)


def lab(rgb: tuple[float, float, float]) -> np.ndarray:
    return cv2.cvtColor(np.array([[rgb]], np.float32), cv2.COLOR_RGB2LAB)[0, 0]


def synthetic_eyes(iris_rgb: tuple[int, int, int], open_px: float = 14.0,
                   catchlight: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A (120, 240) face patch with two eyes, and its 478 pixel landmarks."""
    image = np.zeros((120, 240, 3), np.uint8)
    image[:] = SKIN
    landmarks = np.zeros((478, 2))
    for (cx, cy), opening, iris in zip(((70, 60), (170, 60)), EYE_OPENINGS, IRISES,
                                       strict=True):
        angles = np.linspace(np.pi, -np.pi, len(opening), endpoint=False)
        ring = np.c_[cx + 32 * np.cos(angles), cy + open_px * np.sin(angles)]
        landmarks[opening] = ring
        lid = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(lid, [np.round(ring).astype(np.int32)], 1)
        eye = image.copy()
        cv2.fillPoly(eye, [np.round(ring).astype(np.int32)], SCLERA)
        cv2.circle(eye, (cx, cy), 12, iris_rgb, -1)
        cv2.circle(eye, (cx, cy), 4, (10, 10, 10), -1)  # the pupil
        if catchlight:
            cv2.circle(eye, (cx + 5, cy - 4), 2, (255, 255, 255), -1)
        image[lid > 0] = eye[lid > 0]
        landmarks[iris[0]] = (cx, cy)
        landmarks[list(iris[1:])] = [(cx + 12, cy), (cx, cy - 12), (cx - 12, cy), (cx, cy + 12)]
    return image, landmarks


def test_a_blue_iris_reads_blue_and_a_brown_one_brown() -> None:
    blue = iris_colour(*synthetic_eyes((90, 130, 170)))
    brown = iris_colour(*synthetic_eyes((90, 55, 30)))
    assert blue is not None and brown is not None
    print(f"blue {np.round(blue, 2)}, brown {np.round(brown, 2)}")
    assert lab(blue)[2] < -5 < 5 < lab(brown)[2]  # b*: blue against yellow-brown
    assert lab(blue)[0] > lab(brown)[0] + 10  # and lighter
    assert blue[2] > blue[0] and brown[0] > brown[2]


def test_catchlights_do_not_change_the_colour() -> None:
    plain = iris_colour(*synthetic_eyes((90, 130, 170)))
    lit = iris_colour(*synthetic_eyes((90, 130, 170), catchlight=True))
    assert np.linalg.norm(lab(plain) - lab(lit)) < 3.0


def test_closed_eyes_give_no_colour() -> None:
    assert iris_colour(*synthetic_eyes((90, 130, 170), open_px=0.5)) is None


@pytest.fixture(scope="module")
def builder(ict):
    from avatars.builder import AvatarBuilder

    b = AvatarBuilder(ict)
    yield b
    b.close()


@pytest.mark.parametrize(("light", "dark"), [("london_018_neutral", "london_025_neutral"),
                                             ("london_107_smiling", "london_061_neutral")])
def test_light_eyes_read_lighter_and_cooler_than_dark_brown_ones(builder, light, dark) -> None:
    from avatars.builder import decode_photo
    from engines.files.assets import asset_root

    colours = {}
    for name in (light, dark):
        photo = decode_photo((asset_root() / "faces" / "london_set" / f"{name}.jpg").read_bytes())
        colours[name] = iris_colour(photo, builder.landmarks(photo)[0])
        assert colours[name] is not None, name
    a, b = lab(colours[light]), lab(colours[dark])
    print(f"{light} {np.round(a, 1)}, {dark} {np.round(b, 1)}")
    assert a[0] > b[0] + 15  # lighter
    assert a[2] < b[2] - 5  # bluer (less yellow)
