"""The retargeting pipeline for one stream: a frame (or slider values) in, the target's head
with the person's expression and head pose out, with a typed result.

Per frame, top to bottom: the mode picks the source of ψ and θ -> track (+ filter) ->
emotion (detector, steady label, ERM) -> face model -> render. Modes:

- ``track``: the tracked ψ and head rotation;
- ``emotion``: the tracked ψ -> a steady emotion label and intensity -> the ERM's ψ and
  gaze; the head rotation is the tracked one plus the ERM's;
- ``sliders``: six emotion intensities -> the ERM's ψ and θ; no tracking.

Every caller (the server's sessions, ``retarget-clip``, ``vn3d render``, the demo) goes
through :class:`Retargeter`; none reaches into its tracker or renderer.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
import torch

from engines.emotion.models import EmotionMode, EmotionModels, intensities_from
from engines.face.model import FaceModel
from engines.render.camera import Camera, PerspectiveCamera
from engines.render.hair import head_transform
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.retarget.target import Target, default_target
from engines.tracking.tracker import FaceTracker, TrackerConfig, TrackResult

MODES = ("track", "emotion", "sliders")
STAGES = ("decode", "track", "filter", "model", "render", "encode")
GAZE_SLOTS = ("gaze_rx", "gaze_ry", "gaze_rz")  # pose[3:6] on models with a gaze rotation


@dataclass
class RetargetedFrame:
    """One rendered frame and what drove it."""

    image: np.ndarray  # (H, W, 3) uint8 render of the target ((H, W, 4) when transparent)
    expression: np.ndarray  # ψ (n_expression,) as rendered
    pose: np.ndarray  # θ (n_pose,) as rendered: head rotation [0:3], then gaze (ICT)
    face: str  # tracked, held, easing or lost; "none" when nothing was tracked
    emotion: tuple[str, float] | None  # the steady label and its intensity (emotion mode)
    timings_ms: dict[str, float]  # per stage: track, filter, model, render (+ callers' own)
    track: TrackResult | None = None  # the tracker's reading, when the mode tracks


def with_emotion(
    expression: np.ndarray, rotation: np.ndarray, erm_psi: np.ndarray, erm_theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ψ and θ with an ERM output laid over them: each shape the larger of the two, the
    head rotation plus the ERM's (θ[0:3]), the gaze the ERM's (θ[3:6])."""
    return np.maximum(expression, erm_psi), rotation + erm_theta[:3], erm_theta[3:6]


