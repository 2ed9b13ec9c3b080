"""The NoW-style mesh metric on hand-made cases with exact answers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.evaluation.mesh_accuracy import NOW_IBUG, scan_to_mesh
from engines.face.correspondence import SKIN_MATERIALS
from engines.geometry.alignment import rigid_align


@pytest.fixture(scope="module")
def face(ict):
    v = ict.neutral.numpy().astype(np.float64)
    faces = ict.topology.faces[ict.topology.face_ids(SKIN_MATERIALS)]
    lms = v[ict.topology.landmark_vertex_ids[NOW_IBUG]]
    return v, faces, lms


def centroids_and_normals(v: np.ndarray, faces: np.ndarray):
    tri = v[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return tri.mean(1), n / np.linalg.norm(n, axis=1, keepdims=True)


def test_a_mesh_against_itself_is_zero(face) -> None:
    v, faces, lms = face
    scan = v[np.unique(faces)]
    err = scan_to_mesh(scan, lms, v, faces, lms)
    assert err.mean_mm < 1e-6 and err.std_mm < 1e-6


def test_a_known_offset_is_that_offset(face) -> None:
    """Scan points 1.5 mm off the surface along its normals (triangle interiors, where
    point-to-vertex distance would be larger) measure 1.5 mm."""
    v, faces, lms = face
    c, n = centroids_and_normals(v, faces)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(c), 2000, replace=False)
    scan = c[pick] + 0.15 * n[pick]  # cm
    err = scan_to_mesh(scan, lms, v, faces, lms)
    assert abs(err.median_mm - 1.5) < 0.02
    assert err.distances_mm.max() <= 1.5 + 1e-3  # never farther than the known triangle


def test_alignment_recovers_a_known_rigid_transform(face) -> None:
    v, faces, lms = face
    rot = cv2.Rodrigues(np.array([0.3, -0.5, 0.2]))[0]
    t = np.array([5.0, -3.0, 20.0])
    scan = v[np.unique(faces)] @ rot.T + t
    err = scan_to_mesh(scan, lms @ rot.T + t, v, faces, lms)
    assert err.mean_mm < 1e-5
    s, r, tt = rigid_align(lms, lms @ rot.T + t)
    assert s == 1.0 and np.allclose(r, rot) and np.allclose(tt, t)
    s, _, _ = rigid_align(lms, 1.1 * lms, with_scale=True)
    assert s == pytest.approx(1.1)


def test_point_to_triangle_not_point_to_vertex(face) -> None:
    """On-surface points inside triangles are at distance 0, though no vertex is there."""
    v, faces, lms = face
    c, _ = centroids_and_normals(v, faces)
    err = scan_to_mesh(c, lms, v, faces, lms)
    nearest_vertex = np.linalg.norm(c - v[faces[:, 0]], axis=1).mean() * 10
    assert err.mean_mm < 1e-6 < nearest_vertex
