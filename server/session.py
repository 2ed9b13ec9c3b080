"""One browser's session: its choices (target, mode, sliders), a ``Retargeter`` on its own
thread, and ``RetargetTrack``, the avatar video that goes back to it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from engines.emotion.models import EmotionModels
from engines.face.model import FaceModel
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter
from engines.retarget.target import Target
from engines.tracking.tracker import TrackerConfig
from server.stamps import frame_index, write_stamp

STAT_STAGES = ("track", "filter", "model", "render")


@dataclass
class SessionContext:
    """What a session needs from the server, and no more."""

    model: FaceModel
    emotion_models: EmotionModels | None
    render_config: RenderConfig
    tracker_config: TrackerConfig  # the reader, and the shared encoder batcher if any
    render_gate: threading.BoundedSemaphore  # at most this many sessions render at once
    stamp_frames: bool = False


class Session:
    """One browser: its peer connection, its choices and a Retargeter on its own thread."""

    def __init__(self, ctx: SessionContext, user: str | None, target_id: str,
                 target: Target) -> None:
        self.ctx = ctx
        self.id = uuid.uuid4().hex[:12]
        self.user = user  # who the page says it is (a random key it keeps): owns its uploads
        self.pc: RTCPeerConnection | None = None
        self.offering = False  # an offer is being answered: it holds a call slot already
        self.call_started_at = 0.0  # monotonic time of the call's offer
        self.last_frame_at: float | None = None  # of the camera's newest frame
        self.last_message_at = time.monotonic()  # of the page's newest message
        # the page's choices, set on the event loop, applied before the next frame
        self.target_id, self.target = target_id, target  # checked for this user when chosen
        self.mode = "track"
        self.sliders = np.zeros(6, np.float32)
        self.calibrate_frames = 0
        # the GL context and MediaPipe graph live on this one thread
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"s-{self.id}")
        self.retargeter: Retargeter | None = None
        # since the last stats message
        self.frames_out = 0
        self.dropped = 0  # source frames replaced by a newer one before being rendered
        self.stage_ms: list[dict[str, float]] = []
        self.latency_ms: list[float] = []
        self.face = "lost"
        self.emotion: tuple[str, float] | None = None

    # -- runs on the session thread -------------------------------------------------------
    def process(self, frame: av.VideoFrame, received_at: float) -> np.ndarray:
        """Render the target from one camera frame, as the session's choices say."""
        rt = self._retargeter()
        t = float(frame.time) if frame.time is not None else float("nan")
        if not np.isfinite(t):  # a frame without a usable timestamp
            t = time.monotonic()
        result = rt.process(frame, t)
        self.face, self.emotion = result.face, result.emotion
        self.stage_ms.append(result.timings_ms)
        self.latency_ms.append(1000 * (time.perf_counter() - received_at))
        self.frames_out += 1
        return result.image

    def _retargeter(self) -> Retargeter:
        """The session's Retargeter (made on first use), brought up to the page's choices."""
        ctx, target = self.ctx, self.target
        if self.retargeter is None:
            self.retargeter = Retargeter(ctx.model, target, ctx.render_config,
                                         ctx.tracker_config, emotion_models=ctx.emotion_models)
        rt = self.retargeter
        if rt.target is not target:
            rt.set_target(target)
        if rt.mode != self.mode:
            rt.set_mode(self.mode)
        if not np.array_equal(rt.sliders, self.sliders):
            rt.set_sliders(self.sliders)
        if self.calibrate_frames:
            rt.calibrate(self.calibrate_frames)
            self.calibrate_frames = 0
        return rt

    def close_retargeter(self) -> None:
        if self.retargeter is not None:
            self.retargeter.close()
            self.retargeter = None

    # -- runs on the event loop ----------------------------------------------------------
    @property
    def in_call(self) -> bool:
        """Holds one of the server's call slots (``max_sessions``)."""
        return self.pc is not None or self.offering

    def call_problem(self, now: float, timeout_s: float) -> str | None:
        """Why the call should end, if it should: not connected ``timeout_s`` after its
        offer, or no camera frame for ``timeout_s`` once connected."""
        if self.pc is None:
            return None
        if self.pc.connectionState != "connected":
            if now - self.call_started_at > timeout_s:
                return "the call did not connect"
            return None
        last = self.last_frame_at if self.last_frame_at is not None else self.call_started_at
        if now - last > timeout_s:
            return "no video from the camera"
        return None

    def idle(self, now: float, timeout_s: float) -> bool:
        """No call and no message for ``timeout_s``: the socket only holds a socket."""
        return self.pc is None and now - self.last_message_at > timeout_s

    def stats(self, elapsed: float) -> dict:
        """The ``stats`` message for the last ``elapsed`` seconds; starts a new period."""
        stages: dict[str, float] = {}
        for key in STAT_STAGES:
            values = [s[key] for s in self.stage_ms if key in s]
            if values:
                stages[key] = round(float(np.median(values)), 1)
        emotion = None
        if self.mode == "emotion" and self.emotion:
            emotion = {"label": self.emotion[0], "intensity": round(self.emotion[1], 2)}
        msg = {
            "type": "stats",
            "fps": round(self.frames_out / elapsed, 1),
            "stages": stages,
            "face": self.face,
            "mode": self.mode,
            "emotion": emotion,
            "latencyMs": round(float(np.median(self.latency_ms)), 1) if self.latency_ms else None,
            "dropped": self.dropped,
        }
        self.frames_out, self.dropped, self.stage_ms, self.latency_ms = 0, 0, [], []
        return msg

    async def end_call(self) -> None:
        """Closes the call, if any (its slot frees); the session and socket stay."""
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await pc.close()

    async def close(self) -> None:
        await self.end_call()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.close_retargeter)
        self.executor.shutdown(wait=False)


class RetargetTrack(MediaStreamTrack):
    """The avatar video: each output frame is the target rendered from the newest input.

    Where latency can pile up, and what bounds it here:

    * decoded frames: ``_read_source`` takes every decoded frame from the source track as
      soon as aiortc delivers it and keeps only the newest; one that is replaced before it
      is rendered is dropped and counted (``dropped`` in the session's ``stats``). Encoded
      VP8 frames cannot be skipped (inter-coded), decoded ones can, at no cost.
    * the frame is chosen when the render starts, not when it is requested: a session
      waiting for the render gate renders whatever is newest once its turn comes.
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
        self._pending: tuple[av.VideoFrame, float] | None = None  # newest frame not yet rendered
        self._ended = False
        self._new = asyncio.Event()
        self._pump = asyncio.ensure_future(self._read_source())

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

    def _render_newest(self) -> tuple[av.VideoFrame, np.ndarray]:
        """On the session thread: wait for a render slot, then render the newest frame."""
        with self.session.ctx.render_gate:
            frame, received_at = self._take()
            return frame, self.session.process(frame, received_at)

    async def recv(self) -> av.VideoFrame:
        while self._pending is None:
            if self._ended or self.readyState != "live":
                self.stop()
                raise MediaStreamError
            await self._new.wait()
            self._new.clear()
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
        self._new.set()  # a recv() waiting for a frame ends too
