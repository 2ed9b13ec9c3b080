"""The inverse reader's per-shape inverse of MediaPipe's response curves."""

from __future__ import annotations

import numpy as np
import pytest

from engines.tracking.arkit_mapping import BLENDSHAPE_NAMES
from engines.tracking.response_curves import (
    MAX_GAIN,
    InverseResponse,
    ResponseCurves,
    own_categories,
)

LEVELS = np.linspace(0, 1, 6)


def curves_for(ict, **per_shape) -> ResponseCurves:
    """Flat (unread) responses except the named shapes' own categories: name=(rest, full),
    linear."""
    scores = np.zeros((ict.n_expression, len(LEVELS), len(BLENDSHAPE_NAMES)))
    source = own_categories(ict.expression_names)
    for name, (rest, full) in per_shape.items():
        j = ict.expression_names.index(name)
        scores[j, :, source[j]] = rest + (full - rest) * LEVELS
    return ResponseCurves(LEVELS, scores, ict.expression_names)


def scores_for(ict, **named) -> np.ndarray:
    """52 scores, each shape's own category set from ``name=score``."""
    s = np.zeros(len(BLENDSHAPE_NAMES))
    source = own_categories(ict.expression_names)
    for name, v in named.items():
        s[source[ict.expression_names.index(name)]] = v
    return s


def test_a_read_curve_is_undone(ict) -> None:
    inv = InverseResponse(curves_for(ict, jawOpen=(0.1, 0.8)))  # a gain under the cap
    j = ict.expression_names.index("jawOpen")
    for w in (0.0, 0.3, 0.55, 1.0):
        assert inv(scores_for(ict, jawOpen=0.1 + 0.7 * w))[j] == pytest.approx(w, abs=1e-4)
    assert inv(scores_for(ict, jawOpen=0.05))[j] == 0.0  # below the head's own rest
    assert inv(scores_for(ict, jawOpen=0.95))[j] == 1.0
    assert inv.inverted == ("jawOpen",)


def test_unread_shapes_pass_through_by_name(ict) -> None:
    inv = InverseResponse(curves_for(ict, jawOpen=(0.1, 0.7), browDown_L=(0.0, 0.1)))
    psi = inv(scores_for(ict, browDown_L=0.4, mouthSmile_L=0.3))
    assert psi[ict.expression_names.index("browDown_L")] == pytest.approx(0.4)
    assert psi[ict.expression_names.index("mouthSmile_L")] == pytest.approx(0.3)
    assert "browDown_L" not in inv.inverted


def test_a_category_other_shapes_move_is_not_inverted(ict) -> None:
    curves = curves_for(ict, jawOpen=(0.0, 0.8), mouthSmile_L=(0.0, 0.8),
                        mouthSmile_R=(0.0, 0.8))
    funnel = ict.expression_names.index("mouthFunnel")
    jaw = own_categories(ict.expression_names)[ict.expression_names.index("jawOpen")]
    curves.scores[funnel, :, jaw] = 0.5 * LEVELS  # a funnel reads as an open jaw
    inv = InverseResponse(curves)
    assert inv.inverted == ("mouthSmile_L", "mouthSmile_R")
    assert inv(scores_for(ict, jawOpen=0.4))[ict.expression_names.index("jawOpen")] \
        == pytest.approx(0.4)


def test_sides_are_inverted_together(ict) -> None:
    inv = InverseResponse(curves_for(ict, mouthSmile_L=(0.0, 0.8), mouthSmile_R=(0.0, 0.1)))
    assert inv.inverted == ()


def test_eyelids_keep_their_scores(ict) -> None:
    """Inverted, the lids shut on real half-lidded frames (see the module's notes)."""
    inv = InverseResponse(curves_for(ict, eyeBlink_L=(0.0, 0.8), eyeBlink_R=(0.0, 0.8)))
    assert inv.inverted == ()
    assert inv(scores_for(ict, eyeBlink_L=0.6))[ict.expression_names.index("eyeBlink_L")] \
        == pytest.approx(0.6)


def test_gain_is_capped(ict) -> None:
    inv = InverseResponse(curves_for(ict, jawOpen=(0.0, 0.35)))  # 2.9 units per unit
    j = ict.expression_names.index("jawOpen")
    assert inv(scores_for(ict, jawOpen=0.35))[j] == pytest.approx(0.35 * MAX_GAIN, abs=1e-4)


def test_one_category_feeds_both_sides(ict) -> None:
    inv = InverseResponse(curves_for(ict, browInnerUp_L=(0.2, 0.9), browInnerUp_R=(0.2, 0.9)))
    psi = inv(scores_for(ict, browInnerUp_L=0.55))
    left, right = (psi[ict.expression_names.index(f"browInnerUp_{s}")] for s in "LR")
    assert left == pytest.approx(0.5, abs=1e-4) and right == pytest.approx(0.5, abs=1e-4)


def test_shipped_curves(ict) -> None:
    curves = ResponseCurves.load()
    assert curves.expression_names == ict.expression_names
    inv = InverseResponse(curves)
    assert {"jawOpen", "mouthSmile_L", "mouthSmile_R"} <= set(inv.inverted)
    rng = np.random.default_rng(0)
    for s in rng.uniform(0, 1, (50, len(BLENDSHAPE_NAMES))):
        psi = inv(s)
        assert psi.shape == (ict.n_expression,) and np.all((psi >= 0) & (psi <= 1))


def test_curves_round_trip(ict, tmp_path) -> None:
    c = curves_for(ict, jawOpen=(0.0, 0.7))
    c.save(tmp_path / "r.npz")
    back = ResponseCurves.load(tmp_path / "r.npz")
    assert back.expression_names == c.expression_names
    assert np.allclose(back.scores, c.scores) and np.allclose(back.levels, c.levels)
