"""The project's own expression/pose encoder: MediaPipe landmarks → the face model's ψ, θ.

Input: the tracker's 468 mesh landmarks and the two iris centres (MediaPipe 468: the
subject's right iris, 473: the left), in pixels (x right, y down), normalised by
:func:`normalise` (centred on the mesh landmarks' mean, divided by their RMS radius; not
rotated, so the head pose stays readable). Output: ψ (n_expression, clamped to [0, 1])
and the head rotation (3, axis-angle, radians; the model's axes: x to the subject's left,
y up, z out of the face).

The shipped weights (``engines/encoder/data/landmark_encoder.npz``) come from
``vn3d encoder train --seed 0`` with the defaults of
:class:`engines.encoder.config.EncoderConfig`; files are read and written here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from engines.files.assets import sha256_file
from engines.files.disk_cache import cache_root
from engines.inference.onnx_export import export_onnx

DATA = Path(__file__).resolve().parent / "data"


DEFAULT_WEIGHTS = DATA / "landmark_encoder.npz"


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


# -- files -------------------------------------------------------------------------------
def save_encoder(encoder: LandmarkEncoder, out: Path, metrics: dict | None = None) -> Path:
    """``landmark_encoder.npz`` (weights + names, no pickle), ``landmark_encoder.onnx``
    (dynamic batch), ``metrics.json``; returns the npz path."""
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
