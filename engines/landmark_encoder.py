"""The project's own expression/pose encoder: MediaPipe landmarks → the face model's ψ, θ.

Input: the tracker's 468 mesh landmarks and the two iris centres (MediaPipe 468: the
subject's right iris, 473: the left), in pixels (x right, y down), normalised by
:func:`normalise` (centred on the mesh landmarks' mean, divided by their RMS radius; not
rotated, so the head pose stays readable). Output: ψ (n_expression, clamped to [0, 1])
and the head rotation (3, axis-angle, radians; the model's axes: x to the subject's left,
y up, z out of the face).

Trained on synthetic landmarks made from the face model itself
(:class:`SyntheticLandmarks`): random identities (β ~ N(0, 1)), expressions (the emotions'
FACS patterns at random intensities, sparse random ARKit combinations, single shapes at
full weight, neutral), head poses (yaw ±50°, pitch ±30°, roll ±25°), perspective cameras
(25-70° vertical field of view, the face 15-80 % of the frame height, anywhere in it); the
landmarks are the mesh points under MediaPipe's canonical landmarks (the avatar
correspondence, ``engines/landmark_correspondence.py``) and the pupils on the eyeballs.
Noise (``scripts/measure_landmark_noise.py`` → ``engines/data/landmark_noise.npz``):
per-landmark jitter measured on the real tracker, scaled by a random factor; the residual
of a real portrait's landmarks after the model's best fit (a random one of 53, scaled
0.5-1.5, on 80 % of samples: contours that slide along the silhouette, iris centres off
the eyeball's front vertex); and a smooth random offset field.

The shipped weights (``engines/data/landmark_encoder.npz``) come from
``vn3d encoder train --seed 0`` with the defaults of :class:`EncoderConfig`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engines.assets import sha256_file
from engines.facs import EMOTIONS, emotion_basis
from engines.ict_model import ICTFaceModel, eye_rotations
from engines.landmark_correspondence import load_ict_correspondence
from engines.lbs import batch_rodrigues

DATA = Path(__file__).resolve().parent / "data"
DEFAULT_WEIGHTS = DATA / "landmark_encoder.npz"
NOISE_FILE = DATA / "landmark_noise.npz"
N_MESH = 468
IRIS_CENTRES = (468, 473)  # MediaPipe: the subject's right iris centre, then the left
N_POINTS = N_MESH + len(IRIS_CENTRES)
N_INPUTS = 2 * N_POINTS


def select_points(landmarks: np.ndarray) -> np.ndarray:  # (..., 478, >=2) -> (..., 470, 2)
    """The encoder's points out of MediaPipe's 478: the mesh and the two iris centres."""
    lms = np.asarray(landmarks)
    if lms.shape[-2] < 478:
        raise ValueError(f"need MediaPipe's 478 landmarks (with irises), got {lms.shape[-2]}")
    return np.concatenate([lms[..., :N_MESH, :2], lms[..., list(IRIS_CENTRES), :2]], axis=-2)


def normalise(points: torch.Tensor) -> torch.Tensor:  # (B, 470, 2) px -> (B, 940)
    """Centre on the mesh landmarks' mean, divide by their RMS radius, flatten."""
    centre = points[:, :N_MESH].mean(1, keepdim=True)  # (B, 1, 2)
    p = points - centre
    radius = p[:, :N_MESH].pow(2).sum(-1).mean(1).sqrt()  # (B,)
    return (p / radius.clamp_min(1e-6)[:, None, None]).flatten(1)


@dataclass
class EncoderConfig:
    hidden: tuple[int, ...] = (512, 512, 256)
    steps: int = 4000
    batch: int = 512
    lr: float = 1e-3
    psi_weight: float = 10.0  # loss: psi_weight * MSE(ψ) + rotation_weight * L1(rotation)
    rotation_weight: float = 0.5
    # × the still-frame jitter (then × U(0.5, 2) per sample): video is noisier than stills
    noise_scale: float = 2.0
    offset_cm: float = 0.12  # smooth per-sample landmark offset, RMS, in cm on the face
    seed: int = 0
    eval_samples: int = 4096


