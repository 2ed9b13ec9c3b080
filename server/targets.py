"""The target picker a page shows: the catalogue's targets that its user may see, each with
a thumbnail URL (and, for avatars, zip/GLB download links), and the thumbnails themselves."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from avatars.catalogue import TargetCatalogue
from avatars.store import AvatarStore
from engines.dataset.loader import Dataset
from engines.face.model import FaceModel
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter
from engines.retarget.target import Target
from server.config import ServerConfig

THUMBNAIL = RenderConfig(160, 160, samples=4)


def shared_targets(config: ServerConfig, model: FaceModel, store: AvatarStore
                   ) -> TargetCatalogue:
    """The catalogue a server starts with: the default head, the datasets' subjects (of its
    face model), the sample gallery (ICT's, so on ICT only), the target files; the start
    target checked."""
    catalogue = TargetCatalogue(model, store)
    for path in config.datasets:  # subjects shown to everyone, each of this face model
        catalogue.add_dataset(Dataset(path))
    if config.sample_gallery:
        catalogue.add_sample_gallery()
    for path in config.target_files:
        catalogue.add_target_file(Path(path))
    if config.default_target not in catalogue.shared:
        raise ValueError(f"unknown target {config.default_target!r}; known: "
                         f"{', '.join(catalogue.shared)}")
    return catalogue


def thumbnail_png(target: Target, retargeter: Retargeter) -> bytes:
    """A PNG of the target's neutral head (with its hair), front view."""
    retargeter.set_target(target)
    model = retargeter.model
    image = retargeter.render_parameters(np.zeros(model.n_expression), np.zeros(3)).image
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return png.tobytes() if ok else b""


class TargetPicker:
    """Picker entries and thumbnails over a :class:`TargetCatalogue`."""

    def __init__(self, catalogue: TargetCatalogue, token: str | None = None) -> None:
        self.catalogue = catalogue
        self.token = token
        self._png: dict[str, bytes] = {}

    def render_shared(self) -> None:
        """Thumbnails of the targets everyone sees (at start-up)."""
        with Retargeter(self.catalogue.model, render_config=THUMBNAIL) as rt:
            for tid, target in self.catalogue.shared.items():
                self._png[tid] = thumbnail_png(target, rt)

    def thumbnail(self, target_id: str, user: str | None) -> bytes | None:
        """The PNG of a target ``user`` may see (avatars rendered on first request)."""
        if target_id in self.catalogue.shared:
            return self._png.get(target_id)
        if not self.catalogue.visible_avatar(target_id, user):
            return None
        if target_id not in self._png:
            target = self.catalogue.get(target_id, user)
            with Retargeter(self.catalogue.model, target, THUMBNAIL) as rt:
                self._png[target_id] = thumbnail_png(target, rt)
        return self._png[target_id]

    def entries(self, user: str | None) -> list[dict]:
        """The picker's list for ``user``: shared targets, then the avatars it may use."""
        out = [
            {"id": t, "name": self.catalogue.names[t],
             "thumbnail": f"/targets/{quote(t, safe='')}.png"}
            for t in self.catalogue.shared
        ]
        for entry in self.catalogue.avatars(user):
            out.append(self.avatar_entry(entry.id, entry.name, user))
        return out

    def new_avatar_reply(self, avatar_id: str, name: str, user: str | None) -> dict:
        """The ``avatar`` message for a new avatar: its entry and the new target list."""
        return {"type": "avatar", "ok": True, **self.avatar_entry(avatar_id, name, user),
                "targets": self.entries(user)}

    def avatar_entry(self, avatar_id: str, name: str, user: str | None) -> dict:
        query = self.download_query(user)
        return {
            "id": avatar_id, "name": name, "avatar": True,
            "thumbnail": f"/avatars/{avatar_id}.png{query}",
            "zip": f"/avatars/{avatar_id}.zip{query}", "glb": f"/avatars/{avatar_id}.glb{query}",
        }

    def download_query(self, user: str | None) -> str:
        parts = [f"user={quote(user, safe='')}"] if user else []
        if self.token:
            parts.append(f"token={quote(self.token, safe='')}")
        return "?" + "&".join(parts) if parts else ""
