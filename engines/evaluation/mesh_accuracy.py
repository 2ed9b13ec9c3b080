"""Mesh accuracy NoW-style: align a reconstructed mesh to a scan on 7 landmarks, then the
scan-to-mesh distance (point to triangle, not point to vertex).

Landmarks, as in the NoW benchmark: the four eye corners, the nose tip and the two mouth
corners (iBUG-68 points 36, 39, 42, 45, 30, 48, 54). The alignment is rigid (rotation and
translation; ``with_scale=True`` adds a uniform scale for methods whose output scale is
arbitrary). Distances are reported in millimetres (``units_in_mm``: 10 for ICT's cm,
1000 for FLAME's m).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.geometry.alignment import rigid_align
from engines.geometry.closest_point import MeshProximity

NOW_IBUG = np.array([36, 39, 42, 45, 30, 48, 54])  # eye corners, nose tip, mouth corners


@dataclass(frozen=True)
class MeshErrors:
    mean_mm: float
    median_mm: float
    std_mm: float
    distances_mm: np.ndarray  # (N,) per scan point
    landmark_rms_mm: float  # the landmarks' RMS distance after the alignment

    def row(self) -> dict[str, float]:
        return {"mean_mm": self.mean_mm, "median_mm": self.median_mm, "std_mm": self.std_mm}


def scan_to_mesh(
    scan_points: np.ndarray,  # (N, 3)
    scan_landmarks: np.ndarray,  # (7, 3) in NOW_IBUG order
    mesh_vertices: np.ndarray,  # (V, 3)
    mesh_faces: np.ndarray,  # (F, 3) the region to measure against (e.g. the face)
    mesh_landmarks: np.ndarray,  # (7, 3)
    units_in_mm: float = 10.0,
    with_scale: bool = False,
) -> MeshErrors:
    """Align the mesh to the scan on the landmarks, then each scan point's distance to the
    closest point on the mesh's triangles."""
    s, rot, t = rigid_align(mesh_landmarks, scan_landmarks, with_scale)
    aligned = s * np.asarray(mesh_vertices, np.float64) @ rot.T + t
    _, dist, _, _ = MeshProximity(aligned, mesh_faces).query(scan_points)
    d = dist * units_in_mm
    lms = s * np.asarray(mesh_landmarks, np.float64) @ rot.T + t
    rms = float(np.sqrt(((lms - scan_landmarks) ** 2).sum(1).mean())) * units_in_mm
    return MeshErrors(float(d.mean()), float(np.median(d)), float(d.std()), d, rms)
