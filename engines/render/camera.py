"""Cameras for the renderer and for projecting points: perspective and weak perspective.

Both give OpenGL view and projection matrices (column vectors, right-handed, looking down
-z in view space) and project model-space points to pixel coordinates (x right, y down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-view matrix (4, 4) of a camera at ``eye`` looking at ``target``."""
    f = target - eye
    f = f / np.linalg.norm(f)
    s = np.cross(f, up)
    s = s / np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


@dataclass
class PerspectiveCamera:
    """A pinhole camera. Positions are in model units (ICT: cm, FLAME: m)."""

    fov_y_deg: float = 20.0
    eye: tuple[float, float, float] = (0.0, 0.0, 100.0)
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    near: float = 1.0
    far: float = 1000.0

    @classmethod
    def portrait(
        cls, units_in_metres: float = 0.01, fov_y_deg: float = 20.0,
        centre: tuple[float, float, float] = (0.0, 0.0, 0.0),
    ) -> PerspectiveCamera:
        """A head-and-shoulders framing of a head centred near ``centre`` (model units)."""
        cm = 0.01 / units_in_metres  # model units per centimetre
        dist = 21.0 / math.tan(math.radians(fov_y_deg) / 2.0) * cm
        x, y, z = centre
        return cls(
            fov_y_deg=fov_y_deg,
            eye=(x, y - 1.5 * cm, z + dist),
            target=(x, y - 1.5 * cm, z),
            near=dist * 0.2,
            far=dist * 5.0,
        )

    def view(self) -> np.ndarray:
        """World-to-view (4, 4)."""
        return look_at(
            np.asarray(self.eye, float), np.asarray(self.target, float), np.asarray(self.up, float)
        )

    def projection(self, aspect: float) -> np.ndarray:
        """View-to-clip (4, 4) for width / height = ``aspect``."""
        f = 1.0 / math.tan(math.radians(self.fov_y_deg) / 2.0)
        n, fa = self.near, self.far
        return np.array(
            [
                [f / aspect, 0, 0, 0],
                [0, f, 0, 0],
                [0, 0, (fa + n) / (n - fa), 2 * fa * n / (n - fa)],
                [0, 0, -1, 0],
            ]
        )

    def project(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """Pixel coordinates (N, 2) of points (N, 3); pixel centres at +0.5."""
        return clip_to_pixels(points, self.projection(width / height) @ self.view(), width, height)


@dataclass
class WeakPerspectiveCamera:
    """Scaled orthographic camera as in DECA: ``x_ndc = scale * (x + tx)``, same for y.

    ``scale`` is in NDC per model unit; the image's shorter side spans NDC [-1, 1].
    """

    scale: float = 1.0 / 21.0
    tx: float = 0.0
    ty: float = 1.5
    depth_range: float = 100.0  # model units mapped into the depth buffer, centred on z=0

    @classmethod
    def portrait(cls, units_in_metres: float = 0.01) -> WeakPerspectiveCamera:
        cm = 0.01 / units_in_metres
        return cls(scale=1.0 / (21.0 * cm), ty=1.5 * cm, depth_range=100.0 * cm)

    def view(self) -> np.ndarray:
        return np.eye(4)

    def projection(self, aspect: float) -> np.ndarray:
        sx = self.scale / max(aspect, 1.0)
        sy = self.scale * min(aspect, 1.0)
        return np.array(
            [
                [sx, 0, 0, sx * self.tx],
                [0, sy, 0, sy * self.ty],
                [0, 0, -2.0 / self.depth_range, 0],
                [0, 0, 0, 1],
            ]
        )

    def project(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        return clip_to_pixels(points, self.projection(width / height), width, height)


Camera = PerspectiveCamera | WeakPerspectiveCamera


def clip_to_pixels(points: np.ndarray, mvp: np.ndarray, width: int, height: int) -> np.ndarray:
    """Apply a (4, 4) model-view-projection to points (N, 3); return pixels (N, 2)."""
    homo = np.c_[points, np.ones(len(points))] @ mvp.T  # (N, 4)
    ndc = homo[:, :2] / homo[:, 3:4]
    x = (ndc[:, 0] + 1.0) * 0.5 * width
    y = (1.0 - ndc[:, 1]) * 0.5 * height
    return np.stack([x, y], 1)
