"""Video frames in, RGB arrays out: PyAV / aiortc frames and numpy arrays of any layout."""

from __future__ import annotations

import av
import cv2
import numpy as np

MAX_PIXELS = 8192 * 8192  # refuse anything larger than 64 Mpx


def to_rgb(frame: av.VideoFrame | np.ndarray, fmt: str = "rgb") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PyAV/aiortc ``VideoFrame`` (any pixel format: YUV, RGB,
    BGR, ...) or an array laid out as ``fmt``: "rgb", "bgr", "rgba", "bgra" or "gray".

    Raises ``ValueError`` for empty, oversized or non-uint8 input.
    """
    if isinstance(frame, av.VideoFrame):
        if frame.width * frame.height > MAX_PIXELS or frame.width < 1 or frame.height < 1:
            raise ValueError(f"frame size {frame.width}x{frame.height} is out of range")
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))  # rows may be padded
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8; got {arr.dtype}")
    if arr.ndim < 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"frame shape {arr.shape} is not an image")
    if arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise ValueError(f"frame {arr.shape[1]}x{arr.shape[0]} is larger than {MAX_PIXELS} px")
    conversions = {
        ("rgb", 3): None,
        ("bgr", 3): cv2.COLOR_BGR2RGB,
        ("rgba", 4): cv2.COLOR_RGBA2RGB,
        ("bgra", 4): cv2.COLOR_BGRA2RGB,
        ("gray", 1): cv2.COLOR_GRAY2RGB,
    }
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    key = (fmt, channels)
    if key not in conversions:
        raise ValueError(f"cannot read a {arr.shape} array as {fmt!r}")
    code = conversions[key]
    out = arr if code is None else cv2.cvtColor(arr, code)
    return np.ascontiguousarray(out)


def fit_for_tracker(rgb: np.ndarray, max_side: int = 640, min_side: int = 192) -> np.ndarray:
    """Resize keeping the aspect ratio so the longer side lies in [min_side, max_side]."""
    h, w = rgb.shape[:2]
    long_side = max(h, w)
    if min_side <= long_side <= max_side:
        return rgb
    scale = (max_side if long_side > max_side else min_side) / long_side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=interp))
