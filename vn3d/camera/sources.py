"""Where the camera command's frames come from: a webcam (by index, through OpenCV) or a
video file (through PyAV, optionally looped)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message says which and why."""


class FrameSource:
    """RGB frames (H, W, 3) uint8 with their time in seconds since the first."""

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file (safe to call twice)."""


class WebcamSource(FrameSource):
    def __init__(self, index: int) -> None:
        self.index = index
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"no webcam at index {index} (OpenCV could not open it); "
                              "give another index, or a video file")

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        t0 = time.monotonic()
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                raise SourceError(f"webcam {self.index} stopped delivering frames")
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic() - t0

    def close(self) -> None:
        self._cap.release()


class VideoFileSource(FrameSource):
    """A file played in real time: a frame that is already late when decoded is skipped
    (the newest frame only), one that is early is waited for."""

    def __init__(self, path: Path, loop: bool = False) -> None:
        self.path, self.loop = path, loop
        if not path.is_file():
            raise SourceError(f"no such video file: {path}")
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise SourceError(f"{path} has no video stream")
        except av.error.FFmpegError as exc:
            raise SourceError(f"cannot read {path}: {exc}") from exc

    def frames(self) -> Iterator[tuple[np.ndarray, float]]:
        offset, start = 0.0, time.monotonic()
        while True:
            last = offset
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                rate = float(stream.average_rate or 25)
                for k, frame in enumerate(container.decode(stream)):
                    last = offset + k / rate
                    late = time.monotonic() - start - last
                    if late > 1 / rate:
                        continue  # the next one is due already
                    if late < 0:
                        time.sleep(-late)
                    yield frame.to_ndarray(format="rgb24"), last
            if not self.loop:
                return
            offset = last + 1 / rate


def open_source(spec: str, loop: bool = False) -> FrameSource:
    """A webcam when ``spec`` is an index (``0``), else a video file."""
    if spec.isdigit():
        return WebcamSource(int(spec))
    return VideoFileSource(Path(spec), loop)
