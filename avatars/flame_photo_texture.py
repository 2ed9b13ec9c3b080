"""A FLAME texture from the photo itself, on DECA's UV layout (when there is no albedo
model, or by choice): the same unwrap as the ICT avatars' (:mod:`avatars.texture_unwrap`)
through DECA's fitted mesh and camera.

Two things differ from ICT:

- DECA's camera is orthographic (scale and shift in its crop). The unwrap wants a pinhole
  camera; the fitted mesh is placed a kilometre away with a focal length that gives it the
  same pixel size, which projects every vertex to within ~1e-4 px of DECA's projection.
- The unwrap's rules (which part of the face is the skin it learns the tone from, where
  the neck fades out) are in ICT's frame, centimetres, nose tip forward. FLAME's rest mesh
  (metres) is scaled to centimetres and moved so its nose tip lies on ICT's.

The eyes are not cut out (FLAME's eyeballs are textured, as in DECA); the mouth's opening
and the hair are.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from avatars.builder import MOUTH_OPENING
from avatars.hair.photo import hair_colour
from avatars.texture_unwrap import UnwrapResult, unwrap_texture
from engines.face.model import FaceModel
from engines.flame_encoders.photo_to_flame import FlameFit

ICT_NOSE_TIP_CM = np.array([0.0, 0.09, 13.09])  # ICT's neutral nose tip (tests check it)
DISTANCE_CM = 1e5  # the pinhole camera's distance to the head (near-orthographic)


def nose_tip(rest: np.ndarray) -> np.ndarray:
    """(3,) the most forward point of the rest mesh (V, 3) near the middle plane."""
    half_width = np.ptp(rest[:, 0]) / 2
    middle = rest[np.abs(rest[:, 0] - np.median(rest[:, 0])) < 0.08 * half_width]
    return middle[np.argmax(middle[:, 2])]


def rest_in_ict_frame(rest_m: np.ndarray) -> np.ndarray:
    """FLAME's rest mesh (V, 3) metres -> centimetres with its nose tip on ICT's."""
    cm = np.asarray(rest_m, np.float64) * 100.0
    return cm + (ICT_NOSE_TIP_CM - nose_tip(cm))


def pinhole_vertices(fit: FlameFit, image_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """(camera vertices (V, 3) cm in the photo's OpenCV camera, focal px) that project as
    DECA's orthographic camera projects ``fit.vertices``."""
    h, w = image_size
    v = np.asarray(fit.vertices, np.float64)  # (V, 3) metres, +z towards the camera
    pixels = fit.project(v)  # (V, 2)
    jac = fit.project(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]]))
    px_per_m = np.sqrt(abs(np.linalg.det(np.stack([jac[0] - jac[2], jac[1] - jac[2]]))))
    depth = DISTANCE_CM - 100.0 * v[:, 2]  # (V,) cm in front of the camera
    focal = DISTANCE_CM * px_per_m / 100.0
    xy = (pixels - [w / 2, h / 2]) * depth[:, None] / focal
    return np.c_[xy, depth], focal


def mouth_mask(landmarks_px: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the mouth's opening (MediaPipe's inner lip ring), a pixel wider."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks_px[MOUTH_OPENING]).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((3, 3), np.uint8)).astype(bool)


def flame_photo_texture(
    image: np.ndarray,  # (H, W, 3) uint8 RGB
    landmarks_px: np.ndarray,  # (478, 2) MediaPipe's, in the photo's pixels
    fit: FlameFit,
    model: FaceModel,  # FLAME (or FLAME driven by ARKit) with DECA's UVs attached
    size: int = 512,
) -> UnwrapResult:
    """The photo unwrapped onto FLAME's UVs through DECA's fit (texture row 0 is v = 1,
    as DECA's albedo and the renderer read it)."""
    if model.topology.uvs is None:
        raise ValueError("FLAME has no UV layout: DECA's head_template.obj is needed "
                         "for a texture (vn3d doctor says where it is looked for)")
    h, w = image.shape[:2]
    _, hair = hair_colour(image, landmarks_px)
    exclude = hair | mouth_mask(landmarks_px, (h, w))
    vertices, focal = pinhole_vertices(fit, (h, w))
    with torch.no_grad():
        template = model.prepare_identity(torch.zeros(1, model.n_shape))[0].numpy()  # (V, 3)
    rest = rest_in_ict_frame(template)
    return unwrap_texture(image, vertices, focal, model.topology, rest, size, exclude)


TEXTURES = ("auto", "albedo", "photo", "none")


def flame_texture(
    choice: str,  # one of TEXTURES
    fit: FlameFit,
    image: np.ndarray,
    landmarks_px: np.ndarray,
    model: FaceModel,
) -> tuple[np.ndarray | None, str]:
    """(texture (512, 512, 3) uint8 or None, how it was made): DECA's albedo (``albedo``),
    the photo unwrapped onto FLAME's UVs (``photo``), none, or ``auto``: the albedo when
    its model is there, else the photo when the UV template is."""
    if choice not in TEXTURES:
        raise ValueError(f"unknown texture {choice!r}; one of {', '.join(TEXTURES)}")
    if choice == "none":
        return None, "none"
    if choice == "albedo" or (choice == "auto" and fit.texture is not None):
        if fit.texture is None:
            raise ValueError("the albedo texture needs DECA's head_template.obj and an albedo "
                             "model (vn3d doctor says where each is looked for)")
        return fit.texture, "DECA's albedo"
    if model.topology.uvs is None:
        if choice == "photo":
            raise ValueError("the photo texture needs DECA's head_template.obj (FLAME's UVs; "
                             "vn3d doctor says where it is looked for)")
        return None, "none (no UV template)"
    unwrap = flame_photo_texture(image, landmarks_px, fit, model)
    seen = 100 * (unwrap.seen > 0.5).mean()
    return unwrap.texture, f"the photo unwrapped onto FLAME's UVs ({seen:.0f}% of the texels seen)"
