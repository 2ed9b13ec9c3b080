"""The "fit" reader recovers known expressions and head rotations from landmarks made by
the face model itself, keeps ψ in [0, 1], and survives degenerate input."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from engines.encoder.synthetic import SyntheticLandmarks
from engines.tracking.landmark_fit import FLIP, N_MESH, FitConfig, LandmarkFitReader

W, H = 640, 480


@pytest.fixture(scope="module")
def points(ict):
    return SyntheticLandmarks(ict, noise=np.zeros(N_MESH + 2))


def mediapipe_like(points, shape, psi, rotation, scale=9.0, noise_px=0.0, seed=0):
    """The model's landmarks as MediaPipe gives them: (478, 3) normalised, image axes."""
    p = points.points(shape, psi, rotation)[0, :N_MESH].double().numpy()  # (468, 3) cm
    img = (p - p.mean(0)) * scale * FLIP + np.array([W / 2, H / 2, 0.0])
    img += np.random.default_rng(seed).normal(0, noise_px, img.shape)
    out = np.zeros((478, 3))
    out[:N_MESH] = img / np.array([W, H, W])
    return out


def expression(ict, **weights) -> torch.Tensor:
    psi = torch.zeros(1, ict.n_expression)
    for name, w in weights.items():
        psi[0, ict.expression_names.index(name)] = w
    return psi


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = cv2.Rodrigues(np.asarray(a, np.float64))[0], cv2.Rodrigues(b)[0]
    return math.degrees(math.acos(np.clip((np.trace(ra.T @ rb) - 1) / 2, -1, 1)))


def test_recovers_expression_rotation_and_identity(ict, points) -> None:
    gen = torch.Generator().manual_seed(3)
    shape = torch.randn(1, ict.n_shape, generator=gen)
    reader = LandmarkFitReader(ict.expression_names, FitConfig(identity_frames=5))
    neutral = expression(ict)
    rotation = torch.tensor([[0.15, -0.35, 0.05]])
    for _ in range(5):  # the identity is estimated on the first frames
        reader(mediapipe_like(points, shape, neutral, rotation), W, H)
    assert reader.identity_settled
    truth = expression(ict, jawOpen=0.7, mouthSmile_L=0.6, mouthSmile_R=0.6, eyeBlink_L=1.0)
    for _ in range(3):  # the temporal prior needs a few frames to let go of neutral
        psi, rot = reader(mediapipe_like(points, shape, truth, rotation), W, H)
    assert np.abs(psi - truth[0].numpy()).mean() < 0.03
    for name in ("jawOpen", "mouthSmile_L", "eyeBlink_L"):
        i = ict.expression_names.index(name)
        assert abs(psi[i] - truth[0, i]) < 0.15, name
    assert angle_deg(rotation[0].numpy(), rot) < 1.0


def test_tracker_noise_costs_little(ict, points) -> None:
    reader = LandmarkFitReader(ict.expression_names, FitConfig(identity_frames=1))
    truth = expression(ict, jawOpen=0.5, browInnerUp_L=0.8, browInnerUp_R=0.8)
    rotation = torch.tensor([[0.0, 0.3, 0.0]])
    for seed in range(4):
        psi, rot = reader(mediapipe_like(points, torch.zeros(1, ict.n_shape), truth, rotation,
                                         noise_px=0.5, seed=seed), W, H)
    jaw = ict.expression_names.index("jawOpen")
    assert abs(psi[jaw] - 0.5) < 0.15 and np.abs(psi - truth[0].numpy()).mean() < 0.05
    assert angle_deg(rotation[0].numpy(), rot) < 2.0


def test_bounds_hold_and_degenerate_input_gives_no_nan(ict, points) -> None:
    reader = LandmarkFitReader(ict.expression_names)
    wild = mediapipe_like(points, torch.zeros(1, ict.n_shape), expression(ict),
                          torch.zeros(1, 3), noise_px=40.0)
    psi, rot = reader(wild, W, H)
    assert psi.min() >= 0 and psi.max() <= 1 and np.isfinite(rot).all()
    for bad in (np.zeros((478, 3)), np.full((478, 3), np.nan)):
        psi, rot = reader(bad, W, H)
        assert np.isfinite(psi).all() and np.isfinite(rot).all()


def test_only_for_the_ict_head() -> None:
    with pytest.raises(ValueError, match="ICT"):
        LandmarkFitReader(("a", "b"))


def test_the_tracker_runs_the_fit_reader_on_a_real_face(ict) -> None:
    from engines.files.assets import asset_root
    from engines.tracking.tracker import FaceTracker, TrackerConfig

    bgr = cv2.imread(str(asset_root() / "faces" / "london_set" / "london_008_smiling.jpg"))
    with FaceTracker(ict.expression_names, TrackerConfig(reader="fit", video=False)) as t:
        results = [t.process(bgr, i / 25, fmt="bgr") for i in range(3)]
    last = results[-1]
    assert last.found and last.blendshapes is None  # landmarks only: no blendshape net
    assert last.expression.shape == (ict.n_expression,)
    assert last.expression.min() >= 0 and last.expression.max() <= 1
    assert np.isfinite(last.rotation).all() and np.linalg.norm(last.rotation) < 0.5
