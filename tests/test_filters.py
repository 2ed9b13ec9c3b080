"""One-Euro filter on synthetic signals: jitter drops >= 5x, a step is followed in <= 3 frames,
the lids and the jaw faster, with a play that holds a still face."""

from __future__ import annotations

import numpy as np
import pytest

from engines.tracking.filters import OneEuroFilter


@pytest.mark.parametrize("fps", [25, 30])
def test_still_input_jitter_drops_at_least_five_times(fps: int) -> None:
    rng = np.random.default_rng(0)
    n, dims = 300, 53
    clean = np.full(dims, 0.3)
    noisy = clean + rng.normal(0, 0.02, size=(n, dims))
    f = OneEuroFilter()
    out = np.array([f(x, i / fps) for i, x in enumerate(noisy)])
    settle = fps  # ignore the first second
    jitter_in = np.abs(np.diff(noisy[settle:], axis=0)).mean()
    jitter_out = np.abs(np.diff(out[settle:], axis=0)).mean()
    assert jitter_out * 5 <= jitter_in, (jitter_in, jitter_out)
    assert np.abs(out[settle:] - clean).mean() < np.abs(noisy[settle:] - clean).mean()


@pytest.mark.parametrize("fps", [25, 30])
@pytest.mark.parametrize("step", [0.3, 0.8])
def test_step_is_followed_within_three_frames(fps: int, step: float) -> None:
    rng = np.random.default_rng(1)
    n = 80
    signal = np.where(np.arange(n) < 40, 0.1, 0.1 + step)[:, None] + rng.normal(0, 0.01, (n, 4))
    f = OneEuroFilter()
    out = np.array([f(x, i / fps) for i, x in enumerate(signal)])
    target = 0.1 + 0.9 * step
    assert (out[42] >= target).all(), out[40:44, 0]  # frames 40, 41, 42


def test_first_value_and_reset_pass_through() -> None:
    f = OneEuroFilter()
    assert np.array_equal(f(np.array([1.0, 2.0]), 0.0), [1.0, 2.0])
    f(np.array([5.0, 5.0]), 0.04)
    f.reset()
    assert np.array_equal(f(np.array([3.0, 3.0]), 1.0), [3.0, 3.0])


def test_non_increasing_time_restarts_instead_of_dividing_by_zero() -> None:
    f = OneEuroFilter()
    f(np.zeros(3), 1.0)
    out = f(np.ones(3), 1.0)
    assert np.all(np.isfinite(out)) and np.array_equal(out, np.ones(3))


def test_fast_elements_follow_small_quick_moves_with_less_lag() -> None:
    """Elements marked fast (the lids, the jaw) follow a small quick move (a half-open
    blink, a syllable's jaw) closer than the rest, and still cut still jitter >= 3x."""
    fps, n = 25, 80
    fast = np.array([True, False])
    move = np.where((np.arange(n) >= 40) & (np.arange(n) < 44), 0.35, 0.1)
    signal = np.stack([move, move], 1)
    f = OneEuroFilter(fast=fast)
    out = np.array([f(x, i / fps) for i, x in enumerate(signal)])
    assert out[40, 0] > out[40, 1] + 0.03  # the fast one rises nearer 0.35
    assert out[44, 0] < out[44, 1] - 0.05  # and falls back sooner
    assert np.abs(out[40:46, 0] - move[40:46]).sum() < np.abs(out[40:46, 1] - move[40:46]).sum()
    rng = np.random.default_rng(0)
    noisy = 0.3 + rng.normal(0, 0.02, (300, 2))
    f = OneEuroFilter(fast=fast)
    still = np.array([f(x, i / fps) for i, x in enumerate(noisy)])[fps:]
    cut = np.abs(np.diff(noisy[fps:], axis=0)).mean(0) / np.abs(np.diff(still, axis=0)).mean(0)
    assert cut[0] >= 3 and cut[1] >= 5 and cut[1] > cut[0]


def test_the_tracker_marks_the_lids_and_the_jaw_fast() -> None:
    from engines.tracking.filters import fast_elements

    names = ("jawOpen", "eyeBlink_L", "eyeSquint_R", "eyeWide_L", "mouthSmile_L", "browDown_L")
    mask = fast_elements(names)
    assert mask.tolist() == [True, True, True, True, False, False, False, False, False]
    f = OneEuroFilter(fast=mask)
    assert np.array_equal(f(np.zeros(4), 0.0), np.zeros(4))  # another length: plain filter


def test_the_fast_elements_play_keeps_still_jitter_in_and_lets_moves_through() -> None:
    """With play, a fast element's output stays put while the filtered value wanders
    within the band (a still face), is never further than the play from the filtered
    value, and follows a move as before, at most the play behind."""
    from engines.tracking.filters import OneEuroConfig

    fps, play = 25, 0.005
    fast = np.array([True, False])
    rng = np.random.default_rng(0)
    noisy = 0.3 + rng.normal(0, 0.01, (300, 2))
    plain = OneEuroFilter(OneEuroConfig(fast_play=0.0), fast=fast)
    held = OneEuroFilter(OneEuroConfig(fast_play=play), fast=fast)
    a = np.array([plain(x, i / fps) for i, x in enumerate(noisy)])[fps:]
    b = np.array([held(x, i / fps) for i, x in enumerate(noisy)])[fps:]
    jitter_a, jitter_b = np.abs(np.diff(a, axis=0)).mean(0), np.abs(np.diff(b, axis=0)).mean(0)
    assert jitter_b[0] * 2 <= jitter_a[0]  # the fast element's still jitter at least halved
    assert jitter_b[1] == jitter_a[1]  # the others have no play
    assert np.abs(b - a).max() <= play + 1e-12
    move = np.where(np.arange(80) >= 40, 0.6, 0.1)
    signal = np.stack([move, move], 1)
    plain, held = (OneEuroFilter(OneEuroConfig(fast_play=p), fast=fast) for p in (0, play))
    a = np.array([plain(x, i / fps) for i, x in enumerate(signal)])
    b = np.array([held(x, i / fps) for i, x in enumerate(signal)])
    assert np.abs(b[:, 0] - a[:, 0]).max() <= play + 1e-12
    assert b[42, 0] >= 0.1 + 0.9 * 0.5 - play  # a step still lands within three frames
