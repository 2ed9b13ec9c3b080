"""MediaPipe's facial transformation matrix in numpy (engines/tracking/face_geometry.py):
the Procrustes solver on known transforms, and the whole pipeline against MediaPipe's own
matrix on photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.files.assets import asset_path, asset_root
from engines.tracking.face_geometry import (
    GeometryMetadata,
    metric_landmarks,
    pose_matrix,
    weighted_procrustes,
)


@pytest.fixture(scope="module")
def metadata() -> GeometryMetadata:
    return GeometryMetadata.from_task(asset_path("face_landmarker"))


def test_metadata_from_the_task(metadata):
    assert metadata.canonical.shape == (468, 3)
    assert 0 < (metadata.weights > 0).sum() < 468  # a subset of landmarks carries weight
    span = np.ptp(metadata.canonical, axis=0)
    assert 10 < span[0] < 20 and 10 < span[1] < 25  # a face in centimetres


def test_procrustes_recovers_a_similarity(metadata):
    rng = np.random.default_rng(3)
    rot = cv2.Rodrigues(np.array([0.3, -0.5, 0.2]))[0]
    scale, shift = 1.7, np.array([2.0, -1.0, -40.0])
    target = scale * metadata.canonical @ rot.T + shift
    m = weighted_procrustes(metadata.canonical, target, metadata.weights)
    assert np.allclose(m[:3, :3], scale * rot, atol=1e-9) and np.allclose(m[:3, 3], shift)
    # points of zero weight do not count: moving them changes nothing
    moved = target.copy()
    moved[metadata.weights == 0] += rng.normal(size=((metadata.weights == 0).sum(), 3))
    assert np.allclose(weighted_procrustes(metadata.canonical, moved, metadata.weights), m)


def test_matches_mediapipe_matrix(metadata):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(asset_path("face_landmarker"))),
        running_mode=vision.RunningMode.IMAGE, output_facial_transformation_matrixes=True,
    )  # fmt: skip
    photos = [asset_root() / "faces" / "london_set" / "london_003_smiling.jpg",
              asset_root() / "faces" / "lisa_cc0" / "lisa3.jpg"]  # fmt: skip
    with vision.FaceLandmarker.create_from_options(opts) as landmarker:
        for path in photos:
            rgb = np.ascontiguousarray(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
            result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            lms = np.array([[p.x, p.y, p.z] for p in result.face_landmarks[0]])
            want = np.asarray(result.facial_transformation_matrixes[0])
            got = pose_matrix(lms, rgb.shape[1], rgb.shape[0], metadata)
            # measured: at most 2e-5 (float32 in MediaPipe); translation is ~40 cm
            assert np.abs(got - want).max() < 1e-3, path.name
            assert abs(want[2, 3]) > 10  # a real pose, not the identity


def project(points: np.ndarray, fov_deg: float) -> np.ndarray:
    """Points (N, 3) in a camera's frame (cm, looking down -z) as FaceLandmarker gives
    landmarks: x, y normalised in a square image, z relative depth scaled like x."""
    f = 0.5 / np.tan(np.radians(fov_deg) / 2)  # in image widths
    depth = -points[:, 2]
    x = 0.5 + f * points[:, 0] / depth
    y = 0.5 - f * points[:, 1] / depth
    z = -(points[:, 2] - points[:, 2].mean()) * f / depth.mean()  # nearer: smaller
    return np.c_[x, y, z]


def test_metric_landmarks_and_the_assumed_field_of_view(metadata):
    """The canonical face turned 25° and seen by a 45° camera: the pipeline told the
    camera's field of view gets the turn to within 0.2°, and its metric landmarks are
    the face's shape (its own Procrustes fit leaves under 1 mm); MediaPipe's 63° reads the
    turn short (on renders, scripts/measure_head_rotation.py, by ~9 %)."""
    rot = cv2.Rodrigues(np.array([0.0, np.radians(25.0), 0.0]))[0]
    face = metadata.canonical @ rot.T + np.array([0.0, 0.0, -50.0])
    lms = project(face, 45.0)
    everywhere = np.ones(len(face))

    def turn(fov: float) -> float:
        m = pose_matrix(lms, 512, 512, metadata, fov)[:3, :3]
        return float(np.degrees(cv2.Rodrigues(m / np.cbrt(np.linalg.det(m)))[0][1, 0]))

    assert abs(turn(45.0) - 25.0) < 0.2, turn(45.0)
    assert turn(63.0) < 24.5, turn(63.0)  # MediaPipe's 63°: ~3 % short here
    metric = metric_landmarks(lms, 512, 512, metadata, 45.0)
    fit = weighted_procrustes(metadata.canonical, metric, everywhere)
    back = metadata.canonical @ fit[:3, :3].T + fit[:3, 3]
    assert np.linalg.norm(back - metric, axis=1).mean() < 0.1
