"""Re-render a fitted photo: the model with the photo's expression, from the photo's
fitted camera, drawn over the photo (for comparing a reconstruction with its photo)."""

from __future__ import annotations

import numpy as np
import torch

from avatars.identity_fit import PhotoFit
from engines.face.model import FaceModel
from engines.render.hair import DEFAULT_COLOUR
from engines.render.renderer import MeshRenderer, RenderConfig


def render_over_photo(
    model: FaceModel,
    fit: PhotoFit,  # shape, expression and camera
    texture: np.ndarray | None,  # (S, k*S, 3) uint8
    image: np.ndarray,  # (H, W, 3) uint8 the photo
    hair: np.ndarray | None = None,  # (32, 32, P, 3) strands, drawn when given
    hair_rgb: tuple[float, float, float] = DEFAULT_COLOUR,
) -> np.ndarray:  # (H, W, 3) uint8
    h, w = image.shape[:2]
    with torch.no_grad():
        v = model(
            torch.as_tensor(fit.shape[None], dtype=torch.float32),
            torch.as_tensor(fit.expression[None], dtype=torch.float32),
            torch.zeros(1, model.n_pose),
        )[0].numpy()
    with MeshRenderer(model.topology, RenderConfig(w, h, transparent=True),
                      texture=texture) as r:
        if hair is not None:
            r.set_hair(hair, hair_rgb)
        rgba = r.render(fit.to_camera_space(v), fit.camera(), fit.camera_matrix())
    a = rgba[..., 3:] / 255.0
    return (image * (1 - a) + rgba[..., :3] * a).astype(np.uint8)
