"""What one process's sessions share: the face model, the avatar store and the target
catalogue, the emotion models, the networks and the gates that take turns on the cores.

``vn3d serve`` has one (``server/app.py``); in cluster mode each session host has its own
(``server/cluster/host.py``), made from the same :class:`ServerConfig`.
"""

from __future__ import annotations

import logging

from avatars.catalogue import TargetCatalogue
from avatars.store import AvatarStore
from engines.emotion.models import EmotionModels, default_emotion_models
from engines.face.by_name import load_face_model
from engines.render.renderer import RenderConfig
from server.config import ServerConfig
from server.gates import TurnGate
from server.networks import SharedNetworks
from server.session import Session, SessionContext
from server.targets import shared_targets

log = logging.getLogger("vn3d.server")


class SessionRuntime:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.model = load_face_model(config.model)
        self.store = AvatarStore(config.avatar_store)
        self.catalogue: TargetCatalogue = shared_targets(config, self.model, self.store)
        self.emotion_models: EmotionModels | None = None
        self.emotion_reason = ""
        self.networks = SharedNetworks(config)  # the encoder, MediaPipe's ONNX networks
        # at most render_slots sessions track+render at once (see RetargetTrack)
        self.render_gate = TurnGate(config.render_slots)
        # ... and as many frames are tracked or wait for a render (server/retarget_track.py)
        self.track_gate = TurnGate(config.render_slots)

    def load_emotion_models(self) -> None:
        """The emotion models (trained on first use, then cached); without them the
        sessions still run in "track" mode."""
        try:
            self.emotion_models = default_emotion_models(self.model.expression_names)
        except Exception as exc:
            self.emotion_reason = f"emotion models unavailable: {exc}"
            log.exception("emotion models unavailable")

    def new_session(self, user: str | None = None) -> Session:
        """A session on the default target with the narrow context it needs."""
        size = self.config.size
        ctx = SessionContext(
            self.model, self.emotion_models,
            RenderConfig(size, size, hair_reuse_deg=self.config.hair_reuse_deg,
                         vertex_lighting=not self.config.pixel_lighting,
                         hair_shell=not self.config.hair_strands),
            self.networks.tracker_config(),
            self.render_gate, self.track_gate, self.config.stamp_frames,
        )
        default = self.config.default_target
        return Session(ctx, user, default, self.catalogue.get(default))

    def close(self) -> None:
        self.networks.close()
