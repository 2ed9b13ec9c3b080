"""The emotion models together: the sliders API (six intensities → ψ, θ through the ERM),
the live emotion mode (tracked ψ → detector → steady label → ERM), and the default
models (trained from FACS records on first use, then cached).
"""

from __future__ import annotations

import pickle
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

DEFAULT_VERSION = "facs-v3"  # v3: the detector for ψ as read learns grouped resting offsets


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
    detector: EmotionDetector  # for ψ as read
    calibrated_detector: EmotionDetector  # for ψ relative to a neutral calibration

    def detector_for(self, calibrated: bool) -> EmotionDetector:
        return self.calibrated_detector if calibrated else self.detector

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

    def step(self, tracked_psi: np.ndarray, calibrated: bool = False
             ) -> tuple[str, float, np.ndarray, np.ndarray]:
        """One tracked ψ (relative to the user's neutral calibration when ``calibrated``)
        -> (label, intensity, ψ, θ)."""
        probs = self.models.detector_for(calibrated).probabilities(tracked_psi)[0]
        name, intensity = self.label.update(probs, tracked_psi)
        psi, theta = self.models.erm.predict(self.label.intensities())
        return name, intensity, psi[0], theta[0]


def cache_dir() -> Path:
    return cache_root() / DEFAULT_VERSION


def cached_detector(path: Path, n_expression: int) -> EmotionDetector | None:
    """A detector saved at ``path``; None when there is none or it cannot be read."""
    if not path.is_file():
        return None
    detector = EmotionDetector(n_expression)
    try:
        detector.load_state_dict(torch.load(path, weights_only=True))
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        warnings.warn(f"cannot load a detector from {path}: {exc}; training it again",
                      stacklevel=2)
        return None
    return detector


def default_emotion_models(expression_names: tuple[str, ...]) -> EmotionModels:
    """The default ERM and detectors: trained from FACS records on first use, then cached
    (a cache from before the calibrated detector gets it added; a damaged one is replaced)."""
    d = cache_dir()
    erm_path = d / "erm" / "erm.pt"
    paths = {False: d / "detector.pt", True: d / "detector_calibrated.pt"}
    records = None
    erm = None
    if erm_path.is_file():
        try:
            erm = load_erm(erm_path)
        except ValueError as exc:  # a damaged cache is trained again, not fatal
            warnings.warn(f"{exc}; training the default ERM again", stacklevel=2)
    if erm is None or erm.expression_names != tuple(expression_names):
        records = facs_records(expression_names)
        result = train_erm(records, ERMConfig())
        erm = result.model
        save_erm(erm, d / "erm", {k: v for k, v in result.metrics.items() if k != "history"})
        paths[False].unlink(missing_ok=True)  # the detectors go with this ERM's records
        paths[True].unlink(missing_ok=True)
    detectors = {}
    for calibrated, path in paths.items():
        detector = cached_detector(path, len(expression_names))
        if detector is None:
            records = records if records is not None else facs_records(expression_names)
            detector = train_detector(records, calibrated=calibrated)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.save(detector.state_dict(), path)
        detectors[calibrated] = detector.eval()
    return EmotionModels(erm, detectors[False], detectors[True])
