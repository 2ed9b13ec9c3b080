"""The demo clip: the default head cycling through the seven basic expressions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from engines.face.expressions import BASIC_EXPRESSIONS, expression_weights
from engines.face.model import FaceModel
from engines.files.video_writer import VideoWriter
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter
from engines.retarget.target import Target


@dataclass
class DemoConfig:
    """What the demo shows and how it is encoded."""

    size: int = 512
    fps: int = 25
    seconds_per_expression: float = 1.6
    yaw_deg: float = 20.0  # head turn amplitude
    pitch_deg: float = 7.0
    roll_deg: float = 4.0
    blink_every_s: float = 2.7
    samples: int = 4  # MSAA for a smoother clip
    caption: bool = True


def ease(t: float) -> float:
    """Cosine ease from 0 to 1 over t in [0, 1]."""
    return 0.5 - 0.5 * math.cos(math.pi * min(max(t, 0.0), 1.0))


def demo_parameters(
    model: FaceModel, t: float, cfg: DemoConfig
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Expression (1, n_expr) and pose (1, n_pose) at time t seconds, and the caption."""
    seg = cfg.seconds_per_expression
    n = len(BASIC_EXPRESSIONS)
    k = int(t // seg) % n
    # hold for the first 60 % of a segment, then blend into the next expression
    blend = ease((t % seg / seg - 0.6) / 0.4)
    current = model.expression_vector(expression_weights(BASIC_EXPRESSIONS[k]))
    following = model.expression_vector(expression_weights(BASIC_EXPRESSIONS[(k + 1) % n]))
    psi = (1 - blend) * current + blend * following
    phase = (t % cfg.blink_every_s) / 0.18  # a 180 ms blink
    if phase < 1.0 and "eyeBlink_L" in model.expression_names:
        blink = math.sin(math.pi * phase)
        for side in ("L", "R"):
            i = model.expression_names.index(f"eyeBlink_{side}")
            psi[0, i] = max(float(psi[0, i]), blink)
    pose = torch.zeros(1, model.n_pose)
    pose[0, 0] = math.radians(cfg.pitch_deg) * math.sin(2 * math.pi * t / 3.3)
    pose[0, 1] = math.radians(cfg.yaw_deg) * math.sin(2 * math.pi * t / 5.0)
    pose[0, 2] = math.radians(cfg.roll_deg) * math.sin(2 * math.pi * t / 7.0)
    return psi, pose, BASIC_EXPRESSIONS[(k + 1) % n if blend > 0.5 else k]


def render_demo(model: FaceModel, out: str | Path, cfg: DemoConfig | None = None) -> int:
    """Render the demo clip to ``out`` (MP4); returns the number of frames written."""
    cfg = cfg or DemoConfig()
    n_frames = round(cfg.seconds_per_expression * len(BASIC_EXPRESSIONS) * cfg.fps)
    mean_head = Target("demo", torch.zeros(1, model.n_shape))  # untextured, as a model shows
    render_cfg = RenderConfig(width=cfg.size, height=cfg.size, samples=cfg.samples)
    with (
        Retargeter(model, mean_head, render_cfg) as retargeter,
        VideoWriter(out, fps=cfg.fps) as writer,
    ):
        for i in tqdm(range(n_frames), desc="demo", unit="frame"):
            psi, pose, label = demo_parameters(model, i / cfg.fps, cfg)
            frame = retargeter.render_parameters(psi[0].numpy(), pose[0, :3].numpy()).image
            if cfg.caption:
                frame = caption(frame, label)
            writer.write(frame)
    return n_frames


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """Write a white label on a dark box in the bottom-left corner of an RGB frame."""
    out = frame.copy()
    h = out.shape[0]
    scale = max(h / 700, 0.35)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = int(10 * scale), h - int(14 * scale)
    cv2.rectangle(out, (x - 4, y - th - 4), (x + tw + 4, y + base + 2), (20, 20, 20), -1)
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
