"""The landmark encoder: synthetic data is the model's own geometry, a small training run
learns, the shipped encoder reads synthetic and real faces, ONNX parity for every network,
and the tracker/server paths through a batcher."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engines.encoder.config import EncoderConfig
from engines.encoder.network import N_INPUTS, N_MESH, load_encoder, normalise, save_encoder
from engines.encoder.reader import EncoderReader, torch_batch_fn
from engines.encoder.synthetic import SyntheticLandmarks, euler_to_axis_angle
from engines.encoder.training import evaluate, train_encoder
from engines.face.correspondence import load_ict_correspondence
from engines.files.assets import asset_root
from engines.inference.batcher import InferenceBatcher
from engines.inference.networks import NETWORKS, project_networks
from engines.inference.onnx_export import export_onnx, onnx_parity
from engines.tracking.tracker import FaceTracker, TrackerConfig


@pytest.fixture(scope="module")
def synthetic(ict) -> SyntheticLandmarks:
    return SyntheticLandmarks(ict)


def test_synthetic_points_are_the_full_models_points(ict, synthetic) -> None:
    gen = torch.Generator().manual_seed(3)
    shape = torch.randn(4, ict.n_shape, generator=gen)
    psi = torch.rand(4, ict.n_expression, generator=gen) * 0.7
    rot = euler_to_axis_angle(torch.deg2rad(torch.tensor(
        [[10.0, -30, 5], [-20, 40, -10], [0, 0, 0], [25, 10, 20]])))
    pose = torch.cat([rot, torch.zeros(4, 3)], 1)
    with torch.no_grad():
        v = ict(shape, psi, pose).numpy()  # (4, V, 3)
    corr = load_ict_correspondence()
    mesh = corr.points(v, ict.topology.faces)  # (4, 468, 3)
    got = synthetic.points(shape, psi, rot).numpy()
    assert np.abs(got[:, :N_MESH] - mesh).max() < 1e-3  # cm
    # the iris centres are the front-most eyeball vertices (rest gaze) moved with the eyes
    for k, ids in ((N_MESH, ict.right_eye_ids), (N_MESH + 1, ict.left_eye_ids)):
        pupil = int(ids[ict.neutral[ids, 2].argmax()])
        assert np.abs(got[:, k] - v[:, pupil]).max() < 1e-3
    # subject's right eye (MediaPipe 468) lies at -x in the model (x is the subject's left)
    frontal = synthetic.points(torch.zeros(1, ict.n_shape), torch.zeros(1, ict.n_expression),
                               torch.zeros(1, 3))[0]
    assert frontal[N_MESH, 0] < 0 < frontal[N_MESH + 1, 0]


def test_normalise_ignores_where_and_how_big_the_face_is(synthetic) -> None:
    px, _, _ = synthetic.sample(8, torch.Generator().manual_seed(0), EncoderConfig())
    moved = px * 1.7 + torch.tensor([40.0, -25.0])
    assert torch.allclose(normalise(px), normalise(moved), atol=1e-5)
    assert normalise(px).shape == (8, N_INPUTS)
    mirrored = px * torch.tensor([-1.0, 1.0])  # a change of the face itself changes it
    assert not torch.allclose(normalise(px), normalise(mirrored), atol=1e-3)


def test_small_training_run_learns_and_round_trips(ict, tmp_path) -> None:
    cfg = EncoderConfig(hidden=(64,), steps=120, batch=128, lr=3e-3, eval_samples=512)
    result = train_encoder(ict, cfg, progress=False)
    first, last = result.metrics["loss_history"][0][1], result.metrics["loss_history"][-1][1]
    assert last < 0.75 * first
    held = result.metrics["held_out"]
    assert np.isfinite(list(held.values())).all() and held["rotation_error_deg"] < 30
    path = save_encoder(result.encoder, tmp_path, result.metrics)
    again = load_encoder(path)
    x = np.random.default_rng(0).normal(size=(5, N_INPUTS)).astype(np.float32)
    assert np.array_equal(torch_batch_fn(again)(x), torch_batch_fn(result.encoder)(x))
    assert onnx_parity(result.encoder, tmp_path / "landmark_encoder.onnx", x) <= 1e-4
    assert (tmp_path / "metrics.json").is_file()


def test_bad_encoder_files_are_refused(tmp_path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a landmark encoder"):
        load_encoder(tmp_path / "junk.npz")
    np.savez(tmp_path / "wrong.npz", expression_names=np.array(["a"]), hidden=np.array([4]),
             **{"w/net.0.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(ValueError, match="do not fit"):
        load_encoder(tmp_path / "wrong.npz")


def test_shipped_encoder_reads_synthetic_faces(synthetic) -> None:
    encoder = load_encoder()
    data = synthetic.sample(2048, torch.Generator().manual_seed(123), EncoderConfig())
    m = evaluate(encoder, data)
    zeros = float(data[1].mean())  # ψ MAE of predicting neutral
    # measured 2026-11-23 (docs/PERFORMANCE.md): well under the neutral baseline
    assert m["psi_mae"] < 0.6 * zeros
    assert m["rotation_error_deg"] < 4.0


@pytest.mark.parametrize("name", NETWORKS)
def test_onnx_parity_for_every_network(ict, tmp_path, name) -> None:
    module, n_in, inp, out = project_networks(ict.expression_names)[name]
    path = export_onnx(module, n_in, tmp_path / f"{name}.onnx", inp, out)
    rng = np.random.default_rng(1)
    for batch in (1, 7, 64):
        x = rng.uniform(0, 1, (batch, n_in)).astype(np.float32)
        assert onnx_parity(module, path, x) <= 1e-4


def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(asset_root() / "faces" / "london_set" / name))
    return np.ascontiguousarray(image[:, :, ::-1])


def test_tracker_with_the_encoder_reads_a_smile(ict) -> None:
    cfg = TrackerConfig(video=False, smoothing=None, reader="encoder")
    smile = [ict.expression_names.index(n) for n in ("mouthSmile_L", "mouthSmile_R")]
    with FaceTracker(ict.expression_names, cfg) as tracker:
        neutral = tracker.process(photo("london_008_neutral.jpg"), 0.0)
        smiling = tracker.process(photo("london_008_smiling.jpg"), 0.1)
    assert neutral.found and smiling.found
    # measured 0.14 -> 0.37 (MediaPipe's blendshapes: 0.31 -> 0.76)
    assert smiling.expression[smile].mean() > neutral.expression[smile].mean() + 0.12
    assert np.degrees(np.linalg.norm(neutral.rotation)) < 15  # a frontal studio portrait
    with pytest.raises(ValueError, match="unknown reader"):
        FaceTracker(ict.expression_names, TrackerConfig(reader="guess"))


def test_encoder_through_the_batcher_matches_in_process(ict) -> None:
    image = photo("london_018_smiling.jpg")
    direct = TrackerConfig(video=False, smoothing=None, reader="encoder")
    with FaceTracker(ict.expression_names, direct) as tracker:
        want = tracker.process(image, 0.0)
    encoder = load_encoder()
    with InferenceBatcher(torch_batch_fn(encoder), (N_INPUTS,), name="test") as batcher:
        cfg = TrackerConfig(video=False, smoothing=None, reader="encoder", encoder_fn=batcher)
        with FaceTracker(ict.expression_names, cfg) as tracker:
            got = tracker.process(image, 0.0)
        assert batcher.stats.requests == 1
    assert np.allclose(got.expression, want.expression, atol=1e-6)
    assert np.allclose(got.rotation, want.rotation, atol=1e-6)
    with pytest.raises(ValueError, match="another face model"):
        EncoderReader(("only", "two"), encoder=encoder)


def test_server_sessions_share_one_encoder_batcher(tmp_path) -> None:
    import asyncio
    import threading
    import time
    from fractions import Fraction

    import av

    from server.app import App
    from server.config import ServerConfig

    app = App(ServerConfig(size=64, reader="encoder", sample_gallery=False,
                           avatar_store=str(tmp_path / "store")))
    frame = av.VideoFrame.from_ndarray(photo("london_008_smiling.jpg"), "rgb24")
    frame.pts, frame.time_base = 0, Fraction(1, 90000)
    sessions = [app.new_session() for _ in range(3)]

    def both_stages(session) -> None:  # the tracker's and the render thread's, on one
        session.prepare()
        session.render(frame, time.perf_counter(), session.track(frame))

    threads = [threading.Thread(target=both_stages, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s.face for s in sessions] == ["tracked"] * 3
    assert app.runtime.networks.encoder_batcher.stats.requests == 3
    for s in sessions:
        s.close_retargeter()
    asyncio.run(app.close_all())
    with pytest.raises(RuntimeError):
        app.runtime.networks.encoder_batcher(np.zeros(N_INPUTS, np.float32))  # closed with the app


def test_cli_exports_every_network_and_says_when_tensorrt_is_missing(tmp_path, capsys) -> None:
    from trt_build.availability import tensorrt_available
    from vn3d.cli import main

    assert main(["engines", "export", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == [
        "emotion_detector.onnx", "emotion_detector_calibrated.onnx", "erm.onnx",
        "landmark_encoder.onnx"]
    if tensorrt_available()[0]:
        return  # a GPU machine builds instead (tests/test_trt_build.py)
    assert main(["engines", "build", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "TensorRT cannot be used" in err and "pypi.nvidia.com" in err
