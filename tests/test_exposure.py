"""A portrait's exposure read from the whites of the eyes (avatars.exposure): well-exposed
photos of every skin tone are left exactly as they are; a photo darkened on purpose is
brightened, never past what it was; a face in shadow against a lit wall is lifted to the
floor; dark lenses cannot blow a face out; an avatar from a dim photo gets the lighter
skin."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import avatars.builder as builder_module
from avatars.builder import AvatarBuilder, AvatarConfig, decode_photo
from avatars.colour import to_lab
from avatars.exposure import (
    FACE_MAX_L,
    SCLERA_FLOOR_L,
    SCLERA_TYPICAL_L,
    WORK_SIDE,
    apply_gain,
    exposed,
    face_lab,
    read_exposure,
    srgb_to_linear,
    whites_gain,
)
from avatars.eye_colour import EYE_OPENINGS
from avatars.hair.photo import FACE_OVAL
from engines.files.assets import asset_root

# light to the darkest skin of the London Set (face L about 65, 24, 21 and 33)
PEOPLE = ("001", "061", "096", "126")
DARKER = 0.125  # three stops down, in linear light


@pytest.fixture(scope="module")
def builder(ict):
    b = AvatarBuilder(ict, AvatarConfig(texture_size=256, hair="none"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def photos(builder) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """London neutral photos and their pixel landmarks (478, 2)."""
    out = {}
    for person in PEOPLE:
        path = asset_root() / "faces" / "london_set" / f"london_{person}_neutral.jpg"
        image = decode_photo(path.read_bytes())
        out[person] = image, builder.landmarks(image)[0]
    return out


def face_l(image: np.ndarray, landmarks: np.ndarray) -> float:
    return float(face_lab(image, landmarks)[0])


def test_well_exposed_photos_of_every_skin_tone_are_left_as_they_are(photos) -> None:
    for person, (image, lms) in photos.items():
        out, reading = exposed(image, lms)
        print(person, reading)
        assert reading.sclera_l is not None and reading.sclera_l >= SCLERA_FLOOR_L
        assert reading.gain == 1.0 and out is image


def test_a_darkened_photo_is_brightened_but_never_past_itself(photos) -> None:
    for person, (image, lms) in photos.items():
        dark = apply_gain(image, DARKER)
        out, reading = exposed(dark, lms)
        before, darkened, after = face_l(image, lms), face_l(dark, lms), face_l(out, lms)
        print(f"{person}: face L {before:.1f} -> darkened {darkened:.1f} -> {after:.1f}, "
              f"{reading}")
        assert reading.gain > 1.5
        assert before - 12.0 < after < before + 1.5  # restored, never past itself
        # the sclera now reads between the floor and the typical reading
        assert SCLERA_FLOOR_L - 1 < read_exposure(out, lms).sclera_l < SCLERA_TYPICAL_L + 1


def test_a_face_in_shadow_against_a_lit_wall_is_lifted_to_the_floor(photos) -> None:
    """Backlit: the face dark, the background as bright as before. The whites ask for no
    gain; the eyes still say the face is dark, and it is lifted until they read at the
    floor."""
    image, lms = photos["001"]
    face = cv2.fillPoly(np.zeros(image.shape[:2], np.uint8),
                        [np.round(lms[FACE_OVAL]).astype(np.int32)], 1)
    face = cv2.dilate(face, np.ones((25, 25), np.uint8)) > 0
    backlit = image.copy()
    backlit[face] = apply_gain(image, DARKER)[face]
    assert whites_gain(backlit) < 1.2
    out, reading = exposed(backlit, lms)
    print(reading)
    assert reading.gain > 2.0
    assert read_exposure(out, lms).sclera_l == pytest.approx(SCLERA_FLOOR_L, abs=2.0)
    assert face_l(backlit, lms) + 8.0 < face_l(out, lms) < face_l(image, lms)


def test_gain_is_in_linear_light_keeps_hues_and_rolls_off(photos) -> None:
    image = photos["001"][0]
    assert apply_gain(image, 1.0) is image
    ramp = np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, 2)
    up = apply_gain(ramp, 2.0)[0, :, 0].astype(int)
    assert (np.diff(up) >= 0).all() and up[255] == 255 and up[0] == 0
    lin = srgb_to_linear(np.array([100, up[100]]) / 255.0)
    assert lin[1] / lin[0] == pytest.approx(2.0, rel=0.03)  # light doubled, not the values
    skin = np.array([[[120, 80, 60]]], np.uint8)
    ratio = srgb_to_linear(apply_gain(skin, 3.0)[0, 0] / 255) / srgb_to_linear(skin[0, 0] / 255)
    assert ratio == pytest.approx(np.full(3, 3.0), rel=0.06)  # the same for every channel


def test_no_sclera_seen_means_no_gain(photos) -> None:
    image, lms = photos["001"]
    shut = lms.copy()
    for opening in EYE_OPENINGS:
        shut[opening] = shut[opening].mean(0)  # each eye a point: nothing between the lids
    dark = apply_gain(image, DARKER)
    out, reading = exposed(dark, shut)
    assert reading.sclera_l is None and reading.gain == 1.0 and out is dark


def test_dark_lenses_cannot_blow_a_face_out(photos) -> None:
    image, lms = photos["001"]
    glasses = image.copy()
    for opening in EYE_OPENINGS:
        ring = np.round(lms[opening]).astype(np.int32)
        cv2.fillPoly(glasses, [cv2.convexHull(ring)], (20, 20, 22))
        cv2.polylines(glasses, [ring], True, (20, 20, 22), 9)
    out, reading = exposed(glasses, lms)
    print(reading, face_l(out, lms))
    assert reading.sclera_l is not None and reading.sclera_l < 15  # read as very dark...
    assert reading.gain < 1.5  # ...but the face is bright already
    assert face_l(out, lms) <= FACE_MAX_L + 1.0


def test_an_avatar_from_a_dim_photo_gets_the_lighter_skin(builder, photos, monkeypatch
                                                          ) -> None:
    image, _ = photos["001"]
    dark = apply_gain(image, DARKER)

    def skin_l() -> float:  # the texture's median: mostly the skin and its fill
        avatar = builder.build(dark, "dim", "0" * 64)
        return float(np.median(to_lab(avatar.texture.reshape(-1, 3).astype(np.float32))[:, 0]))

    restored = skin_l()
    monkeypatch.setattr(builder_module, "exposed", lambda img, lms: (img, None))
    as_taken = skin_l()
    print(f"texture L: as taken {as_taken:.1f}, restored {restored:.1f}")
    assert restored > as_taken + 8.0


def test_a_large_photo_reads_as_the_same_photo_small(photos) -> None:
    """The face and the whites are read from the photo scaled down to WORK_SIDE: a photo
    three times as large (past it) gives the same gain, to within the sclera's pixels."""
    image, lms = photos["001"]
    dark = apply_gain(image, DARKER)
    big = cv2.resize(dark, (dark.shape[1] * 3, dark.shape[0] * 3),
                     interpolation=cv2.INTER_CUBIC)
    assert max(big.shape[:2]) > WORK_SIDE
    small, large = read_exposure(dark, lms), read_exposure(big, lms * 3)
    print(small, large)
    assert large.face_l == pytest.approx(small.face_l, abs=1.0)
    assert large.gain == pytest.approx(small.gain, rel=0.1) and large.gain > 1.5
