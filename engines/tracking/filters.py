"""Temporal smoothing of tracked parameters: the One-Euro filter (Casiez et al., CHI 2012).

A low-pass filter whose cutoff rises with the signal's speed: still input is smoothed
hard (jitter drops), fast changes pass with little lag. One filter per stream, vectors
filtered element-wise, timestamps in seconds.

Defaults (``OneEuroConfig``) were chosen on synthetic signals (``tests/test_filters.py``):
for ψ in [0, 1] at 25-30 fps they cut still-frame jitter (σ = 0.02) about 7x and follow a
step of 0.3-0.8 to 95 % within 3 frames; θ in radians uses the same numbers. The shapes
that move in a few frames and whose lag a viewer sees (blinks and the lids, the jaw in
speech: ``FAST_SHAPES``) get a cutoff that rises three times as fast (``fast_beta``): on
the GRID clips the avatar's mouth then follows the speaker's with r 0.97 instead of 0.94.
What that lets through of a still face's jitter (its lids and jaw moved 0.0015 a frame
instead of 0.0008) is held by a play (``fast_play``, 0.003 of the shape's range: the
output moves only once the filtered value leaves that band, then follows it that far
behind), which brings it back to 0.0008 and costs the GRID figures nothing measurable
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# ARKit shapes (by name prefix) filtered with ``fast_beta``
FAST_SHAPES = ("eyeBlink", "eyeSquint", "eyeWide", "jawOpen")


@dataclass
class OneEuroConfig:
    min_cutoff: float = 0.3  # Hz: smoothing of still input (lower = smoother)
    beta: float = 5.0  # how fast the cutoff rises with speed (higher = less lag)
    d_cutoff: float = 1.0  # Hz: smoothing of the speed estimate
    fast_beta: float = 15.0  # beta of the elements marked fast (``OneEuroFilter(fast=...)``)
    # the fast elements' play: their output moves only once the filtered value is this far
    # from it (then follows it this far behind), so what is left of a still face's jitter
    # stays inside the band; 0: no play
    fast_play: float = 0.003


def fast_elements(expression_names: tuple[str, ...], n_after: int = 3) -> np.ndarray:
    """(len(names) + n_after,) bool: which elements of ψ (then ``n_after`` others, e.g. the
    head rotation, never fast) are ``FAST_SHAPES``."""
    fast = [name.startswith(FAST_SHAPES) for name in expression_names]
    return np.array(fast + [False] * n_after)


def smoothing_factor(dt: float, cutoff: float | np.ndarray) -> float | np.ndarray:
    """Exponential smoothing weight of a first-order low-pass at ``cutoff`` Hz."""
    r = 2.0 * math.pi * cutoff * dt
    return r / (r + 1.0)


class OneEuroFilter:
    """Filter a vector stream; call with each new value and its timestamp (seconds)."""

    def __init__(self, config: OneEuroConfig | None = None,
                 fast: np.ndarray | None = None) -> None:
        """``fast``: a bool mask over the vector's elements filtered with ``fast_beta``
        (ignored for vectors of another length)."""
        self.config = config or OneEuroConfig()
        self.fast = None if fast is None else np.asarray(fast, bool)
        # per element, made once: the cutoff's rise with speed
        self._betas = (None if self.fast is None
                       else np.where(self.fast, self.config.fast_beta, self.config.beta))
        self._plays = (None if self.fast is None
                       else np.where(self.fast, self.config.fast_play, 0.0))
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None
        self._out: np.ndarray | None = None  # the output, behind the filter by the play

    def reset(self) -> None:
        self._x = self._dx = self._t = self._out = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or t <= self._t or x.shape != self._x.shape:
            self._x, self._dx, self._t, self._out = x.copy(), np.zeros_like(x), t, x.copy()
            return x.copy()
        cfg = self.config
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = smoothing_factor(dt, cfg.d_cutoff)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        per_element = self.fast is not None and self.fast.shape == x.shape  # the mask fits
        beta = self._betas if per_element else cfg.beta
        a = smoothing_factor(dt, cfg.min_cutoff + beta * np.abs(self._dx))
        self._x = a * x + (1 - a) * self._x
        self._t = t
        if not per_element:
            return self._x.copy()
        self._out = np.clip(self._out, self._x - self._plays, self._x + self._plays)
        return self._out.copy()
