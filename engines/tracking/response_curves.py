"""How MediaPipe reads the ICT head, and the inverse that the "inverse" reader applies.

MediaPipe's blendshape scores are not the ICT head's weights. Rendered with one shape at
a time (``scripts/measure_mediapipe_response.py``, 16 identities), the head's
``jawOpen = 1`` reads as about 0.73, ``mouthSmile_L = 1`` as 0.73, ``eyeBlink_L = 1`` as
0.41, and the head at rest already reads ``browInnerUp`` 0.69; some shapes (browDown,
cheekSquint, noseSneer, cheekPuff) get no response at all. Passing the scores through by
name (the "mediapipe" reader) therefore makes the avatar's mouth move about three quarters
as much as the person's.

The "inverse" reader undoes each shape's response curve: for a score ``s`` of the shape's
own MediaPipe category it gives the weight whose render MediaPipe reads as ``s``, so the
avatar, read back, moves as much as the person. Per shape, only where MediaPipe responds
(the curve rises by at least ``MIN_SPAN`` from rest to full), where the category means
this shape (no other shape moves it by more than ``MAX_CROSSTALK`` of that rise: eyeBlink
also rises when the eyes look down, so amplifying it would close the avatar's eyes when
the person looks down), and with the gain capped at ``MAX_GAIN`` (a weak response would
otherwise turn tracker noise into motion). The two sides of a shape are inverted together
or not at all, so a brow or a glance never moves more on one side. Other shapes keep the
score by name. Scores at or below the head's own resting reading give 0.

The eyelids (``eyeBlink``) keep their scores by name although their curves qualify:
inverted, they shut the avatar's eyes on the half-lidded frames of real talking heads
(eye opening range 1.34x the speaker's on held-out GRID clips, against 0.68x by name;
``scripts/bench_fidelity.py``). A real person's lid aperture differs from the head's, which
one head-only curve cannot undo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.tracking.arkit_mapping import BLENDSHAPE_NAMES, mapping_matrix

RESPONSE_FILE = Path(__file__).parent / "data" / "mediapipe_response.npz"
MIN_SPAN = 0.3  # a response curve that rises less than this is not inverted
MAX_GAIN = 1.5  # at most this many units of weight per unit of score, end to end
MAX_CROSSTALK = 0.5  # another shape may move the category by at most this share of the rise
BY_NAME = ("eyeBlink_L", "eyeBlink_R")  # never inverted (see above)


@dataclass(frozen=True)
class ResponseCurves:
    """MediaPipe's median scores with each shape alone at each of ``levels``; measured over
    several identities and head poses."""

    levels: np.ndarray  # (L,) weights, increasing from 0 to 1
    scores: np.ndarray  # (E, L, 52) median scores, in ``BLENDSHAPE_NAMES`` order
    expression_names: tuple[str, ...]  # (E,) the face model's shapes

    @classmethod
    def load(cls, path: Path = RESPONSE_FILE) -> ResponseCurves:
        with np.load(path) as f:
            return cls(f["levels"], f["scores"], tuple(str(n) for n in f["expression_names"]))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, levels=self.levels, scores=self.scores,
                            expression_names=np.array(self.expression_names))

    @property
    def own(self) -> np.ndarray:
        """(E, L) each shape's own category's curve."""
        source = own_categories(self.expression_names)
        return self.scores[np.arange(len(source)), :, source]

    def crosstalk(self) -> np.ndarray:
        """(E,) the most any other shape (one not feeding the same category) moves each
        shape's own category, at full weight."""
        source = own_categories(self.expression_names)
        change = np.abs(self.scores[:, -1] - self.scores[:, 0])  # (E, 52)
        out = np.zeros(len(source))
        for j, cat in enumerate(source):
            others = source != cat  # browInnerUp_L and _R both feed browInnerUp
            out[j] = change[others, cat].max()
        return out


def other_side(name: str) -> str | None:
    """``mouthSmile_L`` -> ``mouthSmile_R`` (and back); None for a shape without sides."""
    for a, b in (("_L", "_R"), ("_R", "_L")):
        if name.endswith(a):
            return name[: -len(a)] + b
    return None


def own_categories(expression_names: tuple[str, ...]) -> np.ndarray:
    """(E,) each shape's own MediaPipe category, as an index into ``BLENDSHAPE_NAMES``."""
    return mapping_matrix(list(BLENDSHAPE_NAMES), expression_names).argmax(1)


class InverseResponse:
    """MediaPipe's 52 scores (in ``BLENDSHAPE_NAMES`` order) -> ψ (E,) in [0, 1]."""

    def __init__(self, response: ResponseCurves) -> None:
        self.source = own_categories(response.expression_names)  # (E,)
        self.levels = np.asarray(response.levels, np.float64)
        self.expression_names = response.expression_names
        self.grids: dict[int, np.ndarray] = {}  # shape -> the scores at ``levels``
        grids = np.maximum.accumulate(np.asarray(response.own, np.float64), axis=1)  # (E, L)
        spans = grids[:, -1] - grids[:, 0]  # a response only rises with the weight
        names = self.expression_names
        readable = {n for n, span, talk in zip(names, spans, response.crosstalk(), strict=True)
                    if span >= MIN_SPAN and talk <= MAX_CROSSTALK * span and n not in BY_NAME}
        for j, (grid, span) in enumerate(zip(grids, spans, strict=True)):
            if not {names[j], other_side(names[j])} <= readable | {None}:
                continue
            top = max(grid[-1], grid[0] + 1.0 / MAX_GAIN)  # a flatter curve: less gain
            grid = grid[0] + (grid - grid[0]) * (top - grid[0]) / span
            self.grids[j] = grid + 1e-6 * np.arange(len(grid))  # strictly increasing

    @property
    def inverted(self) -> tuple[str, ...]:
        """The shapes whose response is undone (the rest pass through by name)."""
        return tuple(self.expression_names[j] for j in sorted(self.grids))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, np.float64)  # (52,)
        psi = s[self.source].copy()  # (E,)
        for j, grid in self.grids.items():
            psi[j] = np.interp(s[self.source[j]], grid, self.levels)
        return np.clip(psi, 0.0, 1.0)
