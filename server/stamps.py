"""Frame stamps for benchmarks (``--stamp-frames``): each source frame's index written into
the avatar video as black/white blocks that survive video compression, so a client can
tell which camera frame an output frame came from (end-to-end latency, dropped frames)."""

from __future__ import annotations

import av
import numpy as np

STAMP_BITS, STAMP_BLOCK = 20, 8  # 2 rows of 10 blocks of 8x8 px, bottom-left corner


def frame_index(frame: av.VideoFrame) -> int:
    """The source frame's index at 25 fps from its timestamp."""
    t = float(frame.time) if frame.time is not None else 0.0
    return round(t * 25) if np.isfinite(t) else 0


def stamp_blocks(height: int):
    """(bit, y, x) of each block's top-left corner in an image ``height`` rows high."""
    for bit in range(STAMP_BITS):
        row, col = divmod(bit, STAMP_BITS // 2)
        yield bit, height - (2 - row) * STAMP_BLOCK, col * STAMP_BLOCK


def write_stamp(image: np.ndarray, value: int) -> None:
    """Write ``value`` into ``image`` (H, W, 3) in place."""
    for bit, y, x in stamp_blocks(image.shape[0]):
        image[y : y + STAMP_BLOCK, x : x + STAMP_BLOCK] = 255 if value >> bit & 1 else 0


def read_stamp(image: np.ndarray) -> int:
    """Inverse of :func:`write_stamp` on a decoded frame."""
    value = 0
    for bit, y, x in stamp_blocks(image.shape[0]):
        block = image[y + 2 : y + STAMP_BLOCK - 2, x + 2 : x + STAMP_BLOCK - 2]
        value |= int(block.mean() > 127) << bit
    return value
