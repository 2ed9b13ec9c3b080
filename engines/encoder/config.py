"""The landmark encoder's network size and training settings (``vn3d encoder train``).
"""

from __future__ import annotations

from dataclasses import dataclass


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
