"""The emotion regressive model (ERM): six emotion intensities -> ψ + θ.

Input: intensities of (happy, sad, afraid, angry, surprised, disgusted) in [0, 1]
(neutral = all zero), optionally followed by the identity β (the "with identity" variant).
Output for ICT: its 53 ARKit weights ψ, then 6 pose values θ = head rotation (axis-angle,
3) and gaze rotation (axis-angle, 3), exactly the ICT model's pose layout; for FLAME the
paper's 50 ψ + 6 θ (global 3 + jaw 3). A feed-forward net of Linear + ReLU layers trained
with the paper's loss (equation 4):

    L = MAE(ψ) + ρ · MAE(θ[0:3]) + ε · MAE(θ[3:6])
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engines.emotion.facs import EMOTIONS, Records
from engines.inference.onnx_export import export_onnx


@dataclass
class ERMConfig:
    hidden: tuple[int, ...] = (128, 128)
    use_identity: bool = False  # the variant that also takes β
    n_shape: int = 0  # β size when use_identity
    rho: float = 1.0  # weight of the first pose group (head / global rotation)
    epsilon: float = 0.5  # weight of the second pose group (gaze / jaw)
    lr: float = 3e-3
    epochs: int = 300
    batch_size: int = 128
    patience: int = 30  # early stopping: epochs without a better validation loss
    val_fraction: float = 0.1  # split by subject
    seed: int = 0


class ERM(torch.nn.Module):
    """Linear + ReLU layers; outputs (B, n_expression + 6)."""

    def __init__(self, n_expression: int, config: ERMConfig, expression_names: tuple[str, ...]):
        super().__init__()
        self.config = config
        self.n_expression = n_expression
        self.expression_names = expression_names
        n_in = 6 + (config.n_shape if config.use_identity else 0)
        layers: list[torch.nn.Module] = []
        for width in config.hidden:
            layers += [torch.nn.Linear(n_in, width), torch.nn.ReLU()]
            n_in = width
        layers.append(torch.nn.Linear(n_in, n_expression + 6))
        self.net = torch.nn.Sequential(*layers)

    @property
    def n_inputs(self) -> int:
        return 6 + (self.config.n_shape if self.config.use_identity else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n_in) -> (B, n_expr + 6)
        return self.net(x)

    def predict(self, intensities, shape=None) -> tuple[np.ndarray, np.ndarray]:
        """ψ (B, n_expression) clipped to [0, 1] and θ (B, 6) from intensities (B, 6).

        Raises ``ValueError`` for a wrong length, NaN/inf or values outside [0, 1].
        """
        x = check_intensities(intensities)
        if self.config.use_identity:
            if shape is None:
                shape = np.zeros((len(x), self.config.n_shape), np.float32)
            shape = np.asarray(shape, np.float32).reshape(len(x), -1)
            if shape.shape[1] != self.config.n_shape or not np.isfinite(shape).all():
                raise ValueError(f"shape must be {self.config.n_shape} finite values per row")
            x = np.concatenate([x, shape], 1)
        with torch.no_grad():
            out = self(torch.from_numpy(x)).numpy()
        return np.clip(out[:, : self.n_expression], 0, 1), out[:, self.n_expression :]


def check_intensities(intensities) -> np.ndarray:
    """(B, 6) float32 from a length-6 vector or a (B, 6) array, validated."""
    try:
        x = np.asarray(intensities, np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"intensities must be numbers: {exc}") from None
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != 6:
        raise ValueError(f"expected 6 intensities ({', '.join(EMOTIONS)}); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("intensities must be finite (no NaN or inf)")
    if (x < 0).any() or (x > 1).any():
        raise ValueError("intensities must lie in [0, 1]")
    return x


def erm_loss(pred: torch.Tensor, target: torch.Tensor, n_expr: int, cfg: ERMConfig):
    """The paper's equation 4; also returns the three MAE terms."""
    mae = (pred - target).abs()
    psi, g1, g2 = (
        mae[:, :n_expr].mean(),
        mae[:, n_expr : n_expr + 3].mean(),
        mae[:, n_expr + 3 :].mean(),
    )
    return psi + cfg.rho * g1 + cfg.epsilon * g2, (psi, g1, g2)


