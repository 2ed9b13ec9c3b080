"""One subject's photos and expression files, whichever face model builds it: the photos
with their landmarks, ``EXPRESSION.npz`` (ψ, θ, synthesised, and a photo's camera),
``.obj`` (the model's face) and ``.png`` (its render); and an expression without a photo,
from the ERM."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from avatars.builder import AvatarBuilder, AvatarError, decode_photo
from avatars.flame_avatar import FlameAvatarBuilder
from avatars.identity_fit import PhotoFit
from engines.emotion.facs import EMOTIONS
from engines.face.model import FaceModel
from engines.files.mesh_obj import write_obj
from engines.render.camera import Camera
from engines.render.renderer import MeshRenderer


def subject_photos(files: dict[str, Path], builder: AvatarBuilder | FlameAvatarBuilder
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(images, landmarks (478, 2) px) by expression; AvatarError for a photo with no face
    or with several."""
    images, landmarks = {}, {}
    for expr, path in files.items():
        image = decode_photo(path.read_bytes())
        lms, n_faces = builder.landmarks(image)
        if n_faces > 1:
            raise AvatarError(f"{path.name}: {n_faces} faces in the photo")
        images[expr], landmarks[expr] = image, lms
    return images, landmarks


def erm_expression(erm, expression: str) -> tuple[np.ndarray, np.ndarray]:
    """(ψ, θ) the ERM gives the emotion ``expression`` at full intensity."""
    intensities = np.array([[1.0 if e == expression else 0.0 for e in EMOTIONS]], np.float32)
    psi, pose = (x[0] for x in erm.predict(intensities))
    return psi, pose


def photo_arrays(fit: PhotoFit) -> dict[str, np.ndarray]:
    """A photo's camera and landmarks, to re-render it for evaluation."""
    return {"photo_rotation": np.asarray(fit.rotation), "photo_translation":
            np.asarray(fit.translation), "photo_focal": np.float64(fit.focal_px),
            "photo_size": np.array([fit.width, fit.height]),
            "photo_landmarks": np.asarray(fit.landmarks_px, np.float32)}


def write_expression(folder: Path, expression: str, model: FaceModel, identity: torch.Tensor,
                     psi: np.ndarray, pose: np.ndarray, synthesised: bool,
                     renderer: MeshRenderer, camera: Camera | None = None,
                     **extra: np.ndarray) -> None:
    """EXPRESSION.npz / .obj / .png for ψ (n_expression,) and θ (n_pose,) on the prepared
    ``identity`` (1, V, 3); ``extra`` arrays go into the npz."""
    with torch.no_grad():
        v = model.forward_prepared(identity, torch.as_tensor(psi[None], dtype=torch.float32),
                                   torch.as_tensor(pose[None], dtype=torch.float32))[0]
    np.savez(folder / f"{expression}.npz", expression=np.asarray(psi, np.float32),
             pose=np.asarray(pose, np.float32), synthesised=synthesised, **extra)
    write_obj(folder / f"{expression}.obj", v.numpy(), model.topology.faces)
    cv2.imwrite(str(folder / f"{expression}.png"), renderer.render(v, camera)[:, :, ::-1])
