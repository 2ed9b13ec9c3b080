"""The "fit" reader: ψ and the head rotation solved per frame so that the face model's
landmarks match MediaPipe's 468 3D mesh landmarks.

The model's landmarks are linear in identity and expression: L = L0 + S β + E ψ (the
MediaPipe↔ICT correspondence, restricted bases precomputed once). Per frame, alternating
twice: a similarity (Umeyama) from the model's landmarks to the observed ones, on the
quarter of the landmarks that expressions move least, gives scale, head rotation and
translation; then ψ solves a bounded least squares on all of them, ψ ∈ [0, 1], with a
small ridge (sparsity towards neutral) and a temporal prior towards the previous frame's
ψ (warm start). The person's own identity β is estimated jointly over the first
``identity_frames`` frames with a face and then held, so the expression does not have to
explain the face's shape.

Observed landmarks: MediaPipe's normalised (x, y, z) times (width, height, width) in
pixels; image x right, y down, z away from the camera, turned into the model's axes (x to
the subject's left, y up, z out of the face) by negating y and z. Weak perspective: the
similarity ignores perspective foreshortening, which at webcam distances is small next to
the expression's own motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
from scipy.optimize import lsq_linear

from engines.encoder.synthetic import SyntheticLandmarks
from engines.face.ict import ICTFaceModel
from engines.geometry.alignment import rigid_align

N_MESH = 468
FLIP = np.array([1.0, -1.0, -1.0])  # image axes (x right, y down, z away) -> model axes
RIGID_SHARE = 0.25  # the landmarks that expressions move least, for the pose
IDENTITY_BOUND = 4.0  # |β| per component while the identity is estimated (β ~ N(0, 1))


@dataclass(frozen=True)
class FitConfig:
    ridge: float = 0.02  # pulls unused shapes to 0, per unit of ψ² against cm² residuals
    temporal: float = 0.05  # pulls ψ towards the previous frame's
    identity_prior: float = 0.05  # β ~ N(0, 1) while the identity is estimated
    identity_frames: int = 15  # frames with a face that the identity is estimated over
    iterations: int = 2  # pose <-> ψ alternations per frame


@cache
def ict_landmark_bases() -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """(L0 (468, 3) cm, S (468*3, n_shape), E (468*3, n_expression), expression names) of
    the ICT head at MediaPipe's mesh landmarks; made once per process."""
    model = ICTFaceModel()
    basis = SyntheticLandmarks(model, noise=np.zeros(N_MESH + 2))
    mean = basis.mean[:N_MESH].double().numpy()
    shape = basis.shape_basis[:, :N_MESH].double().numpy().reshape(model.n_shape, -1).T
    expr = basis.expr_basis[:, :N_MESH].double().numpy().reshape(model.n_expression, -1).T
    return mean, shape, expr, model.expression_names


