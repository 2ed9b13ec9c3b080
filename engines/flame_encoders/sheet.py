"""A contact sheet of one photo's FLAME reading, to look at beside the photo: the photo
with MediaPipe's 68 points (green) and FLAME's (red), the mesh drawn over the photo with
DECA's camera, and the mesh alone from the front."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from engines.face.flame import FlameModel
from engines.flame_encoders.deca import CROP_SIZE
from engines.flame_encoders.photo_to_flame import FlameFit
from engines.render.camera import PerspectiveCamera, WeakPerspectiveCamera
from engines.render.renderer import MeshRenderer, RenderConfig

OVERLAY_ALPHA = 0.7
GREEN, RED = (40, 220, 60), (235, 40, 40)


def framed_camera(vertices: np.ndarray, fov_y_deg: float = 20.0) -> PerspectiveCamera:
    """A camera on +z looking at the middle of the mesh, framing its height with margin."""
    lo, hi = vertices.min(0), vertices.max(0)
    centre = (lo + hi) / 2
    half = 0.6 * max(hi[1] - lo[1], hi[0] - lo[0], 1e-6)
    dist = half / math.tan(math.radians(fov_y_deg) / 2) + (hi[2] - lo[2])
    eye = (float(centre[0]), float(centre[1]), float(centre[2] + dist))
    return PerspectiveCamera(fov_y_deg, eye, tuple(map(float, centre)), near=dist * 0.2,
                             far=dist * 5.0)


def mesh_over_photo(fit: FlameFit, image: np.ndarray, renderer: MeshRenderer) -> np.ndarray:
    """The mesh rendered with DECA's orthographic camera, warped into the photo, blended."""
    size = renderer.config.width
    s, tx, ty = map(float, fit.cam)
    depth = 4.0 * float(np.abs(fit.vertices[:, 2]).max() + 1e-6)
    layer = renderer.render(fit.vertices, WeakPerspectiveCamera(s, tx, ty, depth))  # (R, R, 4)
    to_photo = np.linalg.inv(fit.crop_tform) @ np.diag([CROP_SIZE / size, CROP_SIZE / size, 1])
    h, w = image.shape[:2]
    layer = cv2.warpAffine(layer, to_photo[:2], (w, h), flags=cv2.INTER_LINEAR)
    alpha = layer[..., 3:4].astype(np.float32) / 255 * OVERLAY_ALPHA
    return (image * (1 - alpha) + layer[..., :3] * alpha).astype(np.uint8)


def draw_points(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int]) -> None:
    r = max(1, round(max(image.shape[:2]) / 300))
    for x, y in np.round(points).astype(int):
        cv2.circle(image, (int(x), int(y)), r, colour, -1, cv2.LINE_AA)


def reconstruction_sheet(
    fit: FlameFit, image: np.ndarray, landmarks68_px: np.ndarray, flame: FlameModel,
    height: int = 512,
) -> np.ndarray:
    """(height, 3 * width, 3) RGB: points | mesh over the photo | the mesh from the front."""
    marked = image.copy()
    draw_points(marked, landmarks68_px, GREEN)
    if fit.landmarks68 is not None:
        draw_points(marked, fit.project(fit.landmarks68), RED)
    config = RenderConfig(width=2 * CROP_SIZE, height=2 * CROP_SIZE, transparent=True, samples=4)
    with MeshRenderer(flame.topology, config, texture=fit.texture) as renderer:
        over = mesh_over_photo(fit, image, renderer)
        pose = torch.as_tensor(fit.pose)[None].clone()
        pose[:, :6] = 0  # face the camera: no global or neck rotation, the jaw kept
        n_shape = flame.n_shape
        front = flame(torch.as_tensor(fit.shape)[None, :n_shape],
                      torch.as_tensor(fit.expression)[None], pose)[0].numpy()
        layer = renderer.render(front, framed_camera(front))  # (R, R, 4)
    alpha = layer[..., 3:4].astype(np.float32) / 255
    alone = (layer[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)  # on white
    scale = height / image.shape[0]
    width = round(image.shape[1] * scale)
    panels = [cv2.resize(p, (width, height), interpolation=cv2.INTER_AREA) for p in (marked, over)]
    panels.append(cv2.resize(alone, (height, height), interpolation=cv2.INTER_AREA))
    return np.concatenate(panels, axis=1)
