"""What ``vn3d eval``'s synthetic mesh part reconstructs a render with, per face model:
the path ``vn3d dataset build`` takes for that model.

- ICT: MediaPipe's landmarks -> :class:`~avatars.identity_fit.LandmarkFitter` -> the fitted
  shape and expression at zero pose;
- FLAME: MediaPipe's landmarks -> DECA (and MICA when ``mica.tar`` is there) -> FLAME with
  that shape, expression and jaw, the head turn left out (the measure aligns rigidly).

Each also says where the measure's 7 landmarks lie on the model (:func:`landmark_vertices`)
and which vertices are eyeballs, which the face region leaves out (:func:`eyeball_vertices`).
"""

from __future__ import annotations

import numpy as np
import torch

from avatars.builder import AvatarBuilder, AvatarConfig
from avatars.flame_avatar import FlameAvatarBuilder
from engines.evaluation.mesh_accuracy import NOW_IBUG
from engines.face.flame_landmarks import load_landmark_embedding, points_on_faces
from engines.face.model import FaceModel
from engines.flame_encoders.photo_to_flame import load_photo_to_flame

FLAME_EYE_JOINTS = (3, 4)  # FLAME's joints: global, neck, jaw, left eye, right eye


class Reconstruction:
    """A render (H, W, 3) uint8 -> the model's mesh (V, 3) float64 in model units."""

    def __init__(self, model: FaceModel) -> None:
        self.model = model
        if model.name == "flame":
            reader, _ = load_photo_to_flame()
            self.builder: AvatarBuilder | FlameAvatarBuilder = FlameAvatarBuilder(model, reader)
        else:
            self.builder = AvatarBuilder(model, AvatarConfig(texture_size=512, hair="none"))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Raises AvatarError when no face is found in the render."""
        lms, _ = self.builder.landmarks(image)
        h, w = image.shape[:2]
        if isinstance(self.builder, FlameAvatarBuilder):  # the head turn: the alignment's
            reader = self.builder.reader
            return reader.still_vertices(reader(image, lms))
        fit = self.builder.fitter.fit([(lms, w, h)])[0]
        with torch.no_grad():
            v = self.model(torch.from_numpy(fit.shape[None].copy()),
                           torch.from_numpy(fit.expression[None].copy()),
                           torch.zeros(1, self.model.n_pose))[0]
        return v.numpy().astype(np.float64)

    def close(self) -> None:
        self.builder.close()


def landmark_vertices(model: FaceModel, rest: np.ndarray) -> np.ndarray:
    """(7,) vertex ids of the measure's landmarks (iBUG :data:`NOW_IBUG`): ICT's landmark
    vertices; on FLAME the vertex nearest each of DECA's embedded landmarks at ``rest``."""
    ids = model.topology.landmark_vertex_ids
    if len(ids) >= 68:
        return ids[NOW_IBUG]
    emb = load_landmark_embedding()  # FLAME: static points are iBUG 17-67
    slots = torch.as_tensor([i - 17 for i in NOW_IBUG])
    faces = torch.as_tensor(model.topology.faces, dtype=torch.long)
    points = points_on_faces(torch.as_tensor(rest)[None], faces,
                             emb.static_faces[slots][None],
                             emb.static_bary[slots][None].to(torch.float64))[0].numpy()
    return np.argmin(((rest[None] - points[:, None]) ** 2).sum(2), axis=1)


def eyeball_vertices(model: FaceModel) -> np.ndarray:
    """(V,) bool: FLAME's eyeballs (skinned to its eye joints); none on other models."""
    flame = getattr(model, "flame", None)
    if flame is None:
        return np.zeros(model.n_vertices, bool)
    joint = flame.lbs_weights.argmax(1).numpy()
    return np.isin(joint, FLAME_EYE_JOINTS)
