"""Identity from photos (MICA's role): fit shape β, expression ψ and head pose to
MediaPipe's 468 face-mesh landmarks.

Landmark positions are linear in β and ψ through the landmark correspondence
(``L = L0 + S β + E ψ``, :mod:`engines.face.correspondence`), so the fit is a small
regularised non-linear least-squares problem on the 2D reprojection: a pinhole camera
with a fixed field of view (``FitConfig.fov_y_deg``; principal point at the centre), a
rigid head transform per photo (axis-angle + translation), a robust soft-L1 loss
(iteratively reweighted, a few pixels' scale) and Gaussian priors: β ~ N(0, 1) (ICT's
identity components are scaled to unit variance) and a ridge on ψ ∈ [0, 1]; the prior
weights were tuned on the London Set for identity consistency (docs/ARCHITECTURE.md).
Solved by Levenberg-Marquardt with analytic Jacobians, ψ clamped to its box. Several
photos of one person share β and keep their own ψ and pose (:meth:`LandmarkFitter.fit`).

Camera convention inside the fit: OpenCV's (x right, y down, z forward). :class:`PhotoFit`
turns a fit into the renderer's OpenGL camera (:meth:`PhotoFit.camera`,
:meth:`PhotoFit.to_camera_space`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from engines.face.correspondence import N_MESH_LANDMARKS, Correspondence
from engines.face.model import FaceModel
from engines.render.camera import PerspectiveCamera

GL_FROM_CV = np.diag([1.0, -1.0, -1.0])


@dataclass
class FitConfig:
    fov_y_deg: float = 20.0  # assumed vertical field of view of the photo
    shape_prior: float = 10.0  # weight (px) of β ~ N(0, 1); tuned on the London Set
    expression_prior: float = 20.0  # weight (px) of the ridge on ψ
    robust_scale_px: float = 5.0  # soft-L1 scale (px at a 300 px tall face): outliers only
    max_iterations: int = 30
    n_shape: int = 100


@dataclass
class PhotoFit:
    """One photo's fit: the (shared) shape and this photo's expression and camera pose."""

    shape: np.ndarray  # (n_shape,)
    expression: np.ndarray  # (n_expression,)
    rotation: np.ndarray  # (3,) axis-angle, model -> OpenCV camera
    translation: np.ndarray  # (3,) model units, OpenCV camera
    focal_px: float
    width: int
    height: int
    residual_px: float  # mean landmark reprojection error
    landmarks_px: np.ndarray  # (468, 2) the photo's landmarks that were fitted

    def camera(self) -> PerspectiveCamera:
        """The photo's camera for the renderer: at the origin looking down -z; draw
        vertices passed through :meth:`to_camera_space`."""
        fov = math.degrees(2 * math.atan(self.height / 2 / self.focal_px))
        depth = float(self.translation[2])
        return PerspectiveCamera(
            fov_y_deg=fov, eye=(0, 0, 0), target=(0, 0, -1), near=depth * 0.2, far=depth * 5
        )

    def camera_matrix(self) -> np.ndarray:
        """(4, 4) taking the model frame into the OpenGL camera space of :meth:`camera`
        (what :meth:`to_camera_space` does to points; hair takes it as its transform)."""
        m = np.eye(4)
        m[:3, :3] = GL_FROM_CV @ cv2.Rodrigues(self.rotation.astype(np.float64))[0]
        m[:3, 3] = GL_FROM_CV @ self.translation
        return m

    def to_camera_space(self, vertices: np.ndarray) -> np.ndarray:  # (..., V, 3) -> same
        rot = cv2.Rodrigues(self.rotation.astype(np.float64))[0]
        cv = vertices @ rot.T + self.translation
        return cv @ GL_FROM_CV.T

    def project(self, vertices: np.ndarray) -> np.ndarray:  # (N, 3) -> (N, 2) pixels
        rot = cv2.Rodrigues(self.rotation.astype(np.float64))[0]
        cv = vertices @ rot.T + self.translation
        return self.focal_px * cv[:, :2] / cv[:, 2:] + [self.width / 2, self.height / 2]


class LandmarkFitter:
    """Holds the model's landmark bases; fits photos."""

    def __init__(
        self, model: FaceModel, corr: Correspondence, config: FitConfig | None = None
    ) -> None:
        self.config = cfg = config or FitConfig()
        self.model = model
        faces = model.topology.faces
        with torch.no_grad():
            identity = model.prepare_identity(torch.zeros(1, model.n_shape))[0].numpy()
        n_shape = min(cfg.n_shape, model.n_shape)
        self.n_shape, self.n_expr = n_shape, model.n_expression
        self.mean = corr.points(identity, faces)  # (468, 3)
        shape_dirs = getattr(model, "identity_dirs", None)
        expr_dirs = getattr(model, "expression_dirs", None)
        if shape_dirs is None or expr_dirs is None:
            raise TypeError(f"{model.name}: the landmark fit needs linear shape/expression bases")
        self.shape_basis = corr.points(shape_dirs[:n_shape].numpy(), faces)  # (S, 468, 3)
        self.expr_basis = corr.points(expr_dirs.numpy(), faces)  # (E, 468, 3)

    def landmarks(self, shape: np.ndarray, expression: np.ndarray) -> np.ndarray:  # (468, 3)
        return (
            self.mean
            + np.tensordot(shape, self.shape_basis, 1)
            + np.tensordot(expression, self.expr_basis, 1)
        )

    def fit(self, photos: list[tuple[np.ndarray, int, int]]) -> list[PhotoFit]:
        """Fit photos of one person: each (landmarks (≥468, 2 or 3) in pixels, width,
        height). Returns one :class:`PhotoFit` per photo, all with the same shape."""
        cfg = self.config
        if not photos:
            raise ValueError("no photos to fit")
        targets, focals, sizes = [], [], []
        for lms, w, h in photos:
            lms = np.asarray(lms, np.float64)
            if lms.ndim != 2 or lms.shape[0] < N_MESH_LANDMARKS or not np.isfinite(lms).all():
                raise ValueError("landmarks must be (>= 468, 2) finite pixel positions")
            targets.append(lms[:N_MESH_LANDMARKS, :2])
            focals.append(h / 2 / math.tan(math.radians(cfg.fov_y_deg) / 2))
            sizes.append((w, h))
        n_photo, ns, ne = len(photos), self.n_shape, self.n_expr
        x0 = [np.zeros(ns)]
        for tgt, f, (w, h) in zip(targets, focals, sizes, strict=True):
            x0.append(np.r_[self._initial_pose(tgt, f, w, h), np.zeros(ne)])
        x0 = np.concatenate(x0)
        lower = np.full_like(x0, -np.inf)
        upper = np.full_like(x0, np.inf)
        for k in range(n_photo):
            lo = ns + k * (6 + ne) + 6
            lower[lo : lo + ne], upper[lo : lo + ne] = 0.0, 1.0

        # face size in px normalises the robust scale across photo sizes
        scale = np.mean([np.ptp(t[:, 1]) for t in targets]) / 300.0
        problem = _Problem(self, targets, focals, sizes)
        x = levenberg_marquardt(
            problem, x0, lower, upper, cfg.robust_scale_px * scale, cfg.max_iterations
        )
        shape = x[:ns]
        fits = []
        for k, (tgt, f, (w, h)) in enumerate(zip(targets, focals, sizes, strict=True)):
            p = x[ns + k * (6 + ne) : ns + (k + 1) * (6 + ne)]
            fit = PhotoFit(
                shape.astype(np.float32), p[6:].astype(np.float32), p[:3], p[3:6], f, w, h,
                0.0, tgt,
            )
            fit.residual_px = float(
                np.linalg.norm(fit.project(self.landmarks(shape, p[6:])) - tgt, axis=1).mean()
            )
            fits.append(fit)
        return fits

    def _initial_pose(self, target: np.ndarray, f: float, w: int, h: int) -> np.ndarray:
        """Rotation and translation of the mean face by PnP (OpenCV camera)."""
        k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
        ok, rvec, tvec = cv2.solvePnP(self.mean, target, k, None, flags=cv2.SOLVEPNP_EPNP)
        if not ok or tvec[2, 0] <= 0:
            rvec = cv2.Rodrigues(np.diag([1.0, -1.0, -1.0]))[0]
            tvec = np.array([[0.0], [0.0], [f * 15.0 / max(np.ptp(target[:, 0]), 1.0)]])
        ok, rvec, tvec = cv2.solvePnP(
            self.mean, target, k, None, rvec, tvec, useExtrinsicGuess=True,
            flags=cv2.SOLVEPNP_ITERATIVE,
        )
        return np.r_[rvec.ravel(), tvec.ravel()]


