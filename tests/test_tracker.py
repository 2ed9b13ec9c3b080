"""Tracking: name mapping, left/right on renders, head pose, no face, several faces,
odd frame sizes and formats, neutral calibration."""

from __future__ import annotations

import av
import numpy as np
import pytest

from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture
from engines.tracking.arkit_mapping import mapping_matrix, mediapipe_to_arkit
from engines.tracking.frames import fit_for_tracker, to_rgb
from engines.tracking.tracker import RANGE_MAX_GAIN, FaceTracker, TrackerConfig, range_gains

# MediaPipe Blendshape V2 categories, in its output order
MP_NAMES = [
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
]


def test_name_table() -> None:
    assert len(MP_NAMES) == 52
    assert mediapipe_to_arkit("_neutral") == ()
    assert mediapipe_to_arkit("eyeBlinkLeft") == ("eyeBlink_L",)
    assert mediapipe_to_arkit("mouthSmileRight") == ("mouthSmile_R",)
    assert mediapipe_to_arkit("browInnerUp") == ("browInnerUp_L", "browInnerUp_R")
    assert mediapipe_to_arkit("cheekPuff") == ("cheekPuff_L", "cheekPuff_R")
    assert mediapipe_to_arkit("jawLeft") == ("jawLeft",)
    assert mediapipe_to_arkit("mouthRight") == ("mouthRight",)


def test_mapping_matrix_covers_all_53_ict_shapes(ict) -> None:
    m = mapping_matrix(list(MP_NAMES), ict.expression_names)
    assert m.shape == (53, 52)
    assert (m.sum(1) == 1).all()  # every ICT shape fed by exactly one score
    assert m[:, 0].sum() == 0  # _neutral dropped
    scores = np.zeros(52)
    scores[MP_NAMES.index("browInnerUp")] = 0.7
    psi = m @ scores
    assert psi[ict.expression_names.index("browInnerUp_L")] == 0.7
    assert psi[ict.expression_names.index("browInnerUp_R")] == 0.7
    with pytest.raises(ValueError, match="unknown"):
        mapping_matrix(["tongueOut"], ict.expression_names)
    with pytest.raises(ValueError, match="feeds"):
        mapping_matrix(list(MP_NAMES[:-1]), ict.expression_names)


@pytest.fixture(scope="module")
def render_head(ict):
    cam = PerspectiveCamera(fov_y_deg=20, eye=(0, 0, 75), target=(0, 0, 0))
    renderer = MeshRenderer(
        ict.topology,
        RenderConfig(width=480, height=480, samples=4),
        texture=plain_skin_texture(ict),
    )

    def render(weights: dict[str, float] | None = None, yaw: float = 0.0) -> np.ndarray:
        s, _, p = ict.zero_params(1)
        p[0, 1] = yaw
        return renderer.render(ict(s, ict.expression_vector(weights or {}), p)[0], cam)

    yield render
    renderer.close()


@pytest.fixture
def tracker(ict):
    with FaceTracker(ict.expression_names, TrackerConfig(smoothing=None)) as t:
        yield t


def value(ict, result, name: str) -> float:
    return float(result.expression[ict.expression_names.index(name)])


@pytest.mark.parametrize("shape", ["eyeBlink", "mouthSmile"])
def test_one_sided_shapes_keep_their_side(ict, render_head, tracker, shape) -> None:
    left = tracker.process(render_head({f"{shape}_L": 1.0}), 0.0)
    right = tracker.process(render_head({f"{shape}_R": 1.0}), 0.1)
    assert left.found and right.found
    assert value(ict, left, f"{shape}_L") > value(ict, left, f"{shape}_R") + 0.1
    assert value(ict, right, f"{shape}_R") > value(ict, right, f"{shape}_L") + 0.1


def test_jaw_open_is_read(ict, render_head, tracker) -> None:
    closed = tracker.process(render_head(), 0.0)
    opened = tracker.process(render_head({"jawOpen": 0.8}), 0.1)
    assert value(ict, opened, "jawOpen") > value(ict, closed, "jawOpen") + 0.25


