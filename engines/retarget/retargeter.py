"""The retargeting pipeline: a frame in, the target's head with the person's expression
and head pose out. Reads top to bottom per frame: track (+ filter) -> model -> render.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from engines.face.model import FaceModel
from engines.render.camera import Camera, PerspectiveCamera
from engines.render.hair import DEFAULT_COLOUR, head_transform
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.tracking.tracker import FaceTracker, TrackerConfig, TrackResult

STAGES = ("decode", "track", "filter", "model", "render", "encode")


@dataclass
class Target:
    """A precomputed target identity: shape coefficients, an optional UV texture and
    optional strand hair aligned to the identity's head."""

    name: str
    shape: torch.Tensor  # (1, <= n_shape)
    texture: np.ndarray | None = None  # (H, k*H, 3) uint8, k UDIM tiles
    hair: np.ndarray | None = None  # (32, 32, P, 3) strands in the model's frame
    hair_rgb: tuple[float, float, float] = DEFAULT_COLOUR  # sRGB in [0, 1]


def default_target(model: FaceModel) -> Target:
    """The ICT mean head with a plain procedural skin texture."""
    from engines.face.ict import ICTFaceModel
    from engines.render.skin_texture import plain_skin_texture

    texture = plain_skin_texture(model) if isinstance(model, ICTFaceModel) else None
    return Target("default", torch.zeros(1, model.n_shape), texture)


def load_target(spec: str, model: FaceModel) -> Target:
    """A target by name: ``default``, or an ``.npz`` with ``shape`` (n,) and optionally
    ``texture`` (H, k*H, 3) uint8."""
    if spec == "default":
        return default_target(model)
    path = Path(spec)
    if path.suffix != ".npz" or not path.is_file():
        raise ValueError(f"unknown target {spec!r}: use 'default' or an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as data:
            shape = np.asarray(data["shape"], np.float32).reshape(1, -1)
            texture = data["texture"] if "texture" in data.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"target file {path} is not a valid target: {exc}") from exc
    if shape.shape[1] > model.n_shape or not np.isfinite(shape).all():
        raise ValueError(f"target file {path}: shape must be <= {model.n_shape} finite values")
    if texture is not None and (texture.dtype != np.uint8 or texture.ndim != 3):
        raise ValueError(f"target file {path}: texture must be (H, k*H, 3) uint8")
    return Target(path.stem, torch.from_numpy(shape), texture)


@dataclass
class RetargetedFrame:
    image: np.ndarray  # (H, W, 3) uint8 render of the target
    track: TrackResult
    timings_ms: dict[str, float]


class Retargeter:
    """Holds a face model, a target, a tracker and a renderer for one video stream."""

    def __init__(
        self,
        model: FaceModel,
        target: Target | None = None,
        render_config: RenderConfig | None = None,
        tracker_config: TrackerConfig | None = None,
        camera: Camera | None = None,
    ) -> None:
        self.model = model
        self.camera = camera or PerspectiveCamera.portrait(model.units_in_metres)
        self.tracker = FaceTracker(model.expression_names, tracker_config)
        self.renderer = MeshRenderer(model.topology, render_config)
        self.history: deque[dict[str, float]] = deque(maxlen=600)
        self.target = target or default_target(model)
        self.set_target(self.target)

    def set_target(self, target: Target) -> None:
        """Switch the target between frames (no reconnect, no new GL context)."""
        if target.shape.shape[-1] > self.model.n_shape:
            raise ValueError(f"target {target.name!r} has too many shape coefficients")
        self.target = target
        with torch.no_grad():
            self._identity = self.model.prepare_identity(target.shape)
        self.renderer.set_texture(target.texture)
        self.renderer.set_hair(target.hair, target.hair_rgb)

    def process(
        self, frame: av.VideoFrame | np.ndarray, timestamp_s: float, fmt: str = "rgb"
    ) -> RetargetedFrame:
        track = self.tracker.process(frame, timestamp_s, fmt)
        return self.finish(track, dict(self.tracker.timings_ms))

    def finish(self, track: TrackResult, timings: dict[str, float]) -> RetargetedFrame:
        """Render a tracked frame and record its stage timings."""
        image = self.render(track.expression, track.rotation, timings)
        self.history.append(timings)
        return RetargetedFrame(image, track, timings)

    def render(
        self,
        expression: np.ndarray,
        rotation: np.ndarray,
        timings: dict[str, float] | None = None,
        gaze: np.ndarray | None = None,
    ) -> np.ndarray:
        """Render the target with ψ (n_expression,), head rotation (3,) axis-angle and,
        for models with a gaze slot (ICT: pose[3:6]), an extra gaze rotation (3,)."""
        timings = {} if timings is None else timings
        t0 = time.perf_counter()
        psi = torch.as_tensor(expression, dtype=torch.float32)[None]
        pose = torch.zeros(1, self.model.n_pose)
        pose[0, :3] = torch.as_tensor(rotation, dtype=torch.float32)
        if gaze is not None and self.model.pose_names[3:6] == ("gaze_rx", "gaze_ry", "gaze_rz"):
            pose[0, 3:6] = torch.as_tensor(gaze, dtype=torch.float32)
        with torch.no_grad():
            vertices = self.model.forward_prepared(self._identity, psi, pose)[0]
        t1 = time.perf_counter()
        hair = head_transform(pose[0, :3].numpy()) if self.target.hair is not None else None
        image = self.renderer.render(vertices, self.camera, hair)
        timings["model"] = 1000 * (t1 - t0)
        timings["render"] = 1000 * (time.perf_counter() - t1)
        return image

    def close(self) -> None:
        self.tracker.close()
        self.renderer.close()

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
