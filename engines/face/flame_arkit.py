"""FLAME's head driven by ICT's parameters: ``--model flame`` everywhere ICT works.

The tracker, the ERM and the sliders speak ICT's language (53 ARKit weights, head and gaze
rotations). :class:`FlameArkitModel` keeps that interface and turns it into FLAME's: ψ
through the fitted :class:`~engines.face.arkit_to_flame.ArkitMap` (expression
coefficients, and the jaw rotation of the jaw shapes), the head rotation on FLAME's neck
joint (the base of the neck stays, as ICT's does), the gaze and the eyeLook shapes on its
eye joints (as ICT turns its eyes).
The map is fitted once per FLAME file and cached.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from scipy.optimize import lsq_linear

from engines.face.arkit_to_flame import ArkitMap, fit_arkit_map
from engines.face.flame import FlameModel
from engines.face.flame_landmarks import load_landmark_embedding
from engines.face.flame_texture import attach_flame_uvs
from engines.face.ict import ICTFaceModel, eye_rotations
from engines.face.lbs import matrix_to_axis_angle
from engines.face.model import FaceModel
from engines.files.assets import asset_path, sha256_file
from engines.files.disk_cache import cache_root, load_arrays, save_arrays
from engines.files.registered import FLAME_LANDMARKS, FLAME_MODEL

ARKIT_RIDGE = 1e-3  # arkit_from_flame's pull towards ψ = 0, relative to the largest shape
MAP_VERSION = "arkit-to-flame-v2"  # v2: per-shape motion in mm


class FlameArkitModel(FaceModel):
    """FLAME's mesh; ICT's 53 expression names and pose layout (head 3, gaze 3)."""

    name = "flame"
    units_in_metres = 1.0

    def __init__(self, flame: FlameModel, arkit: ArkitMap) -> None:
        super().__init__()
        if arkit.matrix.shape[0] > flame.n_expression:
            raise ValueError(f"the ARKit map has {arkit.matrix.shape[0]} FLAME expression rows; "
                             f"the model has {flame.n_expression}")
        self.flame = flame
        self.arkit = arkit
        self.n_shape = flame.n_shape
        self.expression_names = arkit.names
        self.n_expression = len(arkit.names)
        self.pose_names = ("head_rx", "head_ry", "head_rz", "gaze_rx", "gaze_ry", "gaze_rz")
        self.n_pose = 6
        self.topology = flame.topology
        lo, hi = flame.v_template.min(0).values, flame.v_template.max(0).values
        self.view_centre = tuple(float(c) for c in (lo + hi) / 2)  # the file's own framing
        self._idx = {n: i for i, n in enumerate(arkit.names)}
        self.register_buffer("arkit_matrix", torch.as_tensor(arkit.matrix))  # (E, 53)
        self.register_buffer("arkit_jaw", torch.as_tensor(arkit.jaw))  # (53, 3)
        self._basis: tuple[np.ndarray, np.ndarray] | None = None  # arkit_from_flame's

    @property
    def n_vertices(self) -> int:
        return self.flame.n_vertices

    def flame_parameters(  # (B, E), (B, 15)
        self, expression: torch.Tensor, pose: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """FLAME's expression coefficients and 15 joint rotations for ARKit ψ (B, <= 53)
        and (head, gaze) θ (B, 6)."""
        psi = torch.nn.functional.pad(expression, [0, self.n_expression - expression.shape[1]])
        exp = psi @ self.arkit_matrix.T  # (B, E)
        jaw = psi @ self.arkit_jaw  # (B, 3)
        left, right = eye_rotations(psi, pose[:, 3:6], self._idx)  # (B, 3, 3) each
        still = torch.zeros_like(jaw)  # the global joint: the shoulders stay, as ICT's do
        full = torch.cat([still, pose[:, :3], jaw, matrix_to_axis_angle(left),
                          matrix_to_axis_angle(right)], 1)  # (B, 15)
        return exp, full

    def prepare_identity(self, shape: torch.Tensor) -> torch.Tensor:  # (B, V, 3)
        return self.flame.prepare_identity(shape)

    @torch.no_grad()
    def arkit_from_flame(self, expression: np.ndarray, jaw: np.ndarray
                         ) -> tuple[np.ndarray, float]:
        """ARKit ψ (53,) in [0, 1] whose face (through the map) is closest to FLAME's face
        for ``expression`` (E',) coefficients and ``jaw`` (3,) axis-angle (e.g. DECA's
        reading of a photo), on the mean head: bounded least squares over every vertex's
        displacement, each ARKit shape's displacement taken at weight 1 (the jaw's turn
        linearised). Returns ψ and the relative error (0 exact, 1 no better than rest)."""
        basis, factor = self._arkit_basis()  # (53, V*3), (53, 53) lower
        zeros = torch.zeros(1, self.flame.n_shape)
        exp = torch.zeros(1, self.flame.n_expression)
        n = min(len(expression), self.flame.n_expression)
        exp[0, :n] = torch.as_tensor(np.asarray(expression[:n], np.float32))
        pose = torch.zeros(1, 15)
        pose[0, 6:9] = torch.as_tensor(np.asarray(jaw, np.float32))
        rest = self.flame(zeros, torch.zeros_like(exp), torch.zeros(1, 15))
        target = (self.flame(zeros, exp, pose) - rest).reshape(-1).numpy()  # (V*3,)
        # the same objective on the normal equations' Cholesky factor: 53 rows, not V*3
        # (|Bψ - t|² + r|ψ|² = |Lᵀψ - L⁻¹Bt|² + const, with LLᵀ = BBᵀ + r)
        rhs = np.linalg.solve(factor, basis @ target)
        psi = lsq_linear(factor.T, rhs, bounds=(0.0, 1.0)).x
        error = np.linalg.norm(basis.T @ psi - target) / max(np.linalg.norm(target), 1e-12)
        return psi.astype(np.float32), float(error)

    def _arkit_basis(self) -> tuple[np.ndarray, np.ndarray]:  # (53, V*3), (53, 53)
        """Each ARKit shape's displacement B of the mean head at weight 1, and the Cholesky
        factor of BBᵀ + ARKIT_RIDGE·max|B|²·I (made once)."""
        if self._basis is None:
            n = self.n_expression
            rest = self(torch.zeros(1, self.n_shape), torch.zeros(1, n), torch.zeros(1, 6))
            moved = self(torch.zeros(n, self.n_shape), torch.eye(n), torch.zeros(n, 6))
            basis = (moved - rest).reshape(n, -1).numpy().astype(np.float64)
            gram = basis @ basis.T + ARKIT_RIDGE * np.abs(basis).max() ** 2 * np.eye(n)
            self._basis = (basis, np.linalg.cholesky(gram))
        return self._basis

    def forward_prepared(  # (B, V, 3)
        self, prepared: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> torch.Tensor:
        exp, full = self.flame_parameters(expression.to(torch.float32), pose.to(torch.float32))
        return self.flame.forward_prepared(prepared, exp, full)


def load_flame_arkit(flame_path: str | os.PathLike[str] | None = None,
                     landmarks_path: str | os.PathLike[str] | None = None) -> FlameArkitModel:
    """FLAME (with every expression component its file has) driven by ARKit ψ; the map is
    read from the cache, or fitted (needs ICT and DECA's landmark embedding) and cached."""
    flame_file = FLAME_MODEL.find(flame_path)
    landmarks_file = FLAME_LANDMARKS.find(landmarks_path)
    flame = FlameModel(flame_file, n_expression=None)  # every component the file has
    ict_file = asset_path("ict_facekit")
    key = "-".join(sha256_file(f)[:16] for f in (flame_file, landmarks_file, ict_file))
    cached = cache_root() / MAP_VERSION / f"{key}.npz"
    arrays = load_arrays(cached)
    if arrays is not None:
        arkit = ArkitMap.from_arrays(arrays)
    else:
        embedding = load_landmark_embedding(landmarks_file)
        arkit = fit_arkit_map(ICTFaceModel(ict_file), flame, embedding)
        save_arrays(cached, **arkit.to_arrays())
    model = FlameArkitModel(flame, arkit)
    attach_flame_uvs(model)  # textured targets when DECA's UV template is there
    return model
