"""Where MediaPipe's face-mesh landmarks lie on a face model's surface.

A correspondence is, per MediaPipe landmark, a triangle of the model's mesh and
barycentric weights in it, so landmark positions follow any identity and expression:
``points = (vertices[faces[tri]] * bary[..., None]).sum(1)``.

How the ICT one is made (:func:`build_ict_correspondence`, run by
``scripts/make_landmark_correspondence.py``, stored in ``engines/face/data/``):

1. MediaPipe's canonical face mesh (468 vertices in landmark order, cm) is aligned to the
   ICT neutral head by a similarity (Umeyama) on the 51 inner iBUG-68 points both have
   (brows, nose, eyes, lips; the jaw line is left out: iBUG's jaw points are 2D
   silhouette points, not fixed vertices);
2. a thin-plate-spline warp fitted on the same 51 pairs bends the aligned canonical mesh
   onto ICT's proportions (non-rigid refinement);
3. each warped vertex is projected to the closest point of ICT's skin surface.

The 10 iris landmarks (468-477) have no skin position and get none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import RBFInterpolator

from engines.face.model import MeshTopology
from engines.files.assets import asset_path
from engines.geometry.alignment import rigid_align
from engines.geometry.closest_point import MeshProximity

DATA_DIR = Path(__file__).parent / "data"
ICT_FILE = DATA_DIR / "mediapipe_to_ict.npz"
N_MESH_LANDMARKS = 468

# MediaPipe landmark index for each iBUG-68 point (the widely used mapping); iBUG's
# 36 is the subject's right eye's outer corner, like MediaPipe's 33
MEDIAPIPE_IBUG68 = np.array(
    [127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
     70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
     168, 197, 5, 4, 75, 97, 2, 326, 305,
     33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
     61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
     78, 82, 13, 312, 308, 317, 14, 87]
)  # fmt: skip
INNER_IBUG = np.arange(17, 68)  # the points that are fixed vertices on both meshes
SKIN_MATERIALS = ("M_Face",)


@dataclass(frozen=True)
class Correspondence:
    """Landmark ``i`` (< 468) lies in triangle ``triangles[i]`` with weights ``bary[i]``."""

    triangles: np.ndarray  # (468,) int64 triangle ids into the model's faces
    bary: np.ndarray  # (468, 3) float32 barycentric weights, rows sum to 1
    n_vertices: int  # the model's vertex count (a check when loading)

    def vertex_ids(self, faces: np.ndarray) -> np.ndarray:  # (468, 3)
        return faces[self.triangles]

    def points(self, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:  # (..., 468, 3)
        """Landmark positions on posed vertices (..., V, 3)."""
        corners = vertices[..., self.vertex_ids(faces), :]  # (..., 468, 3, 3)
        return (corners * self.bary[:, :, None]).sum(-2)

    def basis(self, faces: np.ndarray, n_vertices: int) -> np.ndarray:
        """The linear map (468, V) from vertices to landmarks (dense; V small enough)."""
        w = np.zeros((N_MESH_LANDMARKS, n_vertices), np.float32)
        rows = np.repeat(np.arange(N_MESH_LANDMARKS), 3)
        np.add.at(w, (rows, self.vertex_ids(faces).ravel()), self.bary.ravel())
        return w


def read_obj_vertices(path: str | Path) -> np.ndarray:  # (N, 3)
    rows = [ln.split()[1:4] for ln in Path(path).read_text().splitlines() if ln.startswith("v ")]
    return np.asarray(rows, np.float64)


def build_ict_correspondence(
    neutral: np.ndarray, topology: MeshTopology, canonical: np.ndarray
) -> tuple[Correspondence, dict[str, float]]:
    """The correspondence and its residuals (cm) on the ICT neutral head (V, 3)."""
    ict_ibug = neutral[topology.landmark_vertex_ids]  # (68, 3)
    src, dst = canonical[MEDIAPIPE_IBUG68[INNER_IBUG]], ict_ibug[INNER_IBUG]
    s, rot, t = rigid_align(src, dst, with_scale=True)
    aligned = canonical @ (s * rot).T + t  # (468, 3)
    rigid_res = np.linalg.norm(aligned[MEDIAPIPE_IBUG68[INNER_IBUG]] - dst, axis=1)
    warp = RBFInterpolator(
        aligned[MEDIAPIPE_IBUG68[INNER_IBUG]], dst - aligned[MEDIAPIPE_IBUG68[INNER_IBUG]],
        kernel="thin_plate_spline", smoothing=1.0,
    )
    warped = aligned + warp(aligned)

    tri_ids = topology.face_ids(SKIN_MATERIALS)
    _, dist, local_tri, bary = MeshProximity(neutral, topology.faces[tri_ids]).query(warped)
    corr = Correspondence(tri_ids[local_tri].astype(np.int64), bary.astype(np.float32),
                          len(neutral))
    on_mesh = corr.points(neutral, topology.faces)
    final_res = np.linalg.norm(on_mesh[MEDIAPIPE_IBUG68[INNER_IBUG]] - dst, axis=1)
    stats = {
        "similarity_scale": s,
        "rigid_residual_mean_cm": float(rigid_res.mean()),
        "rigid_residual_max_cm": float(rigid_res.max()),
        "projection_distance_mean_cm": float(dist.mean()),
        "final_ibug_residual_mean_cm": float(final_res.mean()),
        "final_ibug_residual_max_cm": float(final_res.max()),
    }
    return corr, stats


def save_correspondence(corr: Correspondence, path: Path = ICT_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path, triangles=corr.triangles.astype(np.int32), bary=corr.bary,
        n_vertices=np.int64(corr.n_vertices),
    )


def load_ict_correspondence(path: Path = ICT_FILE) -> Correspondence:
    """The stored MediaPipe -> ICT correspondence (made by the script named above)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run `python scripts/make_landmark_correspondence.py`"
        )
    with np.load(path) as data:
        return Correspondence(
            data["triangles"].astype(np.int64), data["bary"].astype(np.float32),
            int(data["n_vertices"]),
        )


def canonical_face_vertices() -> np.ndarray:  # (468, 3) cm
    return read_obj_vertices(asset_path("canonical_face_model"))
