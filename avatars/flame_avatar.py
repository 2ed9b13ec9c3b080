"""A FLAME avatar from one portrait, the paper's way: MICA's identity shape (DECA's when
``mica.tar`` is absent), DECA's albedo or the photo's own texture on FLAME's UVs.

``FlameAvatarBuilder.build`` reads top to bottom like :class:`avatars.builder.AvatarBuilder`
and makes the same :class:`~avatars.builder.Avatar`, for the model ``vn3d --model flame``
drives (FLAME through the ARKit map): landmarks (MediaPipe, still-image mode) -> DECA and
MICA (:class:`~engines.flame_encoders.photo_to_flame.PhotoToFlame`) -> texture
(:func:`~avatars.flame_photo_texture.flame_texture`). FLAME has no hair or mouth interior
of its own here, so the avatar has none; its photo camera is DECA's, as a pinhole camera
(:func:`~avatars.flame_photo_texture.pinhole_vertices`) with the rigid motion that puts
the unposed head where DECA saw it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from avatars.builder import Avatar, AvatarError
from avatars.exposure import exposed
from avatars.eye_colour import iris_colour
from avatars.face_finder import find_face
from avatars.flame_photo_texture import flame_texture, pinhole_vertices
from avatars.identity_fit import PhotoFit
from engines.face.correspondence import MEDIAPIPE_IBUG68
from engines.face.model import FaceModel
from engines.flame_encoders.photo_to_flame import FlameFit, PhotoToFlame
from engines.render.hair import DEFAULT_COLOUR
from engines.tracking.arkit_mapping import arkit_names
from engines.tracking.landmarkers import DEFAULT_LANDMARKER
from engines.tracking.tracker import FaceTracker, TrackerConfig

STAGES = ("landmarks", "deca", "texture")


def rigid_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R (3, 3), t (3,)) minimising |R @ source_i + t - target_i|² (Kabsch; a proper
    rotation) for points (N, 3)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    u, _, vt = np.linalg.svd((source - mu_s).T @ (target - mu_t))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, mu_t - rot @ mu_s


def photo_camera(fit: FlameFit, reader: PhotoToFlame, image_size: tuple[int, int],
                 landmarks_px: np.ndarray, shape: np.ndarray, n_expression: int) -> PhotoFit:
    """The photo's camera as a :class:`PhotoFit` (FLAME units, metres) for the avatar's
    ``shape`` and a still face (``n_expression`` zeros): the rigid motion from the head
    without DECA's global rotation to where DECA's camera puts it."""
    h, w = image_size
    camera_cm, focal = pinhole_vertices(fit, (h, w))
    # the global rotation goes into the camera
    rot, trans = rigid_fit(reader.still_vertices(fit), camera_cm / 100.0)
    residual = float("nan")
    if fit.landmarks68 is not None:  # FLAME's inner 51 landmarks against MediaPipe's, px
        error = fit.project(fit.landmarks68) - landmarks_px[MEDIAPIPE_IBUG68]
        residual = float(np.linalg.norm(error[17:], axis=1).mean())
    return PhotoFit(shape, np.zeros(n_expression, np.float32),
                    Rotation.from_matrix(rot).as_rotvec(), trans, focal, w, h, residual,
                    landmarks_px[:468].copy())


class FlameAvatarBuilder:
    """Holds DECA, MICA and FLAME and the photo tracker across builds."""

    def __init__(self, model: FaceModel, reader: PhotoToFlame, texture: str = "auto",
                 landmarker: str = DEFAULT_LANDMARKER) -> None:
        if model.name != "flame":
            raise ValueError(f"a FLAME avatar is built for the flame model, not {model.name!r}")
        if texture not in ("auto", "albedo", "photo"):
            raise ValueError(f"an avatar's texture is auto, albedo or photo; not {texture!r}")
        if model.topology.uvs is None or reader.flame.topology.uvs is None:
            raise ValueError("a FLAME avatar needs FLAME's UVs: DECA's head_template.obj "
                             "(vn3d doctor says where it is looked for)")
        self.model, self.reader, self.texture = model, reader, texture
        self._tracker = FaceTracker(arkit_names(), TrackerConfig(
            video=False, smoothing=None, landmarker=landmarker))

    def landmarks(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """Pixel landmarks (478, 2) of the largest face and the number of faces."""
        if (face := find_face(self._tracker, image)) is None:
            raise AvatarError("no face found in the photo: use a frontal portrait")
        return face

    def build(self, image: np.ndarray, name: str, source_sha256: str,
              progress: Callable[[str], None] | None = None) -> Avatar:
        """An avatar from an RGB photo (H, W, 3) uint8."""
        if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 32:
            raise AvatarError(
                f"the photo must be an RGB image of at least 32x32; got {image.shape}")
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def stage(label: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[label], clock = 1000 * (now - clock), now
            if progress:
                progress(label)

        landmarks, _ = self.landmarks(image)  # (478, 2) pixels
        h, w = image.shape[:2]
        stage("landmarks")
        fit = self.reader(image, landmarks)
        shape = np.zeros(self.model.n_shape, np.float32)
        n = min(len(fit.shape), self.model.n_shape)
        shape[:n] = fit.shape[:n]
        photo = photo_camera(fit, self.reader, (h, w), landmarks, shape,
                             self.model.n_expression)
        stage("deca")
        image, _ = exposed(image, landmarks)  # brightened when the eyes say it is too dark
        texture, _ = flame_texture(self.texture, fit, image, landmarks, self.reader.flame)
        assert texture is not None  # the UVs are there (checked when the builder was made)
        stage("texture")
        return Avatar(name, self.model.name, shape, texture, None, DEFAULT_COLOUR,
                      source_sha256, photo, iris_colour(image, landmarks), timings)

    def close(self) -> None:
        self._tracker.close()
