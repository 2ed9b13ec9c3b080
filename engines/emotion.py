"""Emotions for the avatar: a detector (ψ -> 7 classes), a flicker-free label, the sliders
API, and the default models (trained from FACS records on first use, then cached).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.disk_cache import cache_root
from engines.erm import ERM, ERMConfig, check_intensities, load_erm, save_erm, train_erm
from engines.facs import EMOTIONS, LABELS, Records, emotion_basis, facs_records

DEFAULT_VERSION = "facs-v1"

# shapes MediaPipe barely reads on real faces (docs/PERFORMANCE.md): the detector is
# trained with them randomly weakened so it does not depend on them
WEAKLY_TRACKED = ("cheekSquint", "noseSneer", "cheekPuff", "eyeWide", "browDown")


class EmotionDetector(torch.nn.Module):
    """ψ (B, n_expression) -> logits (B, 7) over ``LABELS``."""

    def __init__(self, n_expression: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_expression, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, len(LABELS)),
        )

    def forward(self, psi: torch.Tensor) -> torch.Tensor:
        return self.net(psi)

    def probabilities(self, psi: np.ndarray) -> np.ndarray:
        """Class probabilities (B, 7) for ψ (B, n_expression) or (n_expression,)."""
        x = np.asarray(psi, np.float32)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if not np.isfinite(x).all():
            raise ValueError("ψ must be finite")
        with torch.no_grad():
            return torch.softmax(self(torch.from_numpy(x)), 1).numpy()


def tracker_like(psi: np.ndarray, names: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Augment clean ψ the way a real tracker reads it: weak shapes, resting offsets."""
    x = psi.copy()
    weak = np.array([n.startswith(WEAKLY_TRACKED) for n in names])
    x[:, weak] *= rng.uniform(0, 1, (len(x), 1)) ** 2
    # a resting face reads as scattered slight expressions (squint, brows, gaze, pucker
    # up to ~0.6 on real photos): any shape may carry such an offset
    rest = rng.uniform(0, 0.55, x.shape) * (rng.random(x.shape) < 0.3)
    return np.clip(x + rest + rng.normal(0, 0.03, x.shape), 0, 1).astype(np.float32)


def train_detector(records: Records, epochs: int = 60, seed: int = 0) -> EmotionDetector:
    """Cross-entropy on tracker-like augmented ψ; deterministic on CPU."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    y = torch.tensor([LABELS.index(str(lbl)) for lbl in records.label])
    model = EmotionDetector(records.expression.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        x = torch.from_numpy(tracker_like(records.expression, records.expression_names, rng))
        for idx in torch.randperm(len(x), generator=gen).split(128):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


class EmotionLabel:
    """Hysteresis on the detector's output: the label changes only after another class
    has led by ``margin`` for ``frames`` frames in a row; intensity is smoothed."""

    def __init__(
        self, names: tuple[str, ...], margin: float = 0.15, frames: int = 5, smoothing: float = 0.3
    ) -> None:
        self.basis = emotion_basis(names)  # (6, n_expression)
        self.margin, self.frames, self.smoothing = margin, frames, smoothing
        self.label, self.intensity = "neutral", 0.0
        self._candidate, self._count = "neutral", 0

    def update(self, probs: np.ndarray, psi: np.ndarray) -> tuple[str, float]:
        probs = np.asarray(probs).ravel()
        best = LABELS[int(probs.argmax())]
        lead = probs.max() - probs[LABELS.index(self.label)]
        if best != self.label and lead >= self.margin:
            self._count = self._count + 1 if best == self._candidate else 1
            self._candidate = best
            if self._count >= self.frames:
                self.label, self._count = best, 0
        else:
            self._count = 0
        target = 0.0
        if self.label != "neutral":
            b = self.basis[EMOTIONS.index(self.label)]
            target = float(np.clip(np.asarray(psi) @ b / (b @ b), 0, 1))
        self.intensity += self.smoothing * (target - self.intensity)
        return self.label, self.intensity

    def intensities(self) -> np.ndarray:
        """The current label as an ERM input (6,)."""
        out = np.zeros(6, np.float32)
        if self.label != "neutral":
            out[EMOTIONS.index(self.label)] = self.intensity
        return out


def intensities_from(values: dict[str, float] | list[float] | np.ndarray) -> np.ndarray:
    """Slider values as a (6,) vector: a dict by emotion name or six numbers in order."""
    if isinstance(values, dict):
        unknown = set(values) - set(EMOTIONS)
        if unknown:
            raise ValueError(f"unknown emotions {sorted(unknown)}; use {', '.join(EMOTIONS)}")
        values = [values.get(e, 0.0) for e in EMOTIONS]
    return check_intensities(values)[0]


@dataclass
class EmotionModels:
    erm: ERM
    detector: EmotionDetector

    def sliders(self, values: dict[str, float] | list[float]) -> tuple[np.ndarray, np.ndarray]:
        """The sliders API: six intensities -> ψ (n_expression,) and θ (6,)."""
        psi, theta = self.erm.predict(intensities_from(values))
        return psi[0], theta[0]


class EmotionMode:
    """The live "emotion" mode for one stream: tracked ψ -> detector -> steady label and
    intensity -> ERM -> the ψ and θ that drive the avatar."""

    def __init__(self, models: EmotionModels, expression_names: tuple[str, ...]) -> None:
        self.models = models
        self.label = EmotionLabel(expression_names)

    def step(self, tracked_psi: np.ndarray) -> tuple[str, float, np.ndarray, np.ndarray]:
        probs = self.models.detector.probabilities(tracked_psi)[0]
        name, intensity = self.label.update(probs, tracked_psi)
        psi, theta = self.models.erm.predict(self.label.intensities())
        return name, intensity, psi[0], theta[0]


def cache_dir() -> Path:
    return cache_root() / DEFAULT_VERSION


def default_emotion_models(expression_names: tuple[str, ...]) -> EmotionModels:
    """The default ERM and detector: trained from FACS records on first use, then cached."""
    d = cache_dir()
    erm_path, det_path = d / "erm" / "erm.pt", d / "detector.pt"
    if erm_path.is_file() and det_path.is_file():
        erm = load_erm(erm_path)
        detector = EmotionDetector(len(expression_names))
        detector.load_state_dict(torch.load(det_path, weights_only=True))
        if erm.expression_names == tuple(expression_names):
            return EmotionModels(erm, detector.eval())
    records = facs_records(expression_names)
    result = train_erm(records, ERMConfig())
    save_erm(result.model, d / "erm", {k: v for k, v in result.metrics.items() if k != "history"})
    detector = train_detector(records)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(detector.state_dict(), det_path)
    return EmotionModels(result.model, detector)
