"""Local mode: frames from the source through a Retargeter on this machine, each render
letterboxed and sent to the virtual camera, paced at the camera's frame rate."""

from __future__ import annotations

import time
from dataclasses import dataclass

from engines.retarget.retargeter import Retargeter
from vn3d.camera.sink import CameraLike, letterbox
from vn3d.camera.sources import FrameSource


@dataclass
class CameraReport:
    frames_sent: int
    seconds: float
    frames_with_face: int | None  # None: not known here (remote mode)

    @property
    def fps(self) -> float:
        return self.frames_sent / self.seconds if self.seconds > 0 else 0.0


def run_local(source: FrameSource, retargeter: Retargeter, camera: CameraLike,
              background: tuple[int, int, int], max_frames: int | None = None,
              progress=None) -> CameraReport:  # fmt: skip
    """Until the source ends, ``max_frames`` are sent, or Ctrl-C."""
    sent = with_face = 0
    t0 = time.monotonic()
    try:
        for rgb, t in source.frames():
            out = retargeter.process(rgb, t)
            camera.send(letterbox(out.image, camera.width, camera.height, background))
            sent += 1
            with_face += out.face == "tracked"
            if progress is not None:
                progress(sent)
            if max_frames is not None and sent >= max_frames:
                break
            camera.sleep_until_next_frame()
    except KeyboardInterrupt:
        pass
    return CameraReport(sent, time.monotonic() - t0, with_face)
