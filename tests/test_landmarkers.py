"""The two landmarkers behind FaceTracker (engines/tracking/landmarkers.py): MediaPipe's own
(tflite) and its networks under ONNX Runtime (onnx), VIDEO mode, shared and batched
networks, the server and CLI switches."""

from __future__ import annotations

import threading

import av
import cv2
import numpy as np
import pytest

from engines.files.assets import asset_root
from engines.tracking.landmarkers import (
    OnnxLandmarker,
    OnnxNetworks,
    associate,
    onnx_providers,
    rect_from_landmarks,
)
from engines.tracking.tracker import FaceTracker, TrackerConfig

GRID = asset_root() / "video" / "grid_corpus"


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    with av.open(str(GRID / "bbaf2n.mpg")) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)][:30]


@pytest.fixture(scope="module")
def networks():
    nets = OnnxNetworks.local()
    yield nets
    nets.close()


def track(ict, frames, **cfg):
    with FaceTracker(ict.expression_names, TrackerConfig(smoothing=None, **cfg)) as t:
        return [t.process(f, i / 25) for i, f in enumerate(frames)]


def rotation_deg(a: np.ndarray, b: np.ndarray) -> float:
    rel = cv2.Rodrigues(a)[0].T @ cv2.Rodrigues(b)[0]
    return float(np.degrees(np.linalg.norm(cv2.Rodrigues(rel)[0])))


# -- geometry of the tracked crop --------------------------------------------------------
def test_next_rect_from_landmarks():
    lms = np.zeros((478, 3))
    lms[:, 0] = np.linspace(0.4, 0.6, 478)  # 0.2 wide
    lms[:, 1] = np.linspace(0.3, 0.4, 478)  # 0.1 high
    lms[[33, 263], :2] = [[0.45, 0.35], [0.55, 0.35]]  # eyes level
    cx, cy, w, h, r = rect_from_landmarks(lms, 640, 480)
    assert np.isclose(cx, 0.5) and np.isclose(cy, 0.35) and np.isclose(r, 0)
    assert np.isclose(w * 640, h * 480)  # square in pixels, on the long side
    assert np.isclose(w, 0.2 * 1.5)
    lms[263, 1] = 0.45  # the eye on the image's right lower: turned clockwise
    assert rect_from_landmarks(lms, 640, 480)[4] > 0


def test_detection_replaces_the_tracked_face_it_overlaps():
    tracked = [np.array([0.5, 0.5, 0.3, 0.3, 0.0]), np.array([0.1, 0.1, 0.1, 0.1, 0.0])]
    detected = [np.array([0.52, 0.5, 0.3, 0.3, 0.1])]
    out = associate(tracked, detected)
    assert len(out) == 2
    assert any(np.array_equal(r, detected[0]) for r in out)
    assert any(np.array_equal(r, tracked[1]) for r in out)  # the face nobody re-found stays


# -- against MediaPipe's own ---------------------------------------------------------------
def test_onnx_follows_tflite_on_a_talking_head(ict, frames, networks):
    """VIDEO mode, the tracker's defaults (up to 4 faces). Measured on all 8 GRID clips
    (scripts/bench_landmarker.py): 0.016 px, blendshape MAE 0.0004, 0.02°, while the face
    moves 0.38 px a frame; the bounds leave 5-10x room and stay below that motion."""
    ref = track(ict, frames)
    got = track(ict, frames, landmarker="onnx", onnx_networks=networks)
    assert [r.status for r in got] == [r.status for r in ref] == ["tracked"] * len(frames)
    size = (frames[0].shape[1], frames[0].shape[0])
    px = [np.linalg.norm((a.landmarks[:, :2] - b.landmarks[:, :2]) * size, axis=1).mean()
          for a, b in zip(got, ref, strict=True)]  # fmt: skip
    assert np.mean(px) < 0.1 and max(px) < 0.3
    assert np.mean([np.abs(a.blendshapes - b.blendshapes).mean()
                    for a, b in zip(got, ref, strict=True)]) < 0.003  # fmt: skip
    assert np.mean([rotation_deg(a.rotation, b.rotation)
                    for a, b in zip(got, ref, strict=True)]) < 0.2  # fmt: skip
    psi = [np.abs(a.expression - b.expression).max() for a, b in zip(got, ref, strict=True)]
    assert max(psi) < 0.1


def test_landmark_readers_run_on_onnx(ict, frames, networks):
    """The fit reader reads ψ and θ from the landmarks alone: no blendshape net, no matrix."""
    got = track(ict, frames[:5], landmarker="onnx", onnx_networks=networks, reader="fit")
    assert all(r.found and r.blendshapes is None for r in got)
    assert all(np.isfinite(r.expression).all() and np.isfinite(r.rotation).all() for r in got)


def test_one_face_video_mode_tracks_without_the_detector(frames, networks, monkeypatch):
    """max_faces = 1: the detector runs on the first frame and after the face is lost;
    between, each crop comes from the previous landmarks."""
    calls = []
    detect = networks.engine.detect
    monkeypatch.setattr(networks.engine, "detect",
                        lambda *a, **k: calls.append(1) or detect(*a, **k))  # fmt: skip
    lm = OnnxLandmarker(networks, video=True, max_faces=1, min_confidence=0.5, scores=True)
    blank = np.full_like(frames[0], 30)
    seq = [*frames[:10], blank, *frames[10:15]]
    found = [len(lm(f)) for f in seq]
    assert found == [1] * 10 + [0] + [1] * 5
    # the first frame, and the one after the blank: on the blank the tracked crop found no
    # face (presence below the threshold), so nothing was tracked into the next frame
    assert len(calls) == 2
    lm.close()