def levenberg_marquardt(
    problem: _Problem, x: np.ndarray, lower: np.ndarray, upper: np.ndarray,
    robust_scale: float, max_iterations: int,
) -> np.ndarray:
    """Minimise the robust cost of ``problem`` from ``x`` within [lower, upper].

    Landmark residuals r get IRLS weights 1 / sqrt(1 + (r / s)²) (soft-L1); the prior
    rows keep weight 1.
    """

    def weights(r: np.ndarray) -> np.ndarray:
        w = 1.0 / np.sqrt(1.0 + (r / robust_scale) ** 2)
        w[~problem.data_rows] = 1.0
        return w

    def cost(r: np.ndarray) -> float:
        data = problem.data_rows
        soft = 2 * robust_scale**2 * (np.sqrt(1 + (r[data] / robust_scale) ** 2) - 1)
        return float(soft.sum() + (r[~data] ** 2).sum())

    r = problem.residuals(x)
    current, damping = cost(r), 1e-3
    for _ in range(max_iterations):
        jac = problem.jacobian(x)
        w = weights(r)
        jw = jac * w[:, None]
        hess, grad = jw.T @ jac, jw.T @ r
        improved = False
        for _ in range(8):
            a = hess + damping * (np.diag(np.diag(hess)) + np.eye(len(x)) * 1e-6)
            step = np.linalg.solve(a, -grad)
            x_new = np.clip(x + step, lower, upper)
            r_new = problem.residuals(x_new)
            new = cost(r_new)
            if new < current:
                improved = True
                break
            damping *= 4.0
        if not improved:
            break
        done = current - new < 1e-5 * current
        x, r, current, damping = x_new, r_new, new, max(damping / 3.0, 1e-7)
        if done:
            break
    return x


