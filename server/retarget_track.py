"""``RetargetTrack``: the avatar video a session sends back, made from its camera track."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engines.files.video_frames import yuv420p_frame
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
    * two stages, one thread each: a frame is tracked (MediaPipe, on the session's
      tracker thread) while another renders (the model and llvmpipe, on the session
      thread) — within a session (frame n + 1 while n renders) and across sessions. Both
      run native code outside the GIL most of the time, so the two cores are both used.
      The track gate (one tracked frame waiting or being tracked at a time, server-wide)
      keeps tracked frames fresh and never tracks one that would be dropped.
    * the tracked frame is chosen when the render starts, not when it is requested: a
      session waiting for the render gate renders whatever is newest once its turn comes.
    * UDP: aiortc reads RTP on the event loop. Renders once held the GIL for long
      stretches (moderngl's calls into Mesa's llvmpipe); with a render per session
      running at once the loop got the GIL too seldom to drain the sockets, and the
      kernel receive buffers (~400 KB each) held seconds of video. The draw and the
      readback now free the GIL (:mod:`engines.render.gl_calls`), and the gate still
      caps how many renders run at once (``ServerConfig.render_slots``): on two cores a
      second slot buys ~9 % more frames for ~60 % more latency (docs/PERFORMANCE.md).
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack, session: Session) -> None:
        super().__init__()
        self.source, self.session = source, session
        self._lock = threading.Lock()  # _pending: set on the loop, taken on the tracker thread
        self._pending: tuple[av.VideoFrame, float] | None = None  # newest frame, not tracked
        self._tracked: Tracked | None = None  # newest tracked frame, not yet rendered
        self._holds_track_gate = False
        self._ended = False
        self._new = asyncio.Event()  # a frame to track
        self._new_tracked = asyncio.Event()
        self._taken = asyncio.Event()  # the renderer took the tracked frame
        self._loop = asyncio.get_running_loop()
        self._pump = asyncio.ensure_future(self._read_source())
        self._tracking = asyncio.ensure_future(self._track_newest())

    def _offer(self, frame: av.VideoFrame) -> None:
        """Make ``frame`` the next one to track; a frame it replaces is dropped."""
        with self._lock:
            if self._pending is not None:
                self.session.dropped += 1
            self._pending = (frame, time.perf_counter())
        self.session.last_frame_at = time.monotonic()
        self._new.set()

    async def _read_source(self) -> None:
        """Take each decoded frame as it arrives; keep only the newest (never a queue)."""
        try:
            while True:
                self._offer(await self.source.recv())
        except Exception:  # the source ended (MediaStreamError) or the call closed
            self._end()

    def _end(self) -> None:
        """No more frames: every waiting step wakes up and finishes (the tracking loop
        then gives back the track gate, so other sessions never wait on this one)."""
        self._ended = True
        self._new.set()
        self._new_tracked.set()
        self._taken.set()

    async def _track_newest(self) -> None:
        """Track the newest frame whenever this session may (never a queue)."""
        loop = asyncio.get_running_loop()
        session = self.session
        try:
            await loop.run_in_executor(session.executor, session.prepare)
            while not self._ended:
                while self._pending is None and not self._ended:
                    await self._new.wait()
                    self._new.clear()
                tracked = await loop.run_in_executor(session.tracker_executor,
                                                     self._track_next)
                if tracked is None or self._ended:
                    break
                with self._lock:
                    self._tracked = tracked
                self._new_tracked.set()
                while self._tracked is not None and not self._ended:  # its render starts
                    await self._taken.wait()
                    self._taken.clear()
        except Exception:  # a failed tracker ends the video, not the server
            log.exception("session %s: tracking failed", session.id)
        finally:
            self._end()
            self._release_track_gate()  # a tracked frame that will not render

    def _track_next(self) -> Tracked | None:
        """On the tracker thread: wait for the track gate, then track the newest frame.

        The gate (``SessionContext.track_gate``) is held from here until the frame's render
        starts: while one session renders, one other frame is tracked — across sessions
        and within one (frame n + 1 while n renders) — and no frame waits long between its
        tracking and its render, nor is tracked only to be dropped."""
        self.session.ctx.track_gate.acquire()
        with self._lock:
            self._holds_track_gate = True
            pending, self._pending = self._pending, None
        if pending is None:  # the call ended meanwhile
            self._release_track_gate()
            return None
        frame, received_at = pending
        return Tracked(frame, received_at, self.session.track(frame))

    def _release_track_gate(self) -> None:
        with self._lock:
            held, self._holds_track_gate = self._holds_track_gate, False
        if held:
            self.session.ctx.track_gate.release()

    def _render_newest(self) -> av.VideoFrame:
        """On the session thread: wait for a render slot, render the newest tracked frame,
        and make it the video frame every consumer encodes: in yuv420p, the encoders' own
        format, so that none of them converts it (a room's relay hands this one frame to
        several encoders on several threads, and PyAV's conversion of one frame is not
        safe to run twice at once)."""
        self.session.prepare()  # a new target or hairstyle set up outside the gate
        with self.session.ctx.render_gate:
            with self._lock:
                tracked, self._tracked = self._tracked, None
            assert tracked is not None  # only recv() takes, after one was tracked
            self._release_track_gate()  # the next frame (this session's or another's)
            self._loop.call_soon_threadsafe(self._taken.set)
            image = self.session.render(tracked.frame, tracked.received_at, tracked.track)
        if self.session.ctx.stamp_frames:
            write_stamp(image, frame_index(tracked.frame))
        out = yuv420p_frame(image)
        out.pts, out.time_base = tracked.frame.pts, tracked.frame.time_base
        return out

    async def recv(self) -> av.VideoFrame:
        while self._tracked is None:
            if self._ended or self.readyState != "live":
                self.stop()
                raise MediaStreamError
            await self._new_tracked.wait()
            self._new_tracked.clear()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.session.executor, self._render_newest)

    def stop(self) -> None:
        super().stop()
        self._pump.cancel()
        self._end()
