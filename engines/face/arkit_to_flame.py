"""The ARKit -> FLAME expression map: each of ICT's 53 ARKit shapes as FLAME expression
coefficients (and, for the jaw shapes, a jaw rotation), fitted by least squares on the
face both models share, so a FLAME head can be driven by everything that drives ICT
(the tracker, the ERM, the sliders).

How it is fitted (:func:`fit_arkit_map`), on the mean identities:

1. FLAME's 51 inner landmarks (DECA's static embedding) are aligned to ICT's iBUG 17-67
   vertices by a similarity, then a thin-plate spline on the same pairs bends FLAME's
   neutral mesh onto ICT's proportions;
2. every FLAME vertex is projected to the closest point of ICT's face skin; those within
   ``max_distance_cm``, and not on FLAME's eyeballs, are the shared face;
3. per ARKit shape, ICT's displacement at those points (back in FLAME's frame and units)
   is the target: FLAME's expression basis fits it by ridge least squares; for
   ``jawOpen``, ``jawLeft`` and ``jawRight`` a jaw rotation (searched on a grid about
   the shape's axis) is fitted with it.

Its quality is ``residual``: per shape, |fitted - ICT displacement| / |ICT displacement|
over the shared face (0 = exact; 1 = no better than leaving the face still).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.interpolate import RBFInterpolator

from engines.face.correspondence import INNER_IBUG
from engines.face.flame import FlameModel
from engines.face.flame_landmarks import LandmarkEmbedding, points_on_faces
from engines.face.ict import ICTFaceModel
from engines.geometry.alignment import rigid_align
from engines.geometry.closest_point import MeshProximity

ICT_FACE_MATERIALS = ("M_Face",)
EYE_JOINTS = (3, 4)
JAW_AXES = {"jawOpen": 0, "jawLeft": 1, "jawRight": 1}  # rotation about FLAME's x / y
JAW_GRID = np.linspace(-0.5, 0.5, 101)  # radians searched per jaw shape


@dataclass(frozen=True)
class ArkitMap:
    """ψ_flame = ``matrix`` @ ψ_arkit; jaw axis-angle = ``jaw``.T @ ψ_arkit."""

    names: tuple[str, ...]  # ICT's ARKit names, the columns
    matrix: np.ndarray  # (n_flame_expression, 53)
    jaw: np.ndarray  # (53, 3) jaw axis-angle per unit weight; 0 except the jaw shapes
    residual: np.ndarray  # (53,) relative error of the fit on the shared face
    n_points: int  # how many FLAME vertices the fit used
    motion_mm: np.ndarray  # (53,) RMS of ICT's displacement over the shared face, mm

    @property
    def error_mm(self) -> np.ndarray:  # (53,) RMS of the fit's error, mm
        return self.residual * self.motion_mm

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"names": np.array(self.names), "matrix": self.matrix, "jaw": self.jaw,
                "residual": self.residual, "n_points": np.array(self.n_points),
                "motion_mm": self.motion_mm}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> ArkitMap:
        return cls(tuple(str(n) for n in d["names"]), d["matrix"], d["jaw"], d["residual"],
                   int(d["n_points"]), d["motion_mm"])


@dataclass(frozen=True)
class SharedFace:
    """FLAME vertices on ICT's face skin and where on it, with the similarity between."""

    vertex_ids: np.ndarray  # (N,) FLAME vertex ids
    triangles: np.ndarray  # (N,) ICT triangle ids
    bary: np.ndarray  # (N, 3) barycentric weights in them
    scale: float  # ICT units per FLAME unit
    rotation: np.ndarray  # (3, 3) FLAME -> ICT axes


