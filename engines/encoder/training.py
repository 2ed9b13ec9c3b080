"""Training the landmark encoder on synthetic landmarks (``vn3d encoder train``): loss
10 × MSE(ψ) + 0.5 × L1(rotation), AdamW, one-cycle schedule, held-out evaluation.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from engines.encoder.config import EncoderConfig
from engines.encoder.network import LandmarkEncoder, normalise
from engines.encoder.synthetic import SyntheticLandmarks
from engines.face.ict import ICTFaceModel


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