@pytest.mark.parametrize("yaw", [0.35, -0.35])
def test_head_yaw_sign_matches_the_face_model(render_head, tracker, yaw) -> None:
    r = tracker.process(render_head(yaw=yaw), 0.0)
    assert r.found
    assert np.sign(r.rotation[1]) == np.sign(yaw) and abs(r.rotation[1]) > 0.2
    assert abs(r.rotation[0]) < 0.15 and abs(r.rotation[2]) < 0.1


def test_no_face_holds_then_eases_to_neutral(ict, render_head) -> None:
    cfg = TrackerConfig(smoothing=None, hold_s=0.5, ease_s=1.0)
    blank = np.full((240, 320, 3), 90, np.uint8)
    with FaceTracker(ict.expression_names, cfg) as t:
        seen = t.process(render_head({"jawOpen": 0.8}, yaw=0.3), 0.0)
        held = t.process(blank, 0.3)
        easing = t.process(blank, 1.0)
        lost = t.process(blank, 2.0)
    assert seen.found and not held.found
    assert held.status == "held" and np.array_equal(held.expression, seen.expression)
    assert easing.status == "easing"
    assert np.allclose(easing.rotation, 0.5 * seen.rotation)
    assert lost.status == "lost" and not lost.expression.any() and not lost.rotation.any()


def test_several_faces_pick_the_largest_and_keep_it(ict, render_head, tracker) -> None:
    import cv2

    big = render_head({"jawOpen": 0.9})
    small = cv2.resize(render_head(), (240, 240))
    canvas = np.full((480, 760, 3), 110, np.uint8)
    canvas[:, :480] = big
    canvas[120:360, 500:740] = small
    first = tracker.process(canvas, 0.0)
    assert first.n_faces == 2
    assert first.landmarks[:, 0].mean() < 480 / 760  # the big face on the left
    assert value(ict, first, "jawOpen") > 0.3
    second = tracker.process(canvas, 0.04)
    assert second.landmarks[:, 0].mean() < 480 / 760


@pytest.mark.parametrize("size", [(1, 1), (31, 17), (251, 333), (2160, 3840)])
def test_odd_frame_sizes_do_not_break_tracking(ict, render_head, tracker, size) -> None:
    import cv2

    h, w = size
    frame = cv2.resize(render_head(), (w, h)) if min(h, w) > 200 else np.zeros((h, w, 3), np.uint8)
    r = tracker.process(frame, 0.0)
    assert r.found == (min(h, w) > 200)
    fitted = fit_for_tracker(frame)
    assert 1 <= max(fitted.shape[:2]) <= 640
    if min(h, w) > 200:
        assert abs(fitted.shape[1] / fitted.shape[0] - w / h) < 0.01


def test_frame_formats() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200
    assert np.array_equal(to_rgb(rgb[..., ::-1], "bgr"), rgb)
    assert to_rgb(np.zeros((4, 6), np.uint8), "gray").shape == (4, 6, 3)
    assert np.array_equal(to_rgb(np.dstack([rgb, np.full((4, 6), 255, np.uint8)]), "rgba"), rgb)
    frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), (200, 30, 30), np.uint8), "rgb24")
    back = to_rgb(frame.reformat(format="yuv420p"))
    assert back.shape == (16, 16, 3) and back.flags["C_CONTIGUOUS"]
    assert back[..., 0].mean() > 150 and back[..., 1].mean() < 80
    with pytest.raises(ValueError, match="uint8"):
        to_rgb(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="cannot read"):
        to_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="not an image"):
        to_rgb(np.zeros((0, 4, 3), np.uint8))


