"""Emotion training records generated from FACS, the default data for the ERM.

No labelled emotion photos ship with the project, so the default records come from the
Facial Action Coding System: each basic emotion's prototype action units (EMFACS-7,
Friesen & Ekman 1983; as listed in Matsumoto & Ekman's FACS summaries) are mapped to ARKit
blendshapes and sampled at intensities 0-1 with per-subject variation and mixtures.

AU -> ARKit table sources: the AU descriptions of the FACS manual (Ekman, Friesen & Hager
2002) matched to Apple's ARFaceAnchor.BlendShapeLocation descriptions (e.g. AU12 "lip
corner puller" = mouthSmile, "both corners of the mouth move upward"); the common
ARKit-to-FACS correspondence sheets agree on these pairs. Weights below 1 mark partial
correspondences (AU6 also narrows the eye; AU26 is a moderate jaw drop, AU27 the full one).

Head pose and gaze tendencies (θ) per emotion are small, from the head-movement literature
(sadness: head and gaze down; surprise and fear: head back/up; disgust: head turned away
and down; anger: head lowered; happiness: head slightly up) and documented in ``POSE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EMOTIONS = ("happy", "sad", "afraid", "angry", "surprised", "disgusted")
LABELS = ("neutral", *EMOTIONS)

EMFACS: dict[str, tuple[int, ...]] = {
    "happy": (6, 12),
    "sad": (1, 4, 15),
    "surprised": (1, 2, 5, 26),
    "afraid": (1, 2, 4, 5, 7, 20, 26),
    "angry": (4, 5, 7, 23),
    "disgusted": (9, 15, 16),
}


def _both(name: str, w: float) -> dict[str, float]:
    return {f"{name}_L": w, f"{name}_R": w}


AU_TO_ARKIT: dict[int, dict[str, float]] = {
    1: _both("browInnerUp", 1.0),  # inner brow raiser
    2: _both("browOuterUp", 1.0),  # outer brow raiser
    4: _both("browDown", 1.0),  # brow lowerer
    5: _both("eyeWide", 1.0),  # upper lid raiser
    6: _both("cheekSquint", 1.0) | _both("eyeSquint", 0.4),  # cheek raiser
    7: _both("eyeSquint", 1.0),  # lid tightener
    9: _both("noseSneer", 1.0) | _both("browDown", 0.3),  # nose wrinkler
    10: _both("mouthUpperUp", 1.0),  # upper lip raiser
    12: _both("mouthSmile", 1.0),  # lip corner puller
    15: _both("mouthFrown", 1.0),  # lip corner depressor
    16: _both("mouthLowerDown", 1.0),  # lower lip depressor
    17: {"mouthShrugLower": 1.0},  # chin raiser
    20: _both("mouthStretch", 1.0),  # lip stretcher
    23: _both("mouthPress", 0.8) | {"mouthRollLower": 0.2},  # lip tightener
    25: {"jawOpen": 0.1} | _both("mouthLowerDown", 0.2),  # lips part
    26: {"jawOpen": 0.45},  # jaw drop
    27: {"jawOpen": 1.0},  # mouth stretch
}

# θ at full intensity for the ICT layout: head rotation (pitch, yaw, roll) and gaze
# rotation (pitch, yaw, roll), degrees; + pitch lowers the chin / the gaze.
POSE: dict[str, tuple[float, float, float, float, float, float]] = {
    "happy": (-3.0, 0.0, 2.0, 0.0, 0.0, 0.0),
    "sad": (9.0, 0.0, 0.0, 10.0, 0.0, 0.0),
    "afraid": (-5.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "angry": (5.0, 0.0, 0.0, -3.0, 0.0, 0.0),
    "surprised": (-6.0, 0.0, 0.0, -4.0, 0.0, 0.0),
    "disgusted": (4.0, 8.0, -3.0, 0.0, -6.0, 0.0),
}


def emotion_basis(expression_names: tuple[str, ...]) -> np.ndarray:
    """(6, n_expression): each emotion's ψ at intensity 1 (AUs summed, clipped to 1)."""
    index = {n: i for i, n in enumerate(expression_names)}
    basis = np.zeros((len(EMOTIONS), len(expression_names)), np.float32)
    for e, emotion in enumerate(EMOTIONS):
        for au in EMFACS[emotion]:
            for name, w in AU_TO_ARKIT[au].items():
                basis[e, index[name]] += w
    return np.clip(basis, 0, 1)


