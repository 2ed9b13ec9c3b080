"""One browser's session: its choices (target, mode, sliders) and a ``Retargeter`` whose
tracking and rendering run on two threads of its own (the avatar video that goes back to
it is ``server/retarget_track.py``)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection

from engines.emotion.models import EmotionModels
from engines.face.model import FaceModel
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter
from engines.retarget.target import Target
from engines.tracking.tracker import TrackerConfig, TrackResult
from server.gates import TurnGate

STAT_STAGES = ("track", "filter", "model", "render")
log = logging.getLogger("vn3d.server")


def frame_time(frame: av.VideoFrame) -> float:
    """The frame's time in seconds, or now for a frame without a usable timestamp."""
    t = float(frame.time) if frame.time is not None else float("nan")
    return t if np.isfinite(t) else time.monotonic()




@dataclass
class SessionContext:
    """What a session needs from the server, and no more."""

    model: FaceModel
    emotion_models: EmotionModels | None
    render_config: RenderConfig
    tracker_config: TrackerConfig  # the reader, the landmarker and the shared networks
    render_gate: TurnGate  # at most this many sessions render at once, in turn
    track_gate: TurnGate  # held from a frame's tracking to its render
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
        self.hair: tuple[str | None, tuple[float, float, float] | None] = (None, None)  # tried on
        self.sliders = np.zeros(6, np.float32)
        self.background = ctx.render_config.background  # sRGB in [0, 1]: what others key out
        self.calibration: tuple[str, int] | None = None  # (kind, frames) asked for
        # the GL context lives on this one thread (the model and the render) ...
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"s-{self.id}")
        # ... and the tracker (MediaPipe's graph) on this one, so that the next frame is
        # tracked while this one renders: the two stages use both cores
        self.tracker_executor = ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix=f"t-{self.id}")
        self.retargeter: Retargeter | None = None
        # the call's avatar (relayed to the preview and the room) and microphone
        self.avatar_track: MediaStreamTrack | None = None
        self.audio_track: MediaStreamTrack | None = None
        self.room_id: str | None = None  # server/rooms.py
        self.subscriptions: dict[str, RTCPeerConnection] = {}  # other members' avatars
        # since the last stats message
        self.frames_out = 0
        self.dropped = 0  # source frames replaced by a newer one before being rendered
        self.stage_ms: list[dict[str, float]] = []
        self.latency_ms: list[float] = []
        self.face = "lost"
        self.emotion: tuple[str, float] | None = None

    # -- runs on the tracker thread -------------------------------------------------------
    def track(self, frame: av.VideoFrame) -> TrackResult | None:
        """Track one camera frame (None before the Retargeter exists, and in the sliders
        mode, which needs no camera)."""
        rt = self.retargeter
        if rt is None or self.mode == "sliders":
            return None
        if self.calibration is not None:
            kind, frames = self.calibration
            self.calibration = None
            if kind == "range":
                rt.calibrate_range(frames)
            else:
                rt.calibrate(frames)
        return rt.track(frame, frame_time(frame))

    # -- runs on the session thread -------------------------------------------------------
    def prepare(self) -> None:
        """Make the Retargeter (and its GL context) on this thread, or bring it up to the
        page's choices (a new target's texture, a hairstyle's shell: ~0.3 s the first
        time a style is drawn): before the first frame, and before each render takes the
        render gate, so that no other session waits for it."""
        self._retargeter()

    def render(self, frame: av.VideoFrame, received_at: float, track: TrackResult | None
               ) -> np.ndarray:
        """Render the target for one camera frame, tracked or not, as the choices say."""
        rt = self._retargeter()
        if rt.mode == "sliders":
            result = rt.process(frame, frame_time(frame))  # the sliders, no tracking
        elif track is None:  # just switched from the sliders: a frame at rest
            zeros = np.zeros(rt.model.n_expression), np.zeros(3)
            result = rt.render_parameters(*zeros)
        else:
            result = rt.finish(track)
        self.face, self.emotion = result.face, result.emotion
        self.stage_ms.append(result.timings_ms)
        self.latency_ms.append(1000 * (time.perf_counter() - received_at))
        self.frames_out += 1
        return result.image

    def _retargeter(self) -> Retargeter:
        """The session's Retargeter (made on first use), brought up to the page's choices
        (the calibration is the tracker thread's: :meth:`track`)."""
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
        if rt.background != self.background:
            rt.set_background(self.background)
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
            "latencyP95Ms": (round(float(np.percentile(self.latency_ms, 95)), 1)
                             if self.latency_ms else None),
            "dropped": self.dropped,
        }
        self.frames_out, self.dropped, self.stage_ms, self.latency_ms = 0, 0, [], []
        return msg

    async def end_call(self) -> None:
        """Closes the call, if any (its slot frees); the session and socket stay."""
        if self.pc is not None:
            pc, self.pc = self.pc, None
            self.avatar_track = self.audio_track = None
            await pc.close()

    async def close(self) -> None:
        await self.end_call()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.tracker_executor, time.sleep, 0)  # a track in flight
        await loop.run_in_executor(self.executor, self.close_retargeter)
        self.tracker_executor.shutdown(wait=False)
        self.executor.shutdown(wait=False)
