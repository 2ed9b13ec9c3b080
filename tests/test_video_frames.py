"""RGB images into yuv420p for the encoders (engines/files/video_frames.py)."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from engines.files.assets import asset_root
from engines.files.video_frames import yuv420p_frame


def photo(h: int, w: int) -> np.ndarray:
    image = cv2.imread(str(asset_root() / "faces" / "london_set" / "london_003_smiling.jpg"))
    return np.ascontiguousarray(cv2.resize(image, (w, h))[..., ::-1])


@pytest.mark.parametrize("size", [(512, 512), (480, 640), (256, 384)])
def test_the_same_frame_as_pyav_converts(size) -> None:
    """The frame every encoder gets matches PyAV's own conversion (BT.601, limited range)
    on a photo: luma within rounding, chroma within a few levels (the 2x2 blocks are
    averaged a little differently)."""
    rgb = photo(*size)
    ours = yuv420p_frame(rgb)
    theirs = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    assert ours.format.name == "yuv420p" and (ours.height, ours.width) == size
    a, b = ours.to_ndarray().astype(int), theirs.to_ndarray().astype(int)
    assert a.shape == b.shape
    h = size[0]
    assert np.abs(a[:h] - b[:h]).max() <= 1 and np.abs(a[:h] - b[:h]).mean() < 0.05
    chroma = np.abs(a[h:] - b[h:])
    assert np.percentile(chroma, 99.9) <= 2 and chroma.max() <= 6 and chroma.mean() < 0.3
    back = ours.to_ndarray(format="rgb24").astype(int)  # and it still is the photo
    assert np.abs(back - rgb).mean() < 3


def test_black_and_white_keep_their_levels() -> None:
    """Limited range, as the decoders expect: black at Y 16, white at 235."""
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, 8:] = 255
    y = yuv420p_frame(rgb).to_ndarray()[:16]
    assert (y[:, :8] == 16).all() and (y[:, 8:] == 235).all()


def test_odd_sizes_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="even"):
        yuv420p_frame(np.zeros((37, 52, 3), np.uint8))