def split_by_subject(records: Records, fraction: float, seed: int) -> tuple[Records, Records]:
    subjects = np.unique(records.subject)
    rng = np.random.default_rng(seed)
    n_val = max(1, round(fraction * len(subjects))) if len(subjects) > 1 else 0
    val = set(rng.choice(subjects, n_val, replace=False).tolist())
    mask = np.array([s in val for s in records.subject])
    return records.subset(~mask), records.subset(mask)


def inputs_targets(records: Records, cfg: ERMConfig) -> tuple[torch.Tensor, torch.Tensor]:
    x = records.intensities
    if cfg.use_identity:
        x = np.concatenate([x, records.shape[:, : cfg.n_shape]], 1)
    y = np.concatenate([records.expression, records.pose], 1)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def evaluate(model: ERM, records: Records) -> dict[str, float]:
    """Mean absolute error per output group (ψ; θ head/global; θ gaze/jaw, in degrees)."""
    x, y = inputs_targets(records, model.config)
    with torch.no_grad():
        _, (psi, g1, g2) = erm_loss(model(x), y, model.n_expression, model.config)
    return {
        "psi_mae": float(psi),
        "theta1_mae_deg": math.degrees(float(g1)),
        "theta2_mae_deg": math.degrees(float(g2)),
    }


@dataclass
class TrainResult:
    model: ERM
    metrics: dict = field(default_factory=dict)


def train_erm(
    records: Records, config: ERMConfig | None = None, progress: bool = True
) -> TrainResult:
    """Train on a subject-wise 90/10 split with early stopping; deterministic on CPU."""
    cfg = config or ERMConfig()
    if cfg.use_identity and cfg.n_shape == 0:
        cfg.n_shape = records.shape.shape[1]
    torch.manual_seed(cfg.seed)
    train, val = split_by_subject(records, cfg.val_fraction, cfg.seed)
    if len(train) == 0 or len(val) == 0:
        raise ValueError("need records from at least two subjects (train and validation)")
    n_expr = records.expression.shape[1]
    model = ERM(n_expr, cfg, records.expression_names)
    xt, yt = inputs_targets(train, cfg)
    xv, yv = inputs_targets(val, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    best, best_state, since, history = math.inf, None, 0, []
    bar = tqdm(range(cfg.epochs), desc="erm", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(cfg.batch_size):
            loss, _ = erm_loss(model(xt[idx]), yt[idx], n_expr, cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(erm_loss(model(xv), yv, n_expr, cfg)[0])
            train_loss = float(erm_loss(model(xt), yt, n_expr, cfg)[0])
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best - 1e-6:
            best, since = val_loss, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= cfg.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    mean = yt.mean(0, keepdim=True)
    baseline = float(erm_loss(mean.expand_as(yv), yv, n_expr, cfg)[0])
    metrics = {
        "train": evaluate(model, train),
        "val": evaluate(model, val),
        "val_loss": best,
        "val_loss_predict_mean": baseline,
        "epochs_run": len(history),
        "n_train": len(train),
        "n_val": len(val),
        "history": history,
    }
    return TrainResult(model, metrics)


def save_erm(model: ERM, out_dir: str | Path, metrics: dict | None = None) -> Path:
    """Write ``erm.pt`` (weights + config), ``erm.onnx`` (dynamic batch) and ``metrics.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = asdict(model.config)
    cfg["hidden"] = list(cfg["hidden"])
    torch.save(
        {
            "config": cfg,
            "expression_names": [str(n) for n in model.expression_names],
            "state_dict": model.state_dict(),
        },
        out / "erm.pt",
    )
    export_onnx(model, model.n_inputs, out / "erm.onnx", "intensities", "params")
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return out / "erm.pt"


def load_erm(path: str | Path) -> ERM:
    """Load ``erm.pt`` (or a directory holding it); a bad file raises ``ValueError``."""
    path = Path(path)
    path = path / "erm.pt" if path.is_dir() else path
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        cfg = ERMConfig(**{**ckpt["config"], "hidden": tuple(ckpt["config"]["hidden"])})
        names = tuple(ckpt["expression_names"])
        model = ERM(len(names), cfg, names)
        model.load_state_dict(ckpt["state_dict"])
    except (OSError, EOFError, KeyError, RuntimeError, TypeError, ValueError,
            pickle.UnpicklingError) as exc:
        raise ValueError(f"cannot load an ERM from {path}: {exc}") from exc
    return model.eval()
