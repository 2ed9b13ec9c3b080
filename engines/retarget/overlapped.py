"""Overlapped retargeting: track frame n+1 on a worker thread while frame n is modelled
and rendered on the calling thread (which owns the GL context).

MediaPipe's graph and llvmpipe's rasteriser both run native code outside the GIL, so on a
multi-core machine the two stages overlap. Results come out one frame late.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

import av
import numpy as np

from engines.retarget.retargeter import RetargetedFrame, Retargeter
from engines.tracking.tracker import TrackResult


class OverlappedRetargeter:
    """Wraps a :class:`Retargeter`; ``submit`` returns the previous frame's result."""

    def __init__(self, retargeter: Retargeter) -> None:
        self.retargeter = retargeter
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracker")
        self._pending: Future[TrackResult] | None = None

    def submit(
        self, frame: av.VideoFrame | np.ndarray, timestamp_s: float, fmt: str = "rgb"
    ) -> RetargetedFrame | None:
        """Start tracking this frame; render and return the previous one (None at first)."""
        previous = self._pending
        self._pending = self._pool.submit(self.retargeter.track, frame, timestamp_s, fmt)
        return self._finish(previous) if previous is not None else None

    def flush(self) -> RetargetedFrame | None:
        """Render the last submitted frame, if any."""
        previous, self._pending = self._pending, None
        return self._finish(previous) if previous is not None else None

    def _finish(self, future: Future) -> RetargetedFrame:
        t0 = time.perf_counter()
        track = future.result()
        timings = {**track.timings_ms, "wait": 1000 * (time.perf_counter() - t0)}
        return self.retargeter.finish(track, timings)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> OverlappedRetargeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
