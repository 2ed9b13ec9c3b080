"""A face small in the picture is found (overlapping windows), where the whole photo
shrunk for the detector shows none; a photo with no face still says so."""

from __future__ import annotations

import numpy as np
import pytest

from avatars.builder import AvatarBuilder, AvatarError, decode_photo
from avatars.face_finder import find_face, window_starts
from engines.files.assets import asset_root


@pytest.fixture(scope="module")
def builder(ict):
    b = AvatarBuilder(ict)
    yield b
    b.close()


def in_a_wider_scene(image: np.ndarray, times: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The photo in a canvas ``times`` its size filled with pixels of its own rim, off
    centre; and where it is (x, y)."""
    h, w = image.shape[:2]
    rim = np.concatenate([image[:5].reshape(-1, 3), image[-5:].reshape(-1, 3),
                          image[:, :5].reshape(-1, 3), image[:, -5:].reshape(-1, 3)])
    canvas = rim[np.random.default_rng(0).integers(0, len(rim), (times * h, times * w))]
    x, y = (times * w - w) // 3, (times * h - h) // 2 + h // 3
    canvas[y : y + h, x : x + w] = image
    return canvas, (x, y)


def test_a_face_small_in_the_picture_is_found(builder) -> None:
    image = decode_photo((asset_root() / "faces/zoom_cc0/zoom_60cm.jpg").read_bytes())
    alone, _ = builder.landmarks(image)
    canvas, (x, y) = in_a_wider_scene(image, 5)
    assert builder._tracker.process(canvas, 0.0).landmarks is None  # the whole: none
    found, n_faces = builder.landmarks(canvas)
    assert n_faces == 1
    assert np.abs(found - (x, y) - alone).mean() < 3.0  # px, the face's own points


def test_two_small_faces_count_as_two(builder) -> None:
    """Overlapping windows find one face several times: it counts once; two people far
    apart count twice (the dataset builder refuses a photo of several faces)."""
    image = decode_photo((asset_root() / "faces/zoom_cc0/zoom_60cm.jpg").read_bytes())
    h, w = image.shape[:2]
    canvas, (_, y) = in_a_wider_scene(image, 5)  # one at x = 4w/3
    canvas[y : y + h, 7 * w // 2 : 7 * w // 2 + w] = image  # and another beside it
    assert builder.landmarks(image)[1] == 1  # the photo alone: one face
    assert builder._tracker.process(canvas, 0.0).landmarks is None
    assert builder.landmarks(canvas)[1] == 2


def test_a_photo_without_a_face_is_still_refused(builder) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert find_face(builder._tracker, noise) is None
    with pytest.raises(AvatarError, match="no face"):
        builder.landmarks(noise)


@pytest.mark.parametrize(("length", "side", "starts"), [
    (400, 200, [0, 100, 200]), (450, 200, [0, 100, 200, 250]), (200, 200, [0])])
def test_windows_cover_the_photo_half_a_window_apart(length, side, starts) -> None:
    assert window_starts(length, side) == starts