def pose_basis() -> np.ndarray:
    """(6, 6): each emotion's θ at intensity 1, radians."""
    return np.radians(np.array([POSE[e] for e in EMOTIONS], np.float32))


@dataclass
class Records:
    """Training records: one row per sample."""

    subject: np.ndarray  # (N,) str
    label: np.ndarray  # (N,) str, one of LABELS
    intensities: np.ndarray  # (N, 6) float32 in [0, 1], EMOTIONS order
    expression: np.ndarray  # (N, n_expression) ψ
    pose: np.ndarray  # (N, 6) θ
    shape: np.ndarray  # (N, n_shape) β
    expression_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.label)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            subject=self.subject,
            label=self.label,
            intensities=self.intensities,
            expression=self.expression,
            pose=self.pose,
            shape=self.shape,
            expression_names=np.array(self.expression_names),
        )

    @classmethod
    def load(cls, path: str | Path) -> Records:
        try:
            with np.load(path, allow_pickle=False) as d:
                rec = cls(
                    d["subject"],
                    d["label"],
                    d["intensities"].astype(np.float32),
                    d["expression"].astype(np.float32),
                    d["pose"].astype(np.float32),
                    d["shape"].astype(np.float32),
                    tuple(str(n) for n in d["expression_names"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path} is not a records file: {exc}") from exc
        n = len(rec.label)
        if rec.intensities.shape != (n, 6) or rec.pose.shape != (n, 6) or len(rec.expression) != n:
            raise ValueError(f"{path}: inconsistent record array sizes")
        return rec

    def subset(self, mask: np.ndarray) -> Records:
        return Records(
            self.subject[mask],
            self.label[mask],
            self.intensities[mask],
            self.expression[mask],
            self.pose[mask],
            self.shape[mask],
            self.expression_names,
        )


def label_of(intensities: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """The dominant emotion per row, or neutral when every intensity is below threshold."""
    k = intensities.argmax(1)
    return np.where(intensities.max(1) < threshold, "neutral", np.array(EMOTIONS)[k])


def facs_records(
    expression_names: tuple[str, ...],
    n_subjects: int = 40,
    per_subject: int = 60,
    n_shape: int = 100,
    seed: int = 0,
) -> Records:
    """Sample records: per subject an identity, AU gains and a pose bias; per sample one
    emotion at intensity U(0, 1) (10 % neutral), with a second one mixed in 25 % of the time."""
    rng = np.random.default_rng(seed)
    psi_basis, theta_basis = emotion_basis(expression_names), pose_basis()
    rows: dict[str, list] = {k: [] for k in ("subject", "intensities", "psi", "theta", "beta")}
    for s in range(n_subjects):
        beta = rng.normal(0, 0.8, n_shape).astype(np.float32)
        gains = np.exp(rng.normal(0, 0.2, psi_basis.shape)).astype(np.float32)  # (6, n_expr)
        bias = rng.normal(0, math.radians(2), 6).astype(np.float32)
        for _ in range(per_subject):
            inten = np.zeros(6, np.float32)
            if rng.random() > 0.1:
                inten[rng.integers(6)] = rng.uniform(0, 1)
                if rng.random() < 0.25:
                    inten[rng.integers(6)] += rng.uniform(0, 0.5)
            inten = np.clip(inten, 0, 1)
            psi = np.clip(
                inten @ (psi_basis * gains) + rng.normal(0, 0.02, psi_basis.shape[1]), 0, 1
            )
            theta = inten @ theta_basis + bias + rng.normal(0, math.radians(1), 6)
            rows["subject"].append(f"s{s:03d}")
            rows["intensities"].append(inten)
            rows["psi"].append(psi)
            rows["theta"].append(theta)
            rows["beta"].append(beta)
    intensities = np.array(rows["intensities"], np.float32)
    return Records(
        np.array(rows["subject"]),
        label_of(intensities),
        intensities,
        np.array(rows["psi"], np.float32),
        np.array(rows["theta"], np.float32),
        np.array(rows["beta"], np.float32),
        tuple(expression_names),
    )