class _Problem:
    """Residuals and their Jacobian for :meth:`LandmarkFitter.fit`.

    x = [β (S), then per photo: axis-angle (3), translation (3), ψ (E)].
    """

    def __init__(self, fitter: LandmarkFitter, targets, focals, sizes) -> None:
        self.f = fitter
        self.targets, self.focals = targets, focals
        self.centres = [np.array([w / 2, h / 2]) for w, h in sizes]
        ns, ne, n = fitter.n_shape, fitter.n_expr, N_MESH_LANDMARKS
        rows = [np.zeros(ns, bool)]
        for _ in targets:
            rows += [np.ones(2 * n, bool), np.zeros(ne, bool)]
        self.data_rows = np.concatenate(rows)  # landmark rows (robust), not prior rows

    def _split(self, x: np.ndarray, k: int) -> np.ndarray:
        ns, ne = self.f.n_shape, self.f.n_expr
        return x[ns + k * (6 + ne) : ns + (k + 1) * (6 + ne)]

    def residuals(self, x: np.ndarray) -> np.ndarray:
        cfg, ns = self.f.config, self.f.n_shape
        out = [cfg.shape_prior * x[:ns]]
        for k in range(len(self.targets)):
            p = self._split(x, k)
            rot = cv2.Rodrigues(p[:3])[0]
            cam = self.f.landmarks(x[:ns], p[6:]) @ rot.T + p[3:6]  # (468, 3)
            px = self.focals[k] * cam[:, :2] / cam[:, 2:] + self.centres[k]
            out += [(px - self.targets[k]).ravel(), cfg.expression_prior * p[6:]]
        return np.concatenate(out)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        cfg, f = self.f.config, self.f
        ns, ne, n = f.n_shape, f.n_expr, N_MESH_LANDMARKS
        n_photo = len(self.targets)
        jac = np.zeros((ns + n_photo * (2 * n + ne), len(x)))
        jac[:ns, :ns] = cfg.shape_prior * np.eye(ns)
        row = ns
        for k in range(n_photo):
            p = self._split(x, k)
            col = ns + k * (6 + ne)
            rot, drot = cv2.Rodrigues(p[:3])  # drot (3, 9): d vec(R) / d r
            pts = f.landmarks(x[:ns], p[6:])  # (468, 3)
            cam = pts @ rot.T + p[3:6]
            z = cam[:, 2:]
            dpx = np.zeros((n, 2, 3))  # d pixel / d camera point
            dpx[:, 0, 0] = dpx[:, 1, 1] = self.focals[k] / z[:, 0]
            dpx[:, :, 2] = -self.focals[k] * cam[:, :2] / z**2
            dcam_dr = np.einsum("kij,nj->nik", drot.reshape(3, 3, 3), pts)  # (468, 3, 3)
            block = jac[row : row + 2 * n]
            block[:, col : col + 3] = np.einsum("nab,nbk->nak", dpx, dcam_dr).reshape(2 * n, 3)
            block[:, col + 3 : col + 6] = dpx.reshape(2 * n, 3)
            a = np.einsum("nab,bc->nac", dpx, rot)  # d pixel / d model point (468, 2, 3)
            block[:, :ns] = np.einsum("nac,snc->nas", a, f.shape_basis).reshape(2 * n, ns)
            block[:, col + 6 : col + 6 + ne] = np.einsum(
                "nac,enc->nae", a, f.expr_basis
            ).reshape(2 * n, ne)
            jac[row + 2 * n : row + 2 * n + ne, col + 6 : col + 6 + ne] = (
                cfg.expression_prior * np.eye(ne)
            )
            row += 2 * n + ne
        return jac
