"""Offline clips: a video in, the target's head speaking it out (PyAV decode and encode).

Audio is carried through (re-encoded to AAC for MP4). The output is written to a temporary
file and moved into place only when the whole clip succeeded, so a failure leaves nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from engines.face.model import FaceModel
from engines.files.video_frames import yuv420p_frame
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter, stage_summary
from engines.retarget.target import Target
from engines.tracking.tracker import TrackerConfig


class ClipError(RuntimeError):
    """The source cannot be read or the output cannot be written; nothing was left behind."""


@dataclass
class ClipConfig:
    size: int = 512  # output render size (square)
    side_by_side: bool = False  # source | render
    samples: int = 0  # MSAA
    crf: int = 20
    calibrate_frames: int = 0  # > 0: the first N frames with a face are the neutral face


@dataclass
class ClipReport:
    frames: int
    frames_with_face: int
    seconds: float
    stages: dict[str, dict[str, float]]


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """Fit an image into a size x size black square, keeping its aspect ratio."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((size, size, 3), np.uint8)
    y, x = (size - nh) // 2, (size - nw) // 2
    out[y : y + nh, x : x + nw] = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def open_source(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise ClipError(f"cannot read {path}: no such file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise ClipError(f"cannot read {path}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise ClipError(f"cannot read {path}: it has no video stream")
    return container


def retarget_clip(
    model: FaceModel,
    source: str | Path,
    out: str | Path,
    target: Target | None = None,
    config: ClipConfig | None = None,
    tracker_config: TrackerConfig | None = None,
) -> ClipReport:
    """Retarget every frame of ``source`` onto ``target`` and write ``out`` (MP4)."""
    cfg = config or ClipConfig()
    source, out = Path(source), Path(out)
    tmp = out.with_name(f".{out.name}.part")
    t_start = time.perf_counter()
    src = open_source(source)
    try:
        with Retargeter(
            model, target, RenderConfig(cfg.size, cfg.size, samples=cfg.samples), tracker_config
        ) as retargeter:
            if cfg.calibrate_frames > 0:
                retargeter.calibrate(cfg.calibrate_frames)
            report = _run(src, tmp, retargeter, cfg)
        os.replace(tmp, out)
    except av.FFmpegError as exc:
        raise ClipError(f"failed on {source}: {exc}") from exc
    finally:
        src.close()
        tmp.unlink(missing_ok=True)
    report.seconds = time.perf_counter() - t_start
    return report


def _run(src, tmp: Path, retargeter: Retargeter, cfg: ClipConfig) -> ClipReport:
    vin = src.streams.video[0]
    ain = src.streams.audio[0] if src.streams.audio else None
    rate = vin.average_rate or Fraction(25)
    total = vin.frames or (
        int(float(vin.duration * vin.time_base) * rate) if vin.duration else None
    )
    frames = faces = 0
    with av.open(str(tmp), mode="w", format="mp4") as dst:
        vout = dst.add_stream("libx264", rate=rate)
        vout.width = cfg.size * (2 if cfg.side_by_side else 1)
        vout.height = cfg.size
        vout.pix_fmt = "yuv420p"
        vout.options = {"crf": str(cfg.crf), "preset": "veryfast"}
        aout = dst.add_stream("aac", rate=ain.rate) if ain is not None else None
        streams = [s for s in (vin, ain) if s is not None]
        bar = tqdm(total=total, desc="retarget", unit="frame")
        t_decode = time.perf_counter()
        for packet in src.demux(*streams):
            try:
                decoded = packet.decode()
            except av.InvalidDataError:
                continue  # a damaged packet: skip it, keep the clip going
            for frame in decoded:
                if packet.stream is ain:
                    for p in aout.encode(frame):
                        dst.mux(p)
                    continue
                decode_ms = 1000 * (time.perf_counter() - t_decode)
                t = float(frame.time) if frame.time is not None else frames / float(rate)
                result = retargeter.process(frame, t)
                image = result.image
                if cfg.side_by_side:
                    image = np.concatenate(
                        [letterbox(frame.to_ndarray(format="rgb24"), cfg.size), image], 1
                    )
                t_enc = time.perf_counter()
                for p in vout.encode(yuv420p_frame(image)):
                    dst.mux(p)
                result.timings_ms["encode"] = 1000 * (time.perf_counter() - t_enc)
                result.timings_ms["decode"] = decode_ms
                frames += 1
                faces += result.face == "tracked"
                bar.update(1)
                t_decode = time.perf_counter()
        bar.close()
        for p in vout.encode():
            dst.mux(p)
        if aout is not None:
            for p in aout.encode():
                dst.mux(p)
    if frames == 0:
        raise ClipError("the source has no decodable video frames")
    return ClipReport(frames, faces, 0.0, stage_summary(list(retargeter.history)))
