"""Synthetic training data for the landmark encoder, made from the face model itself.

:class:`SyntheticLandmarks`: random identities (β ~ N(0, 1)), expressions (the emotions'
FACS patterns at random intensities, sparse random ARKit combinations, single shapes at
full weight, neutral), head poses (yaw ±50°, pitch ±30°, roll ±25°), perspective cameras
(25-70° vertical field of view, the face 15-80 % of the frame height, anywhere in it); the
landmarks are the mesh points under MediaPipe's canonical landmarks (the avatar
correspondence, ``engines/face/correspondence.py``) and the pupils on the eyeballs.
Noise (``scripts/measure_landmark_noise.py`` → ``engines/encoder/data/landmark_noise.npz``):
per-landmark jitter measured on the real tracker, scaled by a random factor; the residual
of a real portrait's landmarks after the model's best fit (a random one of 53, scaled
0.5-1.5, on 80 % of samples: contours that slide along the silhouette, iris centres off
the eyeball's front vertex); and a smooth random offset field.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from engines.emotion.facs import EMOTIONS, emotion_basis
from engines.encoder.config import EncoderConfig
from engines.encoder.network import DATA, N_MESH, N_POINTS
from engines.face.correspondence import load_ict_correspondence
from engines.face.ict import ICTFaceModel, eye_rotations
from engines.face.lbs import batch_rodrigues

NOISE_FILE = DATA / "landmark_noise.npz"


# -- synthetic training data -------------------------------------------------------------
class SyntheticLandmarks:
    """Random (β, ψ, θ, camera) → the 470 points in pixels, from the face model's linear
    bases restricted to the points (no full-mesh evaluation)."""

    def __init__(self, model: ICTFaceModel, noise: np.ndarray | None = None) -> None:
        corr = load_ict_correspondence()
        faces = model.topology.faces
        ids = corr.vertex_ids(faces)  # (468, 3)
        bary = torch.as_tensor(corr.bary, dtype=torch.float32)[None, :, :, None]

        def at_points(v: torch.Tensor) -> torch.Tensor:  # (K, V, 3) -> (K, 468, 3)
            return (v[:, ids] * bary).sum(2)

        def eye_rows(v: torch.Tensor, eye_ids: torch.Tensor, pupil: int) -> torch.Tensor:
            # (K, V, 3) -> (K, 2, 3): [the eye's vertex mean, its pupil vertex]
            return torch.stack([v[:, eye_ids].mean(1), v[:, pupil]], 1)

        n = model.neutral[None]
        pupils = [int(i[model.neutral[i, 2].argmax()]) for i in
                  (model.left_eye_ids, model.right_eye_ids)]

        def rows(v: torch.Tensor) -> torch.Tensor:  # (K, V, 3) -> (K, 472, 3)
            left = eye_rows(v, model.left_eye_ids, pupils[0])
            right = eye_rows(v, model.right_eye_ids, pupils[1])
            return torch.cat([at_points(v), right, left], 1)  # eyes: subject's right first

        with torch.no_grad():
            self.mean = rows(n)[0]  # (472, 3)
            self.shape_basis = rows(model.identity_dirs)  # (S, 472, 3)
            self.expr_basis = rows(model.expression_dirs)  # (E, 472, 3)
            hw = model.head_weights[None, :, None].expand(1, -1, 3)
            self.head_weights = rows(hw)[0, :, 0]  # (472,)
        self.eye_offsets = model.eye_offsets  # (2, 3) [left, right]
        self.pivot = model.neck_pivot
        self.names = model.expression_names
        self.index = {k: i for i, k in enumerate(self.names)}
        self.emotions = torch.from_numpy(emotion_basis(self.names))  # (6, E)
        sigma, residuals = load_noise() if noise is None else (noise, np.zeros((1, N_POINTS, 2)))
        self.noise = torch.as_tensor(sigma, dtype=torch.float32)  # (470,)
        self.residuals = torch.as_tensor(residuals, dtype=torch.float32)  # (R, 470, 2)

    def points(self, shape: torch.Tensor, expression: torch.Tensor,
               rotation: torch.Tensor) -> torch.Tensor:  # -> (B, 470, 3) cm, model frame
        p = (self.mean + torch.einsum("bs,spc->bpc", shape, self.shape_basis)
             + torch.einsum("be,epc->bpc", expression, self.expr_basis))  # (B, 472, 3)
        rot_l, rot_r = eye_rotations(expression, torch.zeros_like(rotation), self.index)
        eyes = []
        for k, rot, offset in ((N_MESH, rot_r, self.eye_offsets[1]),
                               (N_MESH + 2, rot_l, self.eye_offsets[0])):
            centre = p[:, k] + offset  # (B, 3)
            eyes.append(centre + torch.einsum("bij,bj->bi", rot, p[:, k + 1] - centre))
        p = torch.cat([p[:, :N_MESH], torch.stack(eyes, 1)], 1)  # (B, 470, 3)
        w = torch.cat([self.head_weights[:N_MESH], self.head_weights[[N_MESH + 1, N_MESH + 3]]])
        head = torch.einsum("bij,bpj->bpi", batch_rodrigues(rotation), p - self.pivot) + self.pivot
        return p + w[None, :, None] * (head - p)

    def expressions(self, b: int, gen: torch.Generator) -> torch.Tensor:  # (B, E)
        e = len(self.names)
        kind = torch.randint(0, 10, (b,), generator=gen)
        psi = torch.zeros(b, e)
        # 0-3: an emotion's pattern (sometimes two blended), 4-7: sparse random shapes,
        # 8: one shape at full weight, 9: neutral
        emo = torch.randint(0, len(EMOTIONS), (b, 2), generator=gen)
        amount = torch.rand(b, 2, generator=gen) * torch.tensor([1.0, 0.5])
        mix = self.emotions[emo[:, 0]] * amount[:, :1] + self.emotions[emo[:, 1]] * amount[:, 1:]
        psi = torch.where((kind < 4)[:, None], mix.clamp(0, 1), psi)
        sparse = (torch.rand(b, e, generator=gen) < 0.08) * torch.rand(b, e, generator=gen)
        psi = torch.where(((kind >= 4) & (kind < 8))[:, None], sparse, psi)
        one = torch.nn.functional.one_hot(torch.randint(0, e, (b,), generator=gen), e).float()
        psi = torch.where((kind == 8)[:, None], one, psi)
        # plus blinks and small random activity everywhere but neutral
        extra = (torch.rand(b, e, generator=gen) < 0.05) * 0.3 * torch.rand(b, e, generator=gen)
        return torch.where((kind == 9)[:, None], psi, (psi + extra).clamp(0, 1))

    def sample(self, b: int, gen: torch.Generator, cfg: EncoderConfig
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(points (B, 470, 2) px, ψ (B, E), rotation (B, 3)) with noise."""
        shape = torch.randn(b, self.shape_basis.shape[0], generator=gen)
        psi = self.expressions(b, gen)
        deg = torch.tensor([30.0, 50.0, 25.0])  # pitch, yaw, roll limits
        wide = torch.rand(b, 1, generator=gen) < 0.3  # most poses moderate
        euler = (torch.rand(b, 3, generator=gen) * 2 - 1) * deg * torch.where(wide, 1.0, 0.5)
        rotation = euler_to_axis_angle(torch.deg2rad(euler))
        p = self.points(shape, psi, rotation)  # (B, 470, 3) cm
        offsets = smooth_offsets(p, gen, cfg.offset_cm)
        p = p + offsets
        # camera on +z looking down -z; image x right = model +x, image y down = model -y
        height = torch.full((b,), 480.0)
        width = torch.where(torch.rand(b, generator=gen) < 0.5, 640.0, 480.0)
        fov = torch.deg2rad(25 + 45 * torch.rand(b, generator=gen))
        f = height / 2 / torch.tan(fov / 2)  # px
        frac = 0.15 + 0.65 * torch.rand(b, generator=gen)  # face height / frame height
        dist = (f * 20.0 / (frac * height)).clamp_min(30.0)  # a ~20 cm face spans frac
        cam = p - p[:, :N_MESH].mean(1, keepdim=True)  # about the face's centre
        z = dist[:, None] - cam[..., 2]  # (B, 470)
        u = f[:, None] * cam[..., 0] / z
        v = -f[:, None] * cam[..., 1] / z
        span = (1 - frac)[:, None] * 0.45  # where the face centre may sit in the frame
        cx = width[:, None] / 2 + (torch.rand(b, 1, generator=gen) * 2 - 1) * span * width[:, None]
        cy = height[:, None] / 2 + (torch.rand(b, 1, generator=gen) * 2 - 1) * span * 480.0
        px = torch.stack([u + cx, v + cy], -1)  # (B, 470, 2)
        # tracker jitter, measured in normalised units -> pixels via the face's RMS radius
        radius = (px[:, :N_MESH] - px[:, :N_MESH].mean(1, keepdim=True)).pow(2).sum(-1).mean(1)
        scale = cfg.noise_scale * (0.5 + 1.5 * torch.rand(b, 1, 1, generator=gen))
        jitter = torch.randn(px.shape, generator=gen) * self.noise[None, :, None] * scale
        # a real face's misfit to the model (measured on portraits), to 80 % of samples
        pick = torch.randint(0, len(self.residuals), (b,), generator=gen)
        amount = 0.5 + torch.rand(b, 1, 1, generator=gen)
        amount = amount * (torch.rand(b, 1, 1, generator=gen) < 0.8)
        px = px + (jitter + self.residuals[pick] * amount) * radius.sqrt()[:, None, None]
        return px, psi, rotation


