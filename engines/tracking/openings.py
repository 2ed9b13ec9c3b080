"""The "openings" reader's last step: the avatar's mouth opens as far as the person's, as
MediaPipe's landmarks measure both.

The blendshape scores read the ICT head's jaw short (``engines/tracking/response_curves.py``),
and a real mouth's opening is more than its jawOpen score: the "inverse" reader's avatar
opens its mouth 0.87 times as far as the speaker, r 0.87 (``scripts/bench_fidelity.py``;
this reader: 1.08, r 0.94).
The landmarks measure the opening directly: the inner lips' distance (points 13-14) over
the eye-corner span (33-263), in 3D (MediaPipe's z is scaled like x), so a turned or
tilted head does not foreshorten it. ``face_openings`` also measures each eye's lid
distance (159-145, 386-374) the same way.

How the head's openings answer its shapes was measured by rendering each shape alone at
each weight on several identities and poses and reading the renders with MediaPipe
(``scripts/measure_mediapipe_response.py``; the same renders as the response curves):
``OpeningCurves``. Per frame, with ψ from the inverse reader, the head's mouth opening is
taken as its resting opening plus each shape's own change (additive: mouthFunnel and the
lips' shapes open it too), and jawOpen is solved so the sum equals the person's opening (a
closed mouth reads about 0 on anyone, so no per-person reference is needed).

The eyes keep their blink scores. Matched the same way (relative to a high percentile of
the person's last seconds, as lid apertures differ per person) they did not follow the
speakers better (GRID clips 0-3, on the head that still drew its lower lashes: eye r 0.925
vs 0.947, range 0.85 vs 0.85): MediaPipe reads the head's fully shut lids as half open
(0.066 spans against 0.12 at rest) while speakers' blinks read about 0.03, so no lid
weight can reach a blink's depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OPENINGS_FILE = Path(__file__).parent / "data" / "mediapipe_openings.npz"

MOUTH = (13, 14)  # inner lips, upper and lower
EYES = ((159, 145), (386, 374))  # upper and lower lid: the image's left eye, then its right
CORNERS = (33, 263)  # outer eye corners: the span the openings are measured in
OPENINGS = ("mouth", "eye_image_left", "eye_image_right")
MOUTH_OPENING = 0  # its index in ``OPENINGS``: the one the reader matches


def face_openings(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """(3,) mouth and the two eyes' openings (``OPENINGS``) of MediaPipe's (478, 3)
    normalised landmarks in a ``width`` × ``height`` frame, in eye-corner spans; NaN when
    the eye corners coincide (degenerate landmarks)."""
    p = np.asarray(landmarks, np.float64)[:, :3] * (width, height, width)  # (478, 3) px
    span = float(np.linalg.norm(p[CORNERS[0]] - p[CORNERS[1]]))
    if not span > 1e-6:  # degenerate (or NaN) landmarks measure nothing
        return np.full(3, np.nan)
    pairs = (MOUTH, *EYES)
    return np.array([np.linalg.norm(p[a] - p[b]) for a, b in pairs]) / span


@dataclass(frozen=True)
class OpeningCurves:
    """The head's median openings with each shape alone at each weight."""

    levels: np.ndarray  # (L,) weights, increasing from 0 to 1
    openings: np.ndarray  # (E, L, 3) in ``OPENINGS`` order
    expression_names: tuple[str, ...]  # (E,)

    @classmethod
    def load(cls, path: Path = OPENINGS_FILE) -> OpeningCurves:
        with np.load(path) as f:
            return cls(f["levels"], f["openings"], tuple(str(n) for n in f["expression_names"]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, levels=self.levels, openings=self.openings,
                            expression_names=np.array(self.expression_names))

    def driver(self, k: int) -> int:
        """The shape that moves opening ``k`` most at full weight (jawOpen for the mouth,
        the eye's own eyeBlink for an eye)."""
        return int(np.argmax(np.abs(self.openings[:, -1, k] - self.openings[:, 0, k])))


class OpeningMatcher:
    """ψ (E,) from another reader and the person's openings (3,) -> ψ with jawOpen set so
    the head's mouth opens as far as the person's."""

    def __init__(self, curves: OpeningCurves) -> None:
        k = MOUTH_OPENING
        self.levels = np.asarray(curves.levels, np.float64)  # (L,)
        o = np.asarray(curves.openings, np.float64)[:, :, k]  # (E, L)
        self.rest = float(np.median(o[:, 0]))  # the head at rest
        self.change = o - o[:, :1]  # (E, L) each shape's own change from rest
        self.driver = curves.driver(k)  # jawOpen
        grid = np.maximum.accumulate(self.change[self.driver])  # (L,) made monotone
        self.grid = grid + 1e-6 * np.arange(len(grid))

    def __call__(self, psi: np.ndarray, openings: np.ndarray) -> np.ndarray:
        out = np.asarray(psi, np.float64).copy()  # (E,)
        opening = float(openings[MOUTH_OPENING])
        if not np.isfinite(opening):  # degenerate landmarks: the scores stand
            return out
        out[self.driver] = 0.0
        moved = sum(np.interp(out[i], self.levels, self.change[i])
                    for i in np.flatnonzero(out))  # the other shapes' share
        want = opening - self.rest - moved
        out[self.driver] = np.interp(want, self.grid, self.levels)  # within [0, 1]
        return out
