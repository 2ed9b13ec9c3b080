"""The Retargeter and its overlapped form give the same frames; stage timings recorded."""

from __future__ import annotations

import av
import numpy as np
import torch

from engines.files.assets import asset_root
from engines.render.renderer import RenderConfig
from engines.retarget.overlapped import OverlappedRetargeter
from engines.retarget.retargeter import STAGES, Retargeter, Target, stage_summary


def grid_frames(n: int) -> list[av.VideoFrame]:
    with av.open(str(asset_root() / "video" / "grid_corpus" / "lbax4n.mpg")) as c:
        return [f for _, f in zip(range(n), c.decode(video=0), strict=False)]


def test_overlapped_equals_sequential(ict) -> None:
    frames = grid_frames(12)
    cfg = RenderConfig(96, 96)
    with Retargeter(ict, render_config=cfg) as seq:
        expected = [seq.process(f, i / 25) for i, f in enumerate(frames)]
    with Retargeter(ict, render_config=cfg) as rt, OverlappedRetargeter(rt) as ov:
        got = [ov.submit(f, i / 25) for i, f in enumerate(frames)] + [ov.flush()]
    assert got[0] is None and ov.flush() is None
    got = got[1:]
    assert len(got) == len(expected)
    for a, b in zip(expected, got, strict=True):
        assert np.allclose(a.track.expression, b.track.expression, atol=1e-6)
        assert np.array_equal(a.image, b.image)
    assert any(not np.array_equal(expected[0].image, e.image) for e in expected[1:])


def test_stage_timings_and_target_switch(ict) -> None:
    frames = grid_frames(4)
    with Retargeter(ict, render_config=RenderConfig(64, 64)) as rt:
        first = rt.process(frames[0], 0.0)
        assert {"track", "filter", "model", "render"} <= set(first.timings_ms)
        assert all(v >= 0 for v in first.timings_ms.values())
        other = Target("wide", torch.full((1, 3), 2.5))
        rt.set_target(other)
        second = rt.process(frames[0], 0.04)
        assert not np.array_equal(first.image, second.image)
        summary = stage_summary(list(rt.history))
    assert set(summary) <= set(STAGES) and summary["render"]["median_ms"] > 0