def test_neutral_calibration_zeroes_the_resting_face(ict, render_head, tracker) -> None:
    rest = render_head()
    raw = tracker.process(rest, 0.0)
    assert raw.expression.max() > 0.1  # the resting face reads as a slight expression
    assert not tracker.calibrated
    tracker.start_neutral_calibration(3)
    for i in range(3):
        tracker.process(rest, 0.1 * (i + 1))
    assert not tracker.calibrating and tracker.calibrated
    calibrated = tracker.process(rest, 0.5)
    assert calibrated.expression.max() < 0.05
    smile = tracker.process(render_head({"mouthSmile_L": 1.0, "mouthSmile_R": 1.0}), 0.6)
    assert value(ict, smile, "mouthSmile_L") > 0.3


@pytest.mark.parametrize("shape, weight", [("jawOpen", 0.8), ("mouthSmile_L", 0.8)])
def test_inverse_reader_reads_the_heads_own_weight(ict, render_head, shape, weight) -> None:
    """MediaPipe reads the head's jaw and smile short; the inverse reader undoes that, on
    a render at a distance and FOV the curves were not measured at."""
    image = render_head({shape: weight})
    read = {}
    for reader in ("mediapipe", "inverse"):
        cfg = TrackerConfig(smoothing=None, video=False, reader=reader)
        with FaceTracker(ict.expression_names, cfg) as t:
            res = t.process(image, 0.0)
        assert res.found
        read[reader] = value(ict, res, shape)
    assert abs(read["inverse"] - weight) < abs(read["mediapipe"] - weight) - 0.05
    assert abs(read["inverse"] - weight) < 0.2


def test_the_openings_reader_opens_the_jaw_as_far_as_the_render(ict, render_head) -> None:
    """On renders of the head itself (a FOV and distance the curves were not measured at),
    the reader gives back the jaw the head was rendered with, over the range closer than
    the blendshape score by name (which reads a wide-open jaw short)."""
    error = {"mediapipe": 0.0, "openings": 0.0}
    for weight in (0.3, 0.6, 0.9):
        image = render_head({"jawOpen": weight})
        for reader in error:
            cfg = TrackerConfig(smoothing=None, video=False, reader=reader)
            with FaceTracker(ict.expression_names, cfg) as t:
                res = t.process(image, 0.0)
            assert res.found
            assert np.all((res.expression >= 0) & (res.expression <= 1))
            read = res.expression[ict.expression_names.index("jawOpen")]
            error[reader] += abs(read - weight)
            if reader == "openings":
                assert abs(read - weight) < 0.12
    assert error["openings"] < error["mediapipe"] - 0.1, error


def test_range_gains_map_each_moved_shapes_peak_to_one() -> None:
    readings = np.zeros((9, 4))
    readings[2:5, 0] = 0.5  # held for three frames: gain 2
    readings[4, 1] = 0.9  # one frame only: noise, not a peak
    readings[:, 2] = 0.1  # never clearly moved: left alone
    readings[3:6, 3] = 0.25  # a weak peak: the gain is capped
    gains = range_gains(readings)
    assert gains[0] == pytest.approx(2.0)
    assert gains[1] == 1.0 and gains[2] == 1.0
    assert gains[3] == pytest.approx(RANGE_MAX_GAIN)


def test_range_calibration_scales_the_users_full_smile_to_one(ict, render_head, tracker
                                                              ) -> None:
    """MediaPipe reads the head's full smile short; after the user (here the head) smiles
    fully during the range calibration, a full smile reads 1 and half of it about half."""
    full = render_head({"mouthSmile_L": 1.0, "mouthSmile_R": 1.0})
    before = value(ict, tracker.process(full, 0.0), "mouthSmile_L")
    assert before < 0.95  # short of the full weight
    tracker.start_range_calibration(4)
    for i in range(4):
        tracker.process(full, 0.1 * (i + 1))
    assert not tracker.calibrating and tracker.range_gains is not None
    assert value(ict, tracker.process(full, 1.0), "mouthSmile_L") > 0.97
    half = value(ict, tracker.process(render_head({"mouthSmile_L": 0.5,
                                                   "mouthSmile_R": 0.5}), 1.1), "mouthSmile_L")
    assert 0.1 < half < 0.8
    jaw = tracker.range_gains[ict.expression_names.index("jawOpen")]
    assert jaw == 1.0  # not moved during the calibration: not amplified
