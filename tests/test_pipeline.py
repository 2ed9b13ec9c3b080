"""The Retargeter: its modes (track, emotion, sliders), its overlapped form (the same
frames), stage timings."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from engines.files.assets import asset_root
from engines.render.renderer import RenderConfig
from engines.retarget.overlapped import OverlappedRetargeter
from engines.retarget.retargeter import STAGES, Retargeter, stage_summary, with_emotion
from engines.retarget.target import Target


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


def test_with_emotion_lays_the_erm_over_the_parameters() -> None:
    psi, rot = np.array([0.2, 0.9, 0.0]), np.array([0.1, 0.0, 0.0])
    erm_psi, erm_theta = np.array([0.5, 0.1, 0.0]), np.array([0.0, 0.2, 0.0, 0.3, 0.0, 0.0])
    out_psi, out_rot, gaze = with_emotion(psi, rot, erm_psi, erm_theta)
    np.testing.assert_allclose(out_psi, [0.5, 0.9, 0.0])
    np.testing.assert_allclose(out_rot, [0.1, 0.2, 0.0])
    np.testing.assert_allclose(gaze, [0.3, 0.0, 0.0])


def test_sliders_mode_renders_the_erm_without_tracking(ict, emotion_models) -> None:
    frame = np.full((120, 160, 3), 90, np.uint8)
    with Retargeter(ict, render_config=RenderConfig(64, 64),
                    emotion_models=emotion_models) as rt:
        neutral = rt.process(frame, 0.0)  # track mode: no face in a grey frame
        assert neutral.face == "lost" and neutral.track is not None
        rt.set_mode("sliders")
        rt.set_sliders({"surprised": 1.0})
        surprised = rt.process(frame, 0.04)
        same = rt.render_parameters(np.zeros(ict.n_expression), np.zeros(3),
                                    emotion={"surprised": 1.0})
    assert surprised.face == "none" and surprised.track is None
    assert "track" not in surprised.timings_ms and "render" in surprised.timings_ms
    jaw = ict.expression_names.index("jawOpen")
    assert surprised.expression[jaw] > 0.2 > neutral.expression[jaw]
    assert np.abs(neutral.image.astype(int) - surprised.image).max() > 40
    np.testing.assert_array_equal(surprised.image, same.image)


def test_sliders_only_streams_never_load_the_tracker(ict, emotion_models) -> None:
    with Retargeter(ict, render_config=RenderConfig(32, 32),
                    emotion_models=emotion_models) as rt:
        rt.set_mode("sliders")
        rt.process(np.zeros((8, 8, 3), np.uint8), 0.0)
        assert rt._tracker is None


def test_emotion_mode_reads_a_smile_as_happy(ict, emotion_models) -> None:
    smile = photo_frame("london_008_smiling.jpg")
    with Retargeter(ict, render_config=RenderConfig(64, 64),
                    emotion_models=emotion_models) as rt:
        rt.set_mode("emotion")
        results = [rt.process(smile, i / 25) for i in range(12)]
    last = results[-1]
    assert last.face == "tracked" and last.emotion is not None
    label, intensity = last.emotion
    assert label == "happy" and 0 < intensity <= 1
    smile_shape = ict.expression_names.index("mouthSmile_L")
    assert last.expression[smile_shape] > 0.3  # the ERM's happy face, not the tracked one


def test_modes_need_the_emotion_models(ict) -> None:
    with Retargeter(ict, render_config=RenderConfig(32, 32)) as rt:
        with pytest.raises(ValueError, match="emotion models"):
            rt.set_mode("sliders")
        with pytest.raises(ValueError, match="unknown mode"):
            rt.set_mode("dance")
        with pytest.raises(ValueError, match="emotion models"):
            rt.render_parameters(np.zeros(ict.n_expression), np.zeros(3), emotion=[1] * 6)
        assert rt.mode == "track"


def photo_frame(name: str) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(asset_root() / "faces" / "london_set" / name))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
