"""The emotion models together: the sliders API (six intensities → ψ, θ through the ERM),
the live emotion mode (tracked ψ → detector → steady label → ERM), and the default
models (trained from FACS records on first use, then cached).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.emotion.detector import EmotionDetector, train_detector
from engines.emotion.erm import ERM, ERMConfig, check_intensities, load_erm, save_erm, train_erm
from engines.emotion.facs import EMOTIONS, facs_records
from engines.emotion.label import EmotionLabel
from engines.files.disk_cache import cache_root

DEFAULT_VERSION = "facs-v1"


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
