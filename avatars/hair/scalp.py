"""The scalp: the head's skin as a signed distance, and the map from the 32x32 grid to roots.

Row i runs from the nape (0) to the forehead (31), column j from the subject's right (0)
to left (31). The square maps onto a disk (Shirley-Chiu's concentric map, equal area); the
disk onto directions from ``SCALP_CENTRE`` with the crown at the disk centre and the
hairline ``HAIRLINE`` on its rim (equal-area warps in both angles, so roots are evenly
spread); each direction onto the first crossing of the neutral head's skin along that ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from scipy.spatial import cKDTree

from avatars.hair.strands import GRID
from engines.face.model import MeshTopology
from engines.files.assets import asset_path
from engines.geometry.normals import vertex_normals
from engines.geometry.triangulate import triangulate

SKIN_MATERIALS = ("M_Face", "M_BackHead")


SCALP_CENTRE = np.array([0.0, 4.0, 0.0])  # cm: roots are cast from here (inside the skull)


# hairline: (azimuth about +y from the face's front, elevation from SCALP_CENTRE), degrees;
# +azimuth towards the subject's left; mirrored for the right. It dips for the sideburns,
# climbs over the ear and falls behind it to the nape.
HAIRLINE = ((0, 38), (30, 33), (55, 22), (72, -12), (84, -14), (95, 12), (108, -20),
            (125, -36), (150, -46), (180, -54))  # fmt: skip


ROOT_OFFSET = 0.05  # cm: roots and strands keep at least this far out of the skin


DOWN = np.array([0.0, -1.0, 0.0])


def skin_faces(topology: MeshTopology) -> np.ndarray:
    """The skin triangles (F, 3) of an ICT topology: face and back of the head."""
    return topology.faces[topology.face_ids(SKIN_MATERIALS)]


class HeadSurface:
    """Signed distance to a head's skin from its nearest vertex's tangent plane.

    Negative inside. Exact enough near a smooth skin (the vertex spacing is a few mm, the
    plane's error under 0.1 mm). Unless ``exact``, points over ``NEAR`` cm from every
    vertex are taken to be outside at that distance, which makes far points cheap: hair
    is grown and mended in steps from outside, so it is never that deep inside.
    """

    NEAR = 3.0  # cm

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        v = np.asarray(vertices, np.float32).reshape(-1, 3)  # (V, 3)
        f = np.asarray(faces, np.int64)  # (F, 3)
        used = np.unique(f)
        normals = vertex_normals(torch.from_numpy(v), torch.from_numpy(f)).numpy()
        self.vertices = v[used].astype(np.float64)  # (U, 3)
        self.normals = normals[used].astype(np.float64)  # (U, 3)
        self.tree = cKDTree(self.vertices)

    def query(self, points: np.ndarray, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Signed distances (N,) and outward unit normals (N, 3; zero far away) for points
        (N, 3)."""
        sd, n, _ = self.nearest(points, np.inf if exact else self.NEAR)
        return sd, n

    def nearest(
        self, points: np.ndarray, bound: float = np.inf
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Signed distances (N,), outward unit normals (N, 3) and distances to the nearest
        vertex (N,) for points (N, 3). A point over ``bound`` cm from every vertex gets
        signed distance NEAR, a zero normal and an infinite distance."""
        workers = -1 if len(points) > 20000 else 1
        dist, idx = self.tree.query(points, distance_upper_bound=bound, workers=workers)
        far = idx == len(self.vertices)
        idx[far] = 0
        n = np.where(far[:, None], 0.0, self.normals[idx])
        sd = np.einsum("nc,nc->n", points - self.vertices[idx], n)
        return np.where(far, self.NEAR, sd), n, dist

    def push_out(self, points: np.ndarray, offset: float | np.ndarray) -> np.ndarray:
        """Points (N, 3) moved along the normal to at least ``offset`` outside the skin."""
        sd, n = self.query(points)
        return points + np.maximum(offset - sd, 0.0)[:, None] * n


def points_inside_head(
    points: np.ndarray, head_vertices: np.ndarray, faces: np.ndarray
) -> np.ndarray:
    """Which points (N, 3) lie inside the skin given by head_vertices (V, 3) and faces
    (F, 3) (pass :func:`skin_faces` for an ICT head): (N,) bool."""
    sd, _ = HeadSurface(head_vertices, faces).query(np.asarray(points, np.float64), exact=True)
    return sd < 0.0


@cache
def neutral_head() -> tuple[np.ndarray, np.ndarray]:
    """The ICT neutral head: vertices (V, 3) float32 and skin triangles (F, 3)."""
    with np.load(asset_path("ict_facekit")) as data:
        tris, src = triangulate(data["faces"])
        material = data["face_material"][src]
        names = [str(n) for n in data["material_names"]]
        vertices = data["neutral"].astype(np.float32)
    ids = [names.index(m) for m in SKIN_MATERIALS]
    return vertices, tris[np.isin(material, ids)]


@cache
def neutral_surface() -> HeadSurface:
    return HeadSurface(*neutral_head())


def concentric_disk(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shirley-Chiu equal-area map of the square [-1, 1]^2 onto the unit disk.

    Returns the radius and the angle from +b towards +a (radians), both like ``a``.
    """
    use_a = np.abs(a) > np.abs(b)
    safe_a = np.where(a == 0, 1.0, a)
    safe_b = np.where(b == 0, 1.0, b)
    r = np.where(use_a, a, b)
    phi = np.where(use_a, np.pi / 4 * b / safe_a, np.pi / 2 - np.pi / 4 * a / safe_b)
    x, y = r * np.cos(phi), r * np.sin(phi)
    return np.hypot(x, y), np.arctan2(x, y)


def hairline_elevation(azimuth: np.ndarray) -> np.ndarray:
    """The hairline's elevation (radians) at azimuths (radians) about SCALP_CENTRE."""
    az, el = np.radians(np.array(HAIRLINE, float)).T
    return np.interp(np.abs(azimuth), az, el)


@dataclass(frozen=True)
class Scalp:
    """Roots of the 32x32 scalp grid on the ICT neutral head."""

    roots: np.ndarray  # (32, 32, 3) cm, ROOT_OFFSET out of the skin
    normals: np.ndarray  # (32, 32, 3) skin normal at each root
    disk: np.ndarray  # (32, 32, 2) the map's point on the unit disk: (left, front)
    azimuth: np.ndarray  # (32, 32) radians about +y, 0 front, + subject's left


@cache
def scalp() -> Scalp:
    """The scalp grid: equal-area warps of the disk, then rays cast onto the skin."""
    c = (np.arange(GRID) + 0.5) / GRID * 2.0 - 1.0
    b, a = np.meshgrid(c, c, indexing="ij")  # rows: nape -> forehead; columns: right -> left
    rho, theta = concentric_disk(a, b)
    # azimuth: uniform disk angle -> head azimuth with density ~ the scalp's area there
    grid_az = np.linspace(-np.pi, np.pi, 721)
    density = 1.0 - np.sin(hairline_elevation(grid_az))
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2)])
    azimuth = np.interp((theta + np.pi) / (2 * np.pi), cdf / cdf[-1], grid_az)
    # elevation: equal area of the cap between the crown and the hairline
    sin_el = 1.0 - rho**2 * (1.0 - np.sin(hairline_elevation(azimuth)))
    cos_el = np.sqrt(np.clip(1.0 - sin_el**2, 0.0, 1.0))
    dirs = np.stack([cos_el * np.sin(azimuth), sin_el, cos_el * np.cos(azimuth)], -1)
    roots, normals = cast_to_skin(dirs.reshape(-1, 3), neutral_surface())
    disk = np.stack([rho * np.sin(theta), rho * np.cos(theta)], -1)
    return Scalp(roots.reshape(GRID, GRID, 3), normals.reshape(GRID, GRID, 3), disk, azimuth)


def cast_to_skin(
    dirs: np.ndarray, surface: HeadSurface, step: float = 0.25, start: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """First skin crossings of rays from SCALP_CENTRE along dirs (N, 3): roots (N, 3)
    ROOT_OFFSET out of the skin and their normals (N, 3). The skull is over ``start``
    (cm) and under 16 cm away from the centre in every direction."""
    t = np.arange(start, 16.0, step)  # (T,)
    pts = SCALP_CENTRE + dirs[:, None] * t[None, :, None]  # (N, T, 3)
    sd, _ = surface.query(pts.reshape(-1, 3), exact=True)
    sd = sd.reshape(len(dirs), len(t))
    first = np.maximum(np.argmax(sd >= 0.0, axis=1), 1)  # (N,) first sample outside
    lo, hi = sd[np.arange(len(dirs)), first - 1], sd[np.arange(len(dirs)), first]
    hit = t[first] - step * hi / np.maximum(hi - lo, 1e-9)
    roots = SCALP_CENTRE + dirs * hit[:, None]
    _, normals = surface.query(roots)
    return roots + ROOT_OFFSET * normals, normals