def test_no_face_is_the_lost_path_not_nan(ict, networks):
    blank = np.full((288, 360, 3), 127, np.uint8)
    got = track(ict, [blank] * 3, landmarker="onnx", onnx_networks=networks)
    assert [r.status for r in got] == ["lost"] * 3
    assert all(np.isfinite(r.expression).all() and not r.expression.any() for r in got)


def test_broken_landmark_function_is_a_clear_error(frames, networks):
    nets = OnnxNetworks(networks.engine, lambda x: np.zeros((len(x), 5)),
                        networks.blendshape_fn, networks.geometry)  # fmt: skip
    lm = OnnxLandmarker(nets, video=True, max_faces=1, min_confidence=0.5, scores=True)
    with pytest.raises(ValueError, match="landmark net gave"):
        lm(frames[0])


# -- shared by sessions --------------------------------------------------------------------
def test_batched_networks_give_each_session_its_own_answer(ict, frames, networks):
    """Two sessions on two threads through one pair of batchers get what each gets alone."""
    alone = track(ict, frames[:12], landmarker="onnx", onnx_networks=networks)
    batched = OnnxNetworks.batched(max_wait_ms=5.0)
    try:
        results: dict[int, list] = {}

        def session(k: int) -> None:
            results[k] = track(ict, frames[:12], landmarker="onnx", onnx_networks=batched)

        threads = [threading.Thread(target=session, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert batched.landmark_fn.stats.max_batch_size == 2  # the two met in one call
        for k in range(2):
            for a, b in zip(results[k], alone, strict=True):
                assert np.allclose(a.landmarks, b.landmarks, atol=1e-5)
                # 1e-4: see test_mediapipe_onnx.test_batched_equals_single
                assert np.allclose(a.blendshapes, b.blendshapes, atol=1e-4)
    finally:
        batched.close()


def test_cpu_sessions_share_direct_networks():
    """On a CPU the server's sessions call the networks directly (batching only adds the
    wait there: docs/PERFORMANCE.md); on a GPU they go through batchers."""
    assert onnx_providers("onnxruntime-cpu") == ["CPUExecutionProvider"]
    shared = OnnxNetworks.shared("onnxruntime-cpu")
    try:
        assert shared.landmark_fn == shared.engine.landmark_rows
        assert shared.providers == ["CPUExecutionProvider"]
    finally:
        shared.close()


def test_server_sessions_get_the_shared_networks(tmp_path, monkeypatch):
    from server.app import App
    from server.config import ServerConfig

    monkeypatch.setenv("VN3D_CACHE", str(tmp_path / "cache"))
    app = App(ServerConfig(size=64, sample_gallery=False, landmarker="onnx",
                           avatar_store=str(tmp_path / "store")))  # fmt: skip
    assert app.runtime.networks.onnx_networks is not None
    cfg = app.new_session().ctx.tracker_config
    assert cfg.landmarker == "onnx" and cfg.onnx_networks is app.runtime.networks.onnx_networks
    plain = App(ServerConfig(size=64, sample_gallery=False, avatar_store=str(tmp_path / "s2")))
    assert plain.runtime.networks.onnx_networks is None
    assert plain.new_session().ctx.tracker_config.landmarker == "tflite"


def test_cli_retarget_clip_on_onnx(tmp_path, capsys):
    from vn3d.cli import main

    out = tmp_path / "onnx.mp4"
    rc = main(["retarget-clip", str(GRID / "bbaf2n.mpg"), "--size", "64", "--landmarker",
               "onnx", "--out", str(out)])  # fmt: skip
    assert rc == 0 and out.is_file()
    assert "face found in 75" in capsys.readouterr().out


def test_photo_builds_read_landmarks_on_either(ict):
    """Avatar and dataset builds read a portrait's landmarks with the chosen landmarker
    (IMAGE mode): the same points within a fraction of a pixel."""
    from avatars.builder import AvatarBuilder, AvatarConfig
    from vn3d.cli import build_parser

    photo = cv2.cvtColor(cv2.imread(str(asset_root() / "faces" / "london_set" /
                                        "london_003_smiling.jpg")), cv2.COLOR_BGR2RGB)  # fmt: skip
    tfl, onnx = AvatarBuilder(ict), AvatarBuilder(ict, AvatarConfig(landmarker="onnx"))
    try:
        (a, n_a), (b, n_b) = tfl.landmarks(photo), onnx.landmarks(photo)
    finally:
        tfl.close()
        onnx.close()
    assert n_a == n_b == 1
    assert np.linalg.norm(a - b, axis=1).mean() < 0.5  # pixels of a 450 px photo
    parser = build_parser()
    for argv in (["dataset", "build", "photos", "--landmarker", "onnx"],
                 ["dataset", "sample", "--landmarker", "onnx"],
                 ["avatar", "build", "me.jpg", "--landmarker", "onnx"],
                 ["serve", "--landmarker", "onnx"]):  # fmt: skip
        assert parser.parse_args(argv).landmarker == "onnx"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--landmarker", "tpu"])
