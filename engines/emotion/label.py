"""A flicker-free emotion label: hysteresis on the detector's output, and an intensity
(the projection of ψ on the label's FACS pattern, eased).
"""

from __future__ import annotations

import numpy as np

from engines.emotion.facs import EMOTIONS, LABELS, emotion_basis


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
