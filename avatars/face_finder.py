"""The face in a photo, also when it is small in the picture.

MediaPipe's face detector (the short-range model) looks at the whole photo shrunk to 128
pixels, so a face under about a tenth of the photo's width (a photo taken from farther
away, or a person in a wider scene) is not found at all. When the whole photo shows no
face, it is looked for again in overlapping square windows, half and then a quarter of
the photo's shorter side, each read as a photo of its own; the largest face found wins
and its landmarks are put back in the photo's pixels.
"""

from __future__ import annotations

import numpy as np

from engines.tracking.tracker import FaceTracker

WINDOWS = (2, 4)  # the photo's shorter side over a window's side, tried in this order
MIN_WINDOW = 96  # px: no smaller windows (the detector reads 128 px)


def find_face(tracker: FaceTracker, image: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Pixel landmarks (478, 2) of the largest face in an RGB photo (H, W, 3) and the
    number of faces in it; None when there is none. A face cut by a window's edge is
    taken only where no window holds a whole one."""
    h, w = image.shape[:2]
    result = tracker.process(image, 0.0)
    if result.landmarks is not None:
        return result.landmarks[:, :2] * [w, h], result.n_faces
    for parts in WINDOWS:
        side = min(h, w) // parts
        if side < MIN_WINDOW:
            break
        found = [
            face
            for y in window_starts(h, side)
            for x in window_starts(w, side)
            if (face := window_face(tracker, image, x, y, side)) is not None
        ]
        if found:
            _, _, pixels, _ = max(found, key=lambda f: f[:2])
            return pixels, faces_counted(found)
    return None


def faces_counted(found: list[tuple[bool, float, np.ndarray, int]]) -> int:
    """How many faces the windows' finds (:func:`window_face`) show: the most any one
    window saw, or the number of places faces were found (a face height or more apart;
    overlapping windows find the same face more than once), whichever is more."""
    places: list[np.ndarray] = []
    for _, height, pixels, _ in sorted(found, key=lambda f: -f[1]):
        centre = pixels.mean(0)
        if all(np.linalg.norm(centre - p) > height for p in places):
            places.append(centre)
    return max(len(places), max(f[3] for f in found))


def window_face(
    tracker: FaceTracker, image: np.ndarray, x: int, y: int, side: int
) -> tuple[bool, float, np.ndarray, int] | None:
    """The largest face in the square window of ``side`` px at (x, y): whether all its
    landmarks lie in the window, its height (px), its landmarks (478, 2) in the photo's
    pixels and the number of faces in the window; None when it shows none."""
    result = tracker.process(np.ascontiguousarray(image[y : y + side, x : x + side]), 0.0)
    if result.landmarks is None:
        return None
    unit = result.landmarks[:, :2]  # (478, 2) in the window, 0..1
    pixels = unit * side + (x, y)
    whole = bool(((unit >= 0) & (unit <= 1)).all())
    return whole, float(np.ptp(pixels[:, 1])), pixels, result.n_faces


def window_starts(length: int, side: int) -> list[int]:
    """Where windows of ``side`` px start along ``length`` px: half a window apart, the
    last one flush with the end."""
    starts = list(range(0, max(length - side, 0) + 1, max(side // 2, 1)))
    if starts[-1] != max(length - side, 0):
        starts.append(length - side)
    return starts