class Retargeter:
    """A face model, a target, a tracker (made on first use) and a renderer for one stream.

    The renderer's GL context belongs to the thread that calls ``process``/``finish``/
    ``render_parameters``; ``track`` may run on another thread (see ``OverlappedRetargeter``).
    """

    def __init__(
        self,
        model: FaceModel,
        target: Target | None = None,
        render_config: RenderConfig | None = None,
        tracker_config: TrackerConfig | None = None,
        camera: Camera | None = None,
        emotion_models: EmotionModels | None = None,
    ) -> None:
        self.model = model
        self.camera = camera or PerspectiveCamera.portrait(model.units_in_metres,
                                                           centre=model.view_centre)
        self.tracker_config = tracker_config
        self.emotion_models = emotion_models
        self.history: deque[dict[str, float]] = deque(maxlen=600)
        self.mode = "track"
        self.sliders = np.zeros(6, np.float32)  # intensities, in EMOTIONS order
        self._tracker: FaceTracker | None = None
        self._emotion = (
            EmotionMode(emotion_models, model.expression_names) if emotion_models else None
        )
        self._renderer = MeshRenderer(model.topology, render_config)
        self.target = target or default_target(model)
        self.set_target(self.target)

    # -- between frames ------------------------------------------------------------------
    def set_target(self, target: Target) -> None:
        """Switch the target between frames (no reconnect, no new GL context)."""
        if target.shape.shape[-1] > self.model.n_shape:
            raise ValueError(f"target {target.name!r} has too many shape coefficients")
        self.target = target
        with torch.no_grad():
            self._identity = self.model.prepare_identity(target.shape)
        self._renderer.set_texture(target.texture)
        self._renderer.set_hair(target.hair, target.hair_rgb)
        self._renderer.set_iris_colour(target.iris_rgb)

    def set_background(self, rgb: tuple[float, float, float]) -> None:
        """The solid sRGB colour in [0, 1] the head is rendered on, from the next frame."""
        self._renderer.set_background(rgb)

    @property
    def background(self) -> tuple[float, float, float]:
        return self._renderer.config.background

    def set_mode(self, mode: str) -> None:
        """``track``, ``emotion`` or ``sliders``; the last two need the emotion models."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        if mode != "track" and self.emotion_models is None:
            raise ValueError(f"the {mode} mode needs the emotion models")
        self.mode = mode

    def set_sliders(self, values: dict[str, float] | list[float] | np.ndarray) -> None:
        """The six emotion intensities the sliders mode renders (a dict by name or six
        numbers in ``EMOTIONS`` order, each in [0, 1])."""
        self.sliders = intensities_from(values)

    def calibrate(self, n_frames: int = 15) -> None:
        """Take the next ``n_frames`` tracked frames as this person's resting face."""
        self.tracker.start_neutral_calibration(n_frames)

    def calibrate_range(self, n_frames: int = 60) -> None:
        """Take the next ``n_frames`` tracked frames as this person's biggest expressions
        (each shape they move clearly then reaches 1 at their own peak)."""
        self.tracker.start_range_calibration(n_frames)

    # -- per frame -----------------------------------------------------------------------
    def process(
        self, frame: av.VideoFrame | np.ndarray, timestamp_s: float, fmt: str = "rgb"
    ) -> RetargetedFrame:
        """One frame in (any size/format), the target's head out, as the mode says."""
        if self.mode == "sliders":
            return self.render_parameters(
                np.zeros(self.model.n_expression), np.zeros(3), emotion=self.sliders
            )
        return self.finish(self.track(frame, timestamp_s, fmt))

    def track(
        self, frame: av.VideoFrame | np.ndarray, timestamp_s: float, fmt: str = "rgb"
    ) -> TrackResult:
        """Only the tracking half of :meth:`process` (any thread; one at a time)."""
        return self.tracker.process(frame, timestamp_s, fmt)

    def finish(self, track: TrackResult, timings: dict[str, float] | None = None
               ) -> RetargetedFrame:
        """The rest of :meth:`process` for a tracked frame: the mode's ψ and θ, rendered."""
        timings = dict(track.timings_ms) if timings is None else timings
        emotion = None
        gaze = None
        expression, rotation = track.expression, track.rotation
        if self.mode == "emotion" and self._emotion is not None:
            label, intensity, erm_psi, erm_theta = self._emotion.step(
                track.expression, self.tracker.calibrated)
            emotion = (label, intensity)
            expression, rotation, gaze = with_emotion(
                np.zeros_like(expression), rotation, erm_psi, erm_theta
            )
        result = self._render(expression, rotation, gaze, timings, track.status, emotion)
        result.track = track
        return result

    def render_parameters(
        self,
        expression: np.ndarray,
        rotation: np.ndarray,
        gaze: np.ndarray | None = None,
        emotion: dict[str, float] | list[float] | np.ndarray | None = None,
    ) -> RetargetedFrame:
        """Render given ψ (n_expression,) and head rotation (3,) axis-angle, an optional gaze
        rotation (3,), and optionally emotion intensities laid over them through the ERM
        (:func:`with_emotion`). Nothing is tracked."""
        expression = np.asarray(expression, np.float32)
        rotation = np.asarray(rotation, np.float32)
        if emotion is not None:
            if self.emotion_models is None:
                raise ValueError("emotion intensities need the emotion models")
            erm_psi, erm_theta = self.emotion_models.sliders(emotion)
            expression, rotation, gaze = with_emotion(expression, rotation, erm_psi, erm_theta)
        return self._render(expression, rotation, gaze, {}, "none", None)

    def _render(
        self,
        expression: np.ndarray,
        rotation: np.ndarray,
        gaze: np.ndarray | None,
        timings: dict[str, float],
        face: str,
        emotion: tuple[str, float] | None,
    ) -> RetargetedFrame:
        t0 = time.perf_counter()
        psi = torch.as_tensor(expression, dtype=torch.float32)[None]  # (1, n_expression)
        pose = torch.zeros(1, self.model.n_pose)  # (1, n_pose)
        pose[0, :3] = torch.as_tensor(rotation, dtype=torch.float32)
        if gaze is not None and self.model.pose_names[3:6] == GAZE_SLOTS:
            pose[0, 3:6] = torch.as_tensor(gaze, dtype=torch.float32)
        with torch.no_grad():
            vertices = self.model.forward_prepared(self._identity, psi, pose)[0]  # (V, 3)
        t1 = time.perf_counter()
        hair = head_transform(pose[0, :3].numpy()) if self.target.hair is not None else None
        image = self._renderer.render(vertices, self.camera, hair)
        timings["model"] = 1000 * (t1 - t0)
        timings["render"] = 1000 * (time.perf_counter() - t1)
        self.history.append(timings)
        return RetargetedFrame(image, psi[0].numpy(), pose[0].numpy(), face, emotion, timings)

    @property
    def tracker(self) -> FaceTracker:
        """The stream's tracker, made on first use (sliders-only streams never load it)."""
        if self._tracker is None:
            self._tracker = FaceTracker(self.model.expression_names, self.tracker_config)
        return self._tracker

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        self._renderer.close()

    def __enter__(self) -> Retargeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage_summary(history: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Median and p95 milliseconds per stage over recorded frames."""
    out = {}
    for stage in STAGES:
        values = np.array([h[stage] for h in history if stage in h])
        if len(values):
            out[stage] = {
                "median_ms": float(np.median(values)),
                "p95_ms": float(np.percentile(values, 95)),
            }
    return out