class LandmarkFitReader:
    """One stream's solver: (landmarks, width, height) -> (ψ (E,), rotation (3,)), in the
    ICT head's expression order."""

    def __init__(self, expression_names: tuple[str, ...], config: FitConfig | None = None
                 ) -> None:
        self.config = config or FitConfig()
        self.mean, self.shape_basis, self.expr_basis, names = ict_landmark_bases()
        if tuple(expression_names) != names:
            raise ValueError("the fit reader solves for the ICT head's expressions")
        self.n_expression = self.expr_basis.shape[1]
        # the pose is fitted on the landmarks that expressions barely move (forehead, nose
        # bridge, temples), so an open jaw or a smile is not read as a head turn
        moves = np.linalg.norm(self.expr_basis.reshape(N_MESH, 3, -1), axis=1).max(1)  # (468,)
        self.rigid = moves <= np.quantile(moves, RIGID_SHARE)
        # the normal equations' matrices, factored once (the data term changes per frame)
        cfg, e, s = self.config, self.expr_basis, self.shape_basis
        self._expr_factor = np.linalg.cholesky(
            e.T @ e + (cfg.ridge + cfg.temporal) * np.eye(e.shape[1]))
        joint = np.hstack([s, e])
        prior = np.concatenate([np.full(s.shape[1], cfg.identity_prior),
                                np.full(e.shape[1], cfg.ridge)])
        self._joint_factor = np.linalg.cholesky(joint.T @ joint + np.diag(prior))
        self.psi = np.zeros(self.n_expression)
        self.beta = np.zeros(self.shape_basis.shape[1])
        self._betas: list[np.ndarray] = []  # per-frame estimates while the identity is open
        # where this person's landmarks sit apart from anything the model can make (the
        # tracker's own habits around lips, lids and contour), measured on the same frames
        self.offset = np.zeros(self.expr_basis.shape[0])
        self._offsets: list[np.ndarray] = []

    @property
    def identity_settled(self) -> bool:
        return len(self._betas) >= self.config.identity_frames

    def __call__(self, landmarks: np.ndarray, width: int, height: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        observed = observed_points(landmarks, width, height)  # (468, 3) px, model axes
        if not np.isfinite(observed).all() or np.ptp(observed[:, :2], axis=0).min() < 1e-3:
            return self.psi.copy(), np.zeros(3)  # degenerate: keep the last expression
        psi, beta = self.psi, self.beta
        for _ in range(self.config.iterations):
            delta = self.shape_basis @ beta + self.expr_basis @ psi  # (468*3,)
            model_pts = self.mean + delta.reshape(-1, 3)
            scale, rot, trans = rigid_align(model_pts[self.rigid], observed[self.rigid],
                                            with_scale=True)
            target = ((observed - trans) @ rot) / scale  # (468, 3) cm, in the model's frame
            residual = (target - self.mean).reshape(-1)  # (468*3,)
            if self.identity_settled:
                psi = self._solve_expression(residual - self.shape_basis @ beta - self.offset)
            else:
                beta, psi = self._solve_identity_and_expression(residual)
        if not self.identity_settled:
            self._betas.append(beta)
            self._offsets.append(residual - self.shape_basis @ beta - self.expr_basis @ psi)
            self.beta = np.mean(self._betas, axis=0)
            self.offset = np.mean(self._offsets, axis=0)
        self.psi = psi
        return psi.copy(), cv2.Rodrigues(rot)[0].ravel()

    def _solve_expression(self, residual: np.ndarray) -> np.ndarray:
        """argmin ||E ψ - r||² + ridge ||ψ||² + temporal ||ψ - ψ_prev||², ψ ∈ [0, 1]."""
        cfg = self.config
        linear = self.expr_basis.T @ residual + cfg.temporal * self.psi  # (E,)
        return box_least_squares(self._expr_factor, linear, 0.0, 1.0)

    def _solve_identity_and_expression(self, residual: np.ndarray
                                       ) -> tuple[np.ndarray, np.ndarray]:
        """β (N(0, 1) prior) and ψ (in [0, 1]) together, for the first frames."""
        s = self.shape_basis.shape[1]
        linear = np.concatenate([self.shape_basis.T @ residual, self.expr_basis.T @ residual])
        lower = np.concatenate([np.full(s, -IDENTITY_BOUND), np.zeros(self.n_expression)])
        upper = np.concatenate([np.full(s, IDENTITY_BOUND), np.ones(self.n_expression)])
        x = box_least_squares(self._joint_factor, linear, lower, upper)
        return x[:s], x[s:]


def box_least_squares(factor: np.ndarray, linear: np.ndarray, lower, upper) -> np.ndarray:
    """argmin x'Qx - 2 c'x within bounds, for Q = L L' given as L (Cholesky): the same as
    ||L' x - L⁻¹ c||², a small dense problem (the unknowns, not the landmark rows)."""
    target = np.linalg.solve(factor, linear)
    x = lsq_linear(factor.T, target, bounds=(lower, upper), method="bvls").x
    return np.clip(x, lower, upper)


def observed_points(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's (478, 3) normalised landmarks -> the 468 mesh points (468, 3) in pixels,
    in the model's axes."""
    pts = np.asarray(landmarks, np.float64)[:N_MESH, :3] * np.array([width, height, width])
    return pts * FLIP
