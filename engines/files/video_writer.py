"""Writing RGB frames to a video file with PyAV (H.264 in MP4 by default)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engines.files.video_frames import yuv420p_frame


class VideoWriter:
    """Encode (H, W, 3) uint8 RGB frames. Writes to a temporary file and renames it into
    place on a clean close, so an interrupted job leaves no partial output."""

    def __init__(
        self, path: str | Path, fps: int = 25, codec: str = "libx264", crf: int = 20
    ) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.part")
        self.fps = fps
        self._container = av.open(str(self._tmp), mode="w", format=_format_for(self.path))
        self._stream = self._container.add_stream(codec, rate=Fraction(fps))
        self._stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._stream.options = {"crf": str(crf), "preset": "veryfast"}
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray) -> None:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB; got {frame.shape} {frame.dtype}")
        h, w = frame.shape[:2]
        if self._size is None:
            if h % 2 or w % 2:
                raise ValueError(f"yuv420p needs even sizes; got {w}x{h}")
            self._stream.width, self._stream.height = w, h
            self._size = (w, h)
        elif self._size != (w, h):
            raise ValueError(f"frame size changed from {self._size} to {(w, h)}")
        for packet in self._stream.encode(yuv420p_frame(frame)):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush, close and move the finished file into place."""
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            self._container.close()
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type | None, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _format_for(path: Path) -> str:
    return {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}.get(path.suffix.lower(), "mp4")


def write_y4m(src: str | Path, dst: str | Path, width: int = 640, height: int = 480,
              fps: float | None = None) -> int:
    """Decode a video and write it as Y4M (yuv420p, ``width`` x ``height``), the format of
    Chromium's fake camera (``--use-file-for-fake-video-capture``); returns its frames.
    ``fps``: at this rate instead of the source's, each frame the source shows at its time
    (a 25 fps clip at 30: every fifth frame twice)."""
    n = 0
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        src_fps = float(inp.streams.video[0].average_rate or 25)
        rate = fps or src_fps
        stream = out.add_stream("rawvideo", rate=Fraction(rate).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i, frame in enumerate(inp.decode(video=0)):
            f = frame.reformat(width=width, height=height, format="yuv420p")
            f.pts = None
            while n < (i + 1) * rate / src_fps - 1e-9:  # output frames within this one's time
                for packet in stream.encode(f):
                    out.mux(packet)
                n += 1
        for packet in stream.encode():
            out.mux(packet)
    return n
