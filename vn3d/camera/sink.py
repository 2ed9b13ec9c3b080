"""The virtual camera: pyvirtualcam's ``Camera`` opened with a clear error when the system
has none, and the square avatar letterboxed to the camera's frame."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}
GREEN = (0, 177, 64)  # chroma key green


class CameraLike(Protocol):
    """What the camera command uses of ``pyvirtualcam.Camera``."""

    width: int
    height: int
    fps: float
    device: str

    def send(self, frame: np.ndarray) -> None: ...

    def sleep_until_next_frame(self) -> None: ...

    def close(self) -> None: ...


class VirtualCameraUnavailableError(RuntimeError):
    """No virtual camera backend or device on this system; the message says how to get one."""


def install_hint(platform: str = sys.platform) -> str:
    if platform.startswith("linux"):
        return ("load the v4l2loopback kernel module (Debian/Ubuntu: apt-get install "
                "v4l2loopback-dkms), then: sudo modprobe v4l2loopback exclusive_caps=1 "
                "card_label='vn3d avatar'; pick the device with --device /dev/videoN")
    return ("install OBS Studio 26.1 or newer (its Virtual Camera is the backend); on macOS "
            "start and stop OBS's virtual camera once before the first use")


def open_camera(
    width: int, height: int, fps: float, device: str | None = None, backend: str | None = None,
    factory: Callable[..., Any] | None = None,
) -> CameraLike:  # fmt: skip
    """The system's virtual camera, taking RGB frames of ``width`` x ``height``.
    ``factory``: pyvirtualcam.Camera's signature (tests pass a double)."""
    if factory is None:
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise VirtualCameraUnavailableError(
                f"pyvirtualcam is not installed ({exc}); pip install pyvirtualcam") from exc
        factory, fmt = pyvirtualcam.Camera, pyvirtualcam.PixelFormat.RGB
        have = sorted(pyvirtualcam.camera.BACKENDS)
        if backend is not None and backend not in have:
            raise VirtualCameraUnavailableError(
                f"no {backend} virtual camera backend on this system (it has: "
                f"{', '.join(have) or 'none'})\n  fix: {install_hint()}")
        if sys.platform.startswith("linux") and backend in (None, "v4l2loopback") and (
            device is None and not loopback_devices()
        ):  # pyvirtualcam would find none either (and its half-made Camera complains)
            raise VirtualCameraUnavailableError(
                f"no v4l2loopback device (/dev/video*)\n  fix: {install_hint()}")
    else:
        fmt = "RGB"
    try:
        return factory(width, height, fps, fmt=fmt, device=device, backend=backend)
    except (RuntimeError, ValueError, OSError) as exc:
        raise VirtualCameraUnavailableError(
            f"no virtual camera to write to: {exc}\n  fix: {install_hint()}") from exc


def loopback_devices(root: Path = Path("/sys/class/video4linux")) -> list[str]:
    """/dev/videoN of this Linux system's v4l2loopback devices (by their driver)."""
    found = []
    for dev in sorted(root.glob("video*")):
        driver = dev / "device" / "driver"
        if driver.exists() and "v4l2loopback" in driver.resolve().name:
            found.append(f"/dev/{dev.name}")
    return found


def letterbox(image: np.ndarray, width: int, height: int,
              background: tuple[int, int, int] = GREEN) -> np.ndarray:  # fmt: skip
    """The square render (S, S, 3) scaled to the frame's height, centred on ``background``
    (width x height x 3 uint8, RGB)."""
    side = min(width, height)
    scaled = cv2.resize(image[..., :3], (side, side),
                        interpolation=cv2.INTER_AREA if image.shape[0] > side else cv2.INTER_LINEAR)
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = background
    x, y = (width - side) // 2, (height - side) // 2
    frame[y : y + side, x : x + side] = scaled
    return frame


def parse_colour(text: str) -> tuple[int, int, int]:
    """``green`` (chroma key), ``black``, ``white`` or ``#RRGGBB``."""
    named = {"green": GREEN, "black": (0, 0, 0), "white": (255, 255, 255)}
    if text.lower() in named:
        return named[text.lower()]
    digits = text.removeprefix("#")
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(f"background must be green, black, white or #RRGGBB, not {text!r}")
    return tuple(int(digits[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
