"""Pictures of the hairstyles for the page's picker: each style on the mean ICT head, turned
a little so its length and back show, in a mid brown that shows the strands on a dark or
light page. Rendered on first request and kept on disk (named by the style's spec)."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from pathlib import Path

import cv2
import numpy as np
import torch

from avatars.hair.styles import list_styles, style_key
from avatars.restyle import styled_hair
from engines.face.model import FaceModel
from engines.files.disk_cache import cache_root, write_atomic
from engines.render.camera import PerspectiveCamera
from engines.render.hair import head_transform
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture

THUMBNAIL_CACHE = "hairstyle-thumbnails-v1"
SIZE = 128
YAW_DEG = 35.0
FOV_DEG = 14.0  # closer than the live portrait (20°): the hair fills the picture
CENTRE_CM = (0.0, 3.0, 0.0)  # a little above the live framing's: the crown, not the chest
COLOUR = (0.42, 0.28, 0.16)  # sRGB mid brown
BACKGROUND = (0.86, 0.87, 0.89)


def style_picture(name: str, model: FaceModel, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8 RGB: ``name`` on the mean head, yawed by ``YAW_DEG``."""
    shape = torch.zeros(1, model.n_shape)
    hair = styled_hair(name, shape[0].numpy(), model)
    pose = torch.zeros(1, model.n_pose)
    pose[0, 1] = float(np.radians(YAW_DEG))
    config = RenderConfig(size, size, background=BACKGROUND, samples=4)
    texture = plain_skin_texture(model)
    with MeshRenderer(model.topology, config, texture=texture) as renderer, torch.no_grad():
        renderer.set_hair(hair.positions if hair is not None else None, COLOUR)
        vertices = model(shape, torch.zeros(1, model.n_expression), pose)[0]
        camera = PerspectiveCamera.portrait(model.units_in_metres, FOV_DEG, CENTRE_CM)
        return renderer.render(vertices, camera, head_transform(pose[0, :3].numpy()))


class StyleThumbnails:
    """PNG bytes per style name: from memory or the disk cache at once; a picture not made
    yet is queued for one background thread (at the lowest CPU priority: live calls come
    first) and asked for again later, so no request ever waits for a render."""

    def __init__(self, model: FaceModel, size: int = SIZE) -> None:
        self.model, self.size = model, size
        self._png: dict[str, bytes] = {}
        self._queued: set[str] = set()
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def png(self, name: str) -> bytes | None:
        """The style's PNG; ``b""`` while it is being made; None for a name that is not a
        style."""
        if name not in list_styles():
            return None
        with self._lock:
            if name in self._png:
                return self._png[name]
            with contextlib.suppress(OSError):
                self._png[name] = self._path(name).read_bytes()
                return self._png[name]
            if name not in self._queued:
                self._queued.add(name)
                self._queue.put(name)
                if self._worker is None:
                    self._worker = threading.Thread(target=self._make, name="hairstyle-thumbs",
                                                    daemon=True)
                    self._worker.start()
        return b""

    def _path(self, name: str) -> Path:
        return cache_root() / THUMBNAIL_CACHE / f"{style_key(name)}-{self.size}.png"

    def on_disk(self, name: str) -> bool:
        return self._path(name).is_file()

    def make(self, name: str) -> bytes:
        """Render ``name``'s picture now and keep it on disk (and in memory)."""
        rgb = style_picture(name, self.model, self.size)
        data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
        with contextlib.suppress(OSError):  # a read-only cache: kept in memory only
            write_atomic(self._path(name), data)
        with self._lock:
            self._png[name] = data
            self._queued.discard(name)
        return data

    def _make(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: this thread only
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while True:
            self.make(self._queue.get())
