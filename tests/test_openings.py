"""The "openings" reader: the avatar's jaw and lids set so its mouth and eyes open as far as
the person's (``engines/tracking/openings.py``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.tracking.openings import (
    CORNERS,
    EYES,
    MOUTH,
    OpeningCurves,
    OpeningMatcher,
    face_openings,
)

LEVELS = np.linspace(0, 1, 6)


def landmarks(mouth: float, eye_left: float, eye_right: float) -> np.ndarray:
    """(478, 3) points in a 100 px frame with a 0.5 eye-corner span and the given
    openings (in spans)."""
    p = np.zeros((478, 3))
    p[CORNERS[0]], p[CORNERS[1]] = (0.25, 0.4, 0), (0.75, 0.4, 0)
    for (a, b), d in zip((MOUTH, *EYES), (mouth, eye_left, eye_right), strict=True):
        p[a], p[b] = (0.5, 0.6, 0), (0.5, 0.6 + 0.5 * d, 0)
    return p


def test_openings_are_measured_in_eye_corner_spans() -> None:
    assert face_openings(landmarks(0.3, 0.1, 0.12), 100, 100) == pytest.approx([0.3, 0.1, 0.12])


def test_openings_do_not_change_when_the_head_turns() -> None:
    """In 3D (MediaPipe's z is scaled like x): a turn that foreshortens the frame's 2D
    distances leaves the openings alone."""
    p = landmarks(0.25, 0.1, 0.11)
    rot = cv2.Rodrigues(np.radians([20.0, 35.0, 5.0]))[0]
    turned = (p - 0.5) @ rot.T + 0.5
    assert face_openings(turned, 100, 100) == pytest.approx([0.25, 0.1, 0.11], abs=1e-9)
    flat = turned.copy()
    flat[:, 2] = 0  # the 2D reading would differ
    assert abs(face_openings(flat, 100, 100)[0] - 0.25) > 0.01


def curves(ict) -> OpeningCurves:
    """A head whose mouth opens 0.3 spans with the jaw and 0.1 with mouthFunnel, and whose
    eyes (0.12 at rest) close to 0.06 with their blink, linearly."""
    names = ict.expression_names
    o = np.zeros((len(names), len(LEVELS), 3))
    o[:, :, 1:] = 0.12
    o[names.index("jawOpen"), :, 0] = 0.3 * LEVELS
    o[names.index("mouthFunnel"), :, 0] = 0.1 * LEVELS
    o[names.index("eyeBlink_R"), :, 1] = 0.12 - 0.06 * LEVELS
    o[names.index("eyeBlink_L"), :, 2] = 0.12 - 0.06 * LEVELS
    return OpeningCurves(LEVELS, o, names)


def test_the_jaw_opens_the_mouth_as_far_as_the_persons(ict) -> None:
    names = ict.expression_names
    jaw, funnel, blink = (names.index(n) for n in ("jawOpen", "mouthFunnel", "eyeBlink_L"))
    c = curves(ict)
    assert [names[c.driver(k)] for k in range(3)] == ["jawOpen", "eyeBlink_R", "eyeBlink_L"]
    match = OpeningMatcher(c)
    psi = np.zeros(len(names))
    psi[jaw] = 0.9  # the score is replaced, not added to
    assert match(psi, [0.15, 0.12, 0.12])[jaw] == pytest.approx(0.5, abs=1e-4)
    psi[funnel] = 0.6  # the funnel already opens the mouth by 0.06: the jaw does the rest
    assert match(psi, [0.15, 0.12, 0.12])[jaw] == pytest.approx(0.3, abs=1e-4)
    assert match(psi, [0.0, 0.12, 0.12])[jaw] == 0.0  # never below 0
    assert match(psi, [0.9, 0.12, 0.12])[jaw] == 1.0  # nor above 1
    psi[blink] = 0.7
    out = match(psi, [0.15, 0.06, 0.06])
    assert out[funnel] == 0.6 and out[blink] == 0.7  # the other shapes and the eyes kept


def test_the_shipped_curves_are_the_heads(ict) -> None:
    """The measured file: for this head, the jaw opens the mouth (monotonically, to about
    a third of the eye-corner span) and each eye's own blink closes it."""
    c = OpeningCurves.load()
    assert c.expression_names == tuple(ict.expression_names)
    names = [c.expression_names[c.driver(k)] for k in range(3)]
    assert names == ["jawOpen", "eyeBlink_R", "eyeBlink_L"]
    jaw = c.openings[c.driver(0), :, 0]
    assert np.all(np.diff(jaw) > 0) and 0.2 < jaw[-1] - jaw[0] < 0.5
    assert c.openings[c.driver(1), -1, 1] < c.openings[c.driver(1), 0, 1] - 0.03


def test_degenerate_landmarks_leave_the_scores_alone(ict) -> None:
    """All points in one place, or NaN: no opening is measured and ψ is the other
    reader's, with no NaN."""
    jaw = ict.expression_names.index("jawOpen")
    match = OpeningMatcher(curves(ict))
    psi = np.zeros(ict.n_expression)
    psi[jaw] = 0.4
    for bad in (np.zeros((478, 3)), np.full((478, 3), np.nan)):
        measured = face_openings(bad, 100, 100)
        assert np.isnan(measured).all()
        out = match(psi, measured)
        assert np.isfinite(out).all() and out[jaw] == 0.4