class LandmarkEncoder(torch.nn.Module):
    """An MLP: normalised landmarks (B, 940) → [ψ (B, E), rotation (B, 3)]; ψ is clamped
    to [0, 1] in eval mode (the exported and shipped form)."""

    def __init__(self, expression_names: tuple[str, ...], hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.expression_names = tuple(expression_names)
        self.hidden = tuple(hidden)
        layers: list[torch.nn.Module] = []
        n = N_INPUTS
        for h in hidden:
            layers += [torch.nn.Linear(n, h), torch.nn.GELU()]
            n = h
        layers.append(torch.nn.Linear(n, len(expression_names) + 3))
        self.net = torch.nn.Sequential(*layers)
        # per-input standardisation, set from the training data: the expression's share of
        # the landmarks' spread is small next to pose and identity; without it the MLP
        # learns the rotation and leaves ψ at its median (zero)
        self.register_buffer("input_mean", torch.zeros(N_INPUTS))
        self.register_buffer("input_std", torch.ones(N_INPUTS))

    @property
    def n_expression(self) -> int:
        return len(self.expression_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 940) -> (B, E + 3)
        y = self.net((x - self.input_mean) / self.input_std)
        if self.training:  # linear while training: a sigmoid there saturates at 0 and stops
            return y
        return torch.cat([y[:, : self.n_expression].clamp(0, 1), y[:, self.n_expression :]], 1)

    def predict(self, points_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ψ (B, E), rotation (B, 3)) from points (B, 470, 2) in pixels."""
        with torch.no_grad():
            out = self(normalise(torch.as_tensor(points_px, dtype=torch.float32))).numpy()
        return out[:, : self.n_expression], out[:, self.n_expression :]


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


# -- training ----------------------------------------------------------------------------
@dataclass
class TrainResult:
    encoder: LandmarkEncoder
    metrics: dict = field(default_factory=dict)


def encoder_loss(out: torch.Tensor, psi: torch.Tensor, rot: torch.Tensor,
                 cfg: EncoderConfig) -> torch.Tensor:
    e = psi.shape[1]
    return (cfg.psi_weight * (out[:, :e] - psi).pow(2).mean()
            + cfg.rotation_weight * (out[:, e:] - rot).abs().mean())


def evaluate(encoder: LandmarkEncoder, data: tuple[torch.Tensor, ...]) -> dict[str, float]:
    px, psi, rot = data
    with torch.no_grad():
        out = encoder(normalise(px))
    e = encoder.n_expression
    err_deg = torch.rad2deg((out[:, e:] - rot).norm(dim=1))
    return {"psi_mae": float((out[:, :e] - psi).abs().mean()),
            "psi_mae_active": float((out[:, :e] - psi).abs()[psi > 0.1].mean()),
            "rotation_error_deg": float(err_deg.mean())}


def train_encoder(model: ICTFaceModel, cfg: EncoderConfig | None = None,
                  progress: bool = True) -> TrainResult:
    """Train on fresh synthetic batches every step (loss: MSE on ψ, L1 on the rotation);
    metrics on a held-out synthetic set."""
    from tqdm import tqdm

    cfg = cfg or EncoderConfig()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = SyntheticLandmarks(model)
    held_out = data.sample(cfg.eval_samples, torch.Generator().manual_seed(cfg.seed + 10_000), cfg)
    encoder = LandmarkEncoder(model.expression_names, cfg.hidden)
    spread = normalise(data.sample(16384, torch.Generator().manual_seed(cfg.seed + 20_000),
                                   cfg)[0])
    encoder.input_mean.copy_(spread.mean(0))
    encoder.input_std.copy_(spread.std(0).clamp_min(1e-4))
    opt = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps)
    t0, history = time.perf_counter(), []
    bar = tqdm(range(cfg.steps), desc="encoder", unit="step", disable=not progress)
    for step in bar:
        px, psi, rot = data.sample(cfg.batch, gen, cfg)
        loss = encoder_loss(encoder(normalise(px)), psi, rot, cfg)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)  # no blow-up at peak lr
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            history.append((step, loss.item()))
            bar.set_postfix(loss=f"{loss.item():.4f}")
    encoder.eval()
    metrics = {"config": asdict(cfg), "train_s": time.perf_counter() - t0,
               "loss_history": history, "held_out": evaluate(encoder, held_out)}
    return TrainResult(encoder, metrics)


# -- files -------------------------------------------------------------------------------
def save_encoder(encoder: LandmarkEncoder, out: Path, metrics: dict | None = None) -> Path:
    """``landmark_encoder.npz`` (weights + names, no pickle), ``landmark_encoder.onnx``
    (dynamic batch), ``metrics.json``; returns the npz path."""
    from engines.onnx_export import export_onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"w/{k}": v.detach().numpy() for k, v in encoder.state_dict().items()}
    path = out / "landmark_encoder.npz"
    np.savez(path, expression_names=np.array(encoder.expression_names),
             hidden=np.array(encoder.hidden), **arrays)
    export_onnx(encoder, N_INPUTS, out / "landmark_encoder.onnx", "landmarks", "psi_rotation")
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return path


def encoder_onnx(path: Path | str | None = None) -> Path:
    """The ONNX file of an encoder (default: the shipped one), exported once into
    ``$VN3D_CACHE/onnx`` under the weights' hash."""
    from engines.disk_cache import cache_root
    from engines.onnx_export import export_onnx

    path = Path(path) if path else DEFAULT_WEIGHTS
    digest = sha256_file(path)[:16]
    out = cache_root() / "onnx" / f"landmark_encoder-{digest}.onnx"
    if not out.is_file():
        tmp = out.with_suffix(f".tmp{os.getpid()}")
        export_onnx(load_encoder(path), N_INPUTS, tmp, "landmarks", "psi_rotation")
        os.replace(tmp, out)
    return out


def load_encoder(path: Path | str | None = None) -> LandmarkEncoder:
    """The shipped encoder, or one saved by :func:`save_encoder`; checked."""
    path = Path(path) if path else DEFAULT_WEIGHTS
    try:
        with np.load(path, allow_pickle=False) as d:
            names = tuple(str(n) for n in d["expression_names"])
            hidden = tuple(int(h) for h in d["hidden"])
            state = {k[2:]: torch.from_numpy(d[k]) for k in d.files if k.startswith("w/")}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ValueError(f"{path}: not a landmark encoder file ({exc})") from exc
    encoder = LandmarkEncoder(names, hidden)
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the encoder ({exc})") from exc
    return encoder.eval()


# -- in the tracker ----------------------------------------------------------------------
class EncoderReader:
    """ψ and head rotation of one face from its MediaPipe landmarks, through a batched
    network function: the shipped encoder in this process by default, or a shared
    :class:`engines.inference_batcher.InferenceBatcher` (the server batches sessions)."""

    def __init__(self, expression_names: tuple[str, ...], fn=None,
                 encoder: LandmarkEncoder | None = None) -> None:
        if fn is None:
            encoder = encoder or load_encoder()
            fn = torch_batch_fn(encoder)
        if encoder is not None and encoder.expression_names != tuple(expression_names):
            raise ValueError("the encoder was trained for another face model's expressions")
        self.n_expression = len(expression_names)
        self.fn = fn

    def __call__(self, landmarks: np.ndarray, width: int, height: int
                 ) -> tuple[np.ndarray, np.ndarray]:
        """landmarks (478, >=2) normalised to the frame, as MediaPipe gives them."""
        x = normalise_landmarks(landmarks, width, height)  # (940,)
        out = np.asarray(self.fn(x[None]), np.float64).reshape(-1)  # (E + 3,)
        return out[: self.n_expression], out[self.n_expression :]


def normalise_landmarks(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """MediaPipe's (478, >=2) normalised landmarks → the encoder's input (940,)."""
    px = select_points(landmarks) * np.array([width, height], np.float32)
    return normalise(torch.from_numpy(px[None].astype(np.float32)))[0].numpy()


def torch_batch_fn(encoder: LandmarkEncoder):
    """The encoder as a batched numpy function (B, 940) -> (B, E + 3)."""
    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return encoder(torch.as_tensor(x, dtype=torch.float32)).numpy()
    return run
