"""``RetargetTrack``: the avatar video a session sends back, made from its camera track."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engines.tracking.tracker import TrackResult
from server.session import Session
from server.stamps import frame_index, write_stamp

log = logging.getLogger("vn3d.server")


@dataclass
class Tracked:
    """A camera frame, when it arrived and what the tracker read from it (if anything)."""

    frame: av.VideoFrame
    received_at: float  # perf_counter
    track: TrackResult | None


class RetargetTrack(MediaStreamTrack):
    """The avatar video: each output frame is the target rendered from the newest input.

    Where latency can pile up, and what bounds it here:

    * decoded frames: ``_read_source`` takes every decoded frame from the source track as
      soon as aiortc delivers it and keeps only the newest; one that is replaced before it
      is rendered is dropped and counted (``dropped`` in the session's ``stats``). Encoded
      VP8 frames cannot be skipped (inter-coded), decoded ones can, at no cost.
    * two stages, one thread each: the newest frame is tracked (MediaPipe, on the
      session's tracker thread) as soon as the tracker is free, while the previous one
      renders (the model and llvmpipe, on the session thread); a tracked frame replaced
      by a newer one before its render is dropped and counted too. Both run native code
      outside the GIL most of the time, so one session uses both cores.
    * the tracked frame is chosen when the render starts, not when it is requested: a
      session waiting for the render gate renders whatever is newest once its turn comes.
    * UDP: aiortc reads RTP on the event loop. Rendering holds the GIL for long stretches
      (moderngl calls into Mesa's llvmpipe do not release it); with a render per session
      running at once the loop got the GIL too seldom to drain the sockets, and the
      kernel receive buffers (~400 KB each) held seconds of video. The gate caps how many
      renders run at once (``ServerConfig.render_slots``), so the loop keeps up.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack, session: Session) -> None:
        super().__init__()
        self.source, self.session = source, session
        self._lock = threading.Lock()  # _pending is set on the loop, taken on the session thread
        self._pending: tuple[av.VideoFrame, float] | None = None  # newest frame, not tracked
        self._tracked: Tracked | None = None  # newest tracked frame, not yet rendered
        self._ended = False
        self._new = asyncio.Event()  # a frame to track
        self._new_tracked = asyncio.Event()
        self._pump = asyncio.ensure_future(self._read_source())
        self._tracking = asyncio.ensure_future(self._track_newest())

    def _offer(self, frame: av.VideoFrame) -> None:
        """Make ``frame`` the next one to render; a frame it replaces is dropped."""
        with self._lock:
            if self._pending is not None:
                self.session.dropped += 1
            self._pending = (frame, time.perf_counter())
        self.session.last_frame_at = time.monotonic()
        self._new.set()

    def _take(self) -> tuple[av.VideoFrame, float]:
        with self._lock:
            pending, self._pending = self._pending, None
        assert pending is not None  # only recv() takes, and it waits for a pending frame
        return pending

    async def _read_source(self) -> None:
        """Take each decoded frame as it arrives; keep only the newest (never a queue)."""
        try:
            while True:
                self._offer(await self.source.recv())
        except Exception:  # the source ended (MediaStreamError) or the call closed
            self._ended = True
            self._new.set()

    async def _track_newest(self) -> None:
        """Track the newest frame whenever the tracker is free (never a queue)."""
        loop = asyncio.get_running_loop()
        session = self.session
        try:
            await loop.run_in_executor(session.executor, session.prepare)
            while True:
                while self._pending is None:
                    if self._ended:
                        return
                    await self._new.wait()
                    self._new.clear()
                frame, received_at = self._take()
                track = await loop.run_in_executor(session.tracker_executor, session.track,
                                                   frame)
                with self._lock:
                    if self._tracked is not None:
                        session.dropped += 1
                    self._tracked = Tracked(frame, received_at, track)
                self._new_tracked.set()
        except Exception:  # a failed tracker ends the video, not the server
            log.exception("session %s: tracking failed", session.id)
        finally:
            self._ended = True
            self._new_tracked.set()

    def _render_newest(self) -> tuple[av.VideoFrame, np.ndarray]:
        """On the session thread: wait for a render slot, then render the newest tracked
        frame."""
        with self.session.ctx.render_gate:
            with self._lock:
                tracked, self._tracked = self._tracked, None
            assert tracked is not None  # only recv() takes, after one was tracked
            image = self.session.render(tracked.frame, tracked.received_at, tracked.track)
            return tracked.frame, image

    async def recv(self) -> av.VideoFrame:
        while self._tracked is None:
            if self._ended or self.readyState != "live":
                self.stop()
                raise MediaStreamError
            await self._new_tracked.wait()
            self._new_tracked.clear()
        loop = asyncio.get_running_loop()
        frame, image = await loop.run_in_executor(self.session.executor, self._render_newest)
        if self.session.ctx.stamp_frames:
            write_stamp(image, frame_index(frame))
        out = av.VideoFrame.from_ndarray(image, format="rgb24")
        out.pts, out.time_base = frame.pts, frame.time_base
        return out

    def stop(self) -> None:
        super().stop()
        self._pump.cancel()
        self._ended = True
        self._new.set()  # the tracking loop ends
        self._new_tracked.set()  # a recv() waiting for a frame ends too
