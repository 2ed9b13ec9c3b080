"""A target: the precomputed identity the person's expression and head pose are put on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engines.face.ict import ICTFaceModel
from engines.face.model import FaceModel
from engines.render.hair import DEFAULT_COLOUR
from engines.render.skin_texture import plain_skin_texture


@dataclass
class Target:
    """A precomputed target identity: shape coefficients, an optional UV texture and
    optional strand hair aligned to the identity's head."""

    name: str
    shape: torch.Tensor  # (1, <= n_shape)
    texture: np.ndarray | None = None  # (H, k*H, 3) uint8, k UDIM tiles
    hair: np.ndarray | None = None  # (32, 32, P, 3) strands in the model's frame
    hair_rgb: tuple[float, float, float] = DEFAULT_COLOUR  # sRGB in [0, 1]
    iris_rgb: tuple[float, float, float] | None = None  # sRGB in [0, 1]; None: the default


def default_target(model: FaceModel) -> Target:
    """The model's mean head; on ICT with a plain procedural skin texture."""
    texture = plain_skin_texture(model) if isinstance(model, ICTFaceModel) else None
    return Target("default", torch.zeros(1, model.n_shape), texture)