def smooth_offsets(points: torch.Tensor, gen: torch.Generator, rms_cm: float) -> torch.Tensor:
    """A smooth random displacement field (a few random sinusoids over the face)."""
    b = points.shape[0]
    freq = torch.randn(b, 4, 3, generator=gen) * 0.25  # per cm
    phase = torch.rand(b, 4, 1, generator=gen) * 2 * math.pi
    amp = torch.randn(b, 4, 3, generator=gen) * rms_cm / 2
    waves = torch.sin(torch.einsum("bpc,bkc->bkp", points, freq) + phase)  # (B, 4, P)
    return torch.einsum("bkp,bkc->bpc", waves, amp)


def euler_to_axis_angle(pyr: torch.Tensor) -> torch.Tensor:  # (B, 3) pitch, yaw, roll
    """R = R_y(yaw) R_x(pitch) R_z(roll) as axis-angle (B, 3)."""
    z = torch.zeros_like(pyr[:, 0])
    rx = batch_rodrigues(torch.stack([pyr[:, 0], z, z], 1))
    ry = batch_rodrigues(torch.stack([z, pyr[:, 1], z], 1))
    rz = batch_rodrigues(torch.stack([z, z, pyr[:, 2]], 1))
    return matrix_to_axis_angle(ry @ rx @ rz)


def matrix_to_axis_angle(r: torch.Tensor) -> torch.Tensor:  # (B, 3, 3) -> (B, 3)
    cos = ((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    angle = torch.acos(cos)
    axis = torch.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0],
                        r[:, 1, 0] - r[:, 0, 1]], 1)
    sin2 = (2 * torch.sin(angle)).clamp_min(1e-8)
    return axis / sin2[:, None] * angle[:, None]


def load_noise(path: Path = NOISE_FILE) -> tuple[np.ndarray, np.ndarray]:
    """(per-point jitter σ (470,), real-face fit residuals (R, 470, 2)), normalised units
    (``scripts/measure_landmark_noise.py``)."""
    with np.load(path, allow_pickle=False) as d:
        sigma, residuals = d["sigma"].astype(np.float32), d["residuals"].astype(np.float32)
    if sigma.shape != (N_POINTS,) or residuals.shape[1:] != (N_POINTS, 2) \
            or not (np.isfinite(sigma).all() and np.isfinite(residuals).all()):
        raise ValueError(f"{path}: needs sigma ({N_POINTS},) and residuals (R, {N_POINTS}, 2)")
    return sigma, residuals
