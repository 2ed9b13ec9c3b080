"""Closest points on a triangle mesh (point-to-triangle, not point-to-vertex), in numpy.

Candidates for each query are the triangles around its ``k`` nearest vertices (a
KD-tree); the exact closest point on each candidate follows Ericson, *Real-Time Collision
Detection*, 5.1.5. Exact whenever the closest triangle touches one of those vertices,
which holds for meshes whose triangles are small next to the query's distance spread.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Closest points (N, 3) on triangles (a, b, c) (N, 3 each) to points p (N, 3), and
    their barycentric weights (N, 3)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    eps = 1e-20
    denom = va + vb + vc
    v = vb / np.where(np.abs(denom) < eps, eps, denom)
    w = vc / np.where(np.abs(denom) < eps, eps, denom)
    bary = np.stack([1 - v - w, v, w], 1)  # inside the face
    # edge and vertex regions, from the least to the most specific (later ones win)
    t_ab = d1 / np.where(np.abs(d1 - d3) < eps, eps, d1 - d3)
    t_ac = d2 / np.where(np.abs(d2 - d6) < eps, eps, d2 - d6)
    denom_bc = (d4 - d3) + (d5 - d6)
    t_bc = (d4 - d3) / np.where(np.abs(denom_bc) < eps, eps, denom_bc)
    regions = [
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), np.stack([0 * t_bc, 1 - t_bc, t_bc], 1)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - t_ac, 0 * t_ac, t_ac], 1)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - t_ab, t_ab, 0 * t_ab], 1)),
        ((d6 >= 0) & (d5 <= d6), np.tile([0.0, 0.0, 1.0], (len(p), 1))),
        ((d3 >= 0) & (d4 <= d3), np.tile([0.0, 1.0, 0.0], (len(p), 1))),
        ((d1 <= 0) & (d2 <= 0), np.tile([1.0, 0.0, 0.0], (len(p), 1))),
    ]
    for mask, weights in regions:
        bary[mask] = weights[mask]
    point = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
    return point, bary


class MeshProximity:
    """Closest-point queries against a fixed triangle mesh (vertices (V, 3), faces (F, 3))."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, k: int = 8) -> None:
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        used = np.unique(self.faces)
        self._tree = cKDTree(self.vertices[used])
        self._used = used
        # vertex -> incident faces, as a padded table (V, max_degree), -1 = none
        order = np.argsort(self.faces.ravel(), kind="stable")
        vid = self.faces.ravel()[order]
        counts = np.bincount(vid, minlength=len(self.vertices))
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        table = np.full((len(self.vertices), max(int(counts.max()), 1)), -1, np.int64)
        slot = np.arange(len(vid)) - starts[vid]
        table[vid, slot] = order // 3
        self._incident = table
        self.k = min(k, len(used))

    def query(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For points (N, 3): closest points (N, 3), distances (N,), face ids (N,) and
        barycentric weights (N, 3)."""
        p = np.asarray(points, np.float64).reshape(-1, 3)
        _, near = self._tree.query(p, k=self.k)
        near = self._used[np.asarray(near).reshape(len(p), -1)]  # (N, k)
        cand = self._incident[near].reshape(len(p), -1)  # (N, k * degree)
        valid = cand >= 0
        cand_safe = np.where(valid, cand, 0)
        n, m = cand.shape
        tri = self.vertices[self.faces[cand_safe.ravel()]]  # (N*m, 3, 3)
        q = np.repeat(p, m, axis=0)
        closest, bary = closest_on_triangles(q, tri[:, 0], tri[:, 1], tri[:, 2])
        d = np.linalg.norm(closest - q, axis=1).reshape(n, m)
        d[~valid] = np.inf
        best = d.argmin(1)
        rows = np.arange(n) * m + best
        return closest[rows], d[np.arange(n), best], cand_safe[np.arange(n), best], bary[rows]