def shared_face(ict: ICTFaceModel, flame: FlameModel, emb: LandmarkEmbedding,
                max_distance_cm: float = 0.8) -> SharedFace:
    """Steps 1 and 2 of the module docstring."""
    ict_v = ict.neutral.numpy().astype(np.float64)  # (V_ict, 3) cm
    faces_f = torch.as_tensor(flame.topology.faces, dtype=torch.long)
    flame_v = flame.v_template[None].double()  # (1, V, 3) m
    lm = points_on_faces(flame_v, faces_f, emb.static_faces[None],
                         emb.static_bary[None].double())[0].numpy()  # (51, 3)
    dst = ict_v[ict.topology.landmark_vertex_ids[INNER_IBUG]]  # (51, 3)
    s, rot, t = rigid_align(lm, dst, with_scale=True)
    aligned = flame_v[0].numpy() @ (s * rot).T + t  # (V, 3) in ICT's frame
    lm_aligned = lm @ (s * rot).T + t
    warp = RBFInterpolator(lm_aligned, dst - lm_aligned, kernel="thin_plate_spline",
                           smoothing=1.0)
    warped = aligned + warp(aligned)
    tri_ids = ict.topology.face_ids(ICT_FACE_MATERIALS)
    _, dist, local, bary = MeshProximity(ict_v, ict.topology.faces[tri_ids]).query(warped)
    on_eyes = flame.lbs_weights.numpy()[:, list(EYE_JOINTS)].sum(1) > 0.5
    keep = np.nonzero((dist < max_distance_cm) & ~on_eyes)[0]
    if len(keep) < 100:
        raise ValueError(
            f"only {len(keep)} FLAME vertices lie on ICT's face after alignment: the FLAME "
            "file and its landmark embedding do not seem to belong together"
        )
    return SharedFace(keep, tri_ids[local[keep]], bary[keep], s, rot)


def ict_displacements(ict: ICTFaceModel, face: SharedFace) -> np.ndarray:  # (53, N, 3)
    """ICT's unit-weight displacement of every ARKit shape at the shared points, in FLAME's
    frame and units. Eye rotations of the eyeLook shapes are not displacements of the skin
    and are left to FLAME's eye joints."""
    corners = ict.topology.faces[face.triangles]  # (N, 3)
    dirs = ict.expression_dirs.numpy()[:, corners]  # (53, N, 3, 3)
    d = (dirs * face.bary[None, :, :, None]).sum(2)  # (53, N, 3) ICT frame, cm
    return d @ face.rotation / face.scale  # R^T d / s, row vectors


def jaw_displacements(flame: FlameModel, vertex_ids: np.ndarray, axis: int) -> np.ndarray:
    """(G, N, 3): FLAME's mean face with the jaw turned by each angle of ``JAW_GRID``."""
    g = len(JAW_GRID)
    pose = torch.zeros(g, flame.n_pose)
    pose[:, 6 + axis] = torch.as_tensor(JAW_GRID, dtype=torch.float32)
    with torch.no_grad():
        moved = flame(torch.zeros(g, 1), torch.zeros(g, 1), pose)  # (G, V, 3)
    rest = flame.v_template[None]
    return (moved - rest)[:, vertex_ids].double().numpy()


def fit_arkit_map(ict: ICTFaceModel, flame: FlameModel, emb: LandmarkEmbedding,
                  ridge: float = 1e-4) -> ArkitMap:
    """Step 3 of the module docstring, on the shared face of steps 1 and 2."""
    face = shared_face(ict, flame, emb)
    target = ict_displacements(ict, face).reshape(ict.n_expression, -1)  # (53, N*3)
    basis = flame.exprdirs[:, face.vertex_ids].double().numpy().reshape(flame.n_expression, -1).T
    gram = basis.T @ basis  # (E, E)
    lam = ridge * np.trace(gram) / len(gram)
    solve = np.linalg.solve(gram + lam * np.eye(len(gram)), basis.T)  # (E, N*3)

    def fit(d: np.ndarray) -> tuple[np.ndarray, float]:
        psi = solve @ d
        return psi, float(np.linalg.norm(basis @ psi - d))

    matrix = np.zeros((flame.n_expression, ict.n_expression))
    jaw = np.zeros((ict.n_expression, 3))
    residual = np.zeros(ict.n_expression)
    for k, name in enumerate(ict.expression_names):
        d = target[k]
        matrix[:, k], err = fit(d)
        if name in JAW_AXES:
            turned = jaw_displacements(flame, face.vertex_ids, JAW_AXES[name])
            errors = [fit(d - j.ravel())[1] for j in turned]
            best = int(np.argmin(errors))
            if errors[best] < err:
                matrix[:, k], err = fit(d - turned[best].ravel())
                jaw[k, JAW_AXES[name]] = JAW_GRID[best]
        residual[k] = err / max(float(np.linalg.norm(d)), 1e-12)
    motion = np.sqrt((target.reshape(ict.n_expression, -1, 3) ** 2).sum(2).mean(1))
    mm = 1000.0 * flame.units_in_metres
    return ArkitMap(ict.expression_names, matrix.astype(np.float32), jaw.astype(np.float32),
                    residual.astype(np.float32), len(face.vertex_ids),
                    (motion * mm).astype(np.float32))
