"""MediaPipe's Face Landmarker networks under ONNX Runtime (engines/tracking/mediapipe_onnx.py).

The geometry tests need nothing. The parity tests read the converted networks from the
assets (mediapipe_onnx/, like the .task they were converted from) and run everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.files.assets import asset_path, asset_root
from engines.tracking.mediapipe_onnx import (
    ANCHORS,
    BLENDSHAPE_LANDMARKS,
    BLENDSHAPE_NAMES,
    MediaPipeOnnx,
    OnnxModelsMissingError,
    default_model_dir,
    detection_to_rect,
    model_dirs,
    models_available,
    project_landmarks,
    rect_to_tensor_matrix,
    weighted_nms,
)

PHOTOS = (
    "london_003_neutral.jpg",
    "london_003_smiling.jpg",
    "london_061_smiling.jpg",  # the worst one in the full 44-photo run
    "london_107_neutral.jpg",
)


# -- geometry (no models needed) -------------------------------------------------------------
def test_anchors_layout():
    assert ANCHORS.shape == (896, 2)
    # 16x16 grid, 2 anchors per cell, then 8x8 grid, 6 anchors per cell
    assert np.allclose(ANCHORS[0], [0.5 / 16, 0.5 / 16]) and np.allclose(ANCHORS[1], ANCHORS[0])
    assert np.allclose(ANCHORS[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(ANCHORS[512:518], [0.5 / 8, 0.5 / 8])
    assert np.allclose(ANCHORS[-1], [7.5 / 8, 7.5 / 8])


def test_blendshape_tables():
    assert len(BLENDSHAPE_LANDMARKS) == 146 and len(set(BLENDSHAPE_LANDMARKS.tolist())) == 146
    assert BLENDSHAPE_LANDMARKS.max() == 477 and len(BLENDSHAPE_NAMES) == 52


def test_weighted_nms_merges_overlaps():
    boxes = np.array([[0.1, 0.1, 0.3, 0.3], [0.12, 0.1, 0.32, 0.3], [0.6, 0.6, 0.8, 0.8]])
    kps = np.repeat(boxes[:, None, :2], 6, axis=1)
    scores = np.array([0.9, 0.6, 0.7])
    b, _, s = weighted_nms(boxes, kps, scores, 0.3)
    assert len(s) == 2 and np.allclose(s, [0.9, 0.7])
    assert np.isclose(b[0, 0], (0.1 * 0.9 + 0.12 * 0.6) / 1.5)
    assert np.allclose(b[1], boxes[2])


def test_crop_and_projection_are_inverse():
    """An image point warped into the 256 crop and projected back lands where it was."""
    w = h = 400
    rect = np.array([0.45, 0.55, 0.4, 0.4, 0.3])  # normalised, rotated
    m = rect_to_tensor_matrix(np.array([rect[0] * w, rect[1] * h, rect[2] * w, rect[3] * h,
                                        rect[4]]), 256)  # fmt: skip
    pts = np.array([[180.0, 220.0], [200.0, 200.0], [240.0, 260.0]])
    crop = pts @ m[:, :2].T + m[:, 2]
    back = project_landmarks(np.c_[crop, np.zeros(3)], rect)
    assert np.allclose(back[:, :2] * (w, h), pts, atol=1e-6)


def test_rect_rotation_from_eyes():
    box = np.array([0.4, 0.4, 0.6, 0.6])
    level = np.array([[0.45, 0.45], [0.55, 0.45]] + [[0.5, 0.5]] * 4)
    r = detection_to_rect(box, level, 640, 480)
    assert np.allclose(r, [0.5, 0.5, 0.3, 0.3, 0.0])
    tilted = level.copy()
    tilted[1, 1] = 0.55  # right eye (image right) lower: image rotated clockwise
    assert detection_to_rect(box, tilted, 640, 480)[4] > 0


# -- where the networks are found --------------------------------------------------------
def test_networks_come_from_the_assets_first():
    assert model_dirs()[0] == asset_root() / "mediapipe_onnx"
    assert models_available() and default_model_dir() == model_dirs()[0]


def test_missing_networks_name_the_places_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("VN3D_ASSETS", str(tmp_path / "assets"))
    monkeypatch.setenv("VN3D_CACHE", str(tmp_path / "cache"))
    assert not models_available()
    with pytest.raises(OnnxModelsMissingError) as err:
        MediaPipeOnnx()
    text = str(err.value)
    assert str(tmp_path / "assets" / "mediapipe_onnx") in text and "convert_mediapipe_onnx" in text


# -- parity with MediaPipe's own FaceLandmarker ---------------------------------------------


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    root = asset_root() / "faces" / "london_set"
    out = []
    for name in PHOTOS:
        bgr = cv2.imread(str(root / name))
        if bgr is None:
            pytest.fail(f"missing photo {root / name}")
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


@pytest.fixture(scope="module")
def reference(photos):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(asset_path("face_landmarker"))),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=1,
        output_face_blendshapes=True,
    )
    out = []
    with vision.FaceLandmarker.create_from_options(opts) as lm:
        for rgb in photos:
            r = lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            assert r.face_landmarks, "MediaPipe found no face"
            out.append((
                np.array([[p.x, p.y, p.z] for p in r.face_landmarks[0]]),
                np.array([c.score for c in r.face_blendshapes[0]]),
                [c.category_name for c in r.face_blendshapes[0]],
            ))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def engine():
    return MediaPipeOnnx(providers=["CPUExecutionProvider"], threads=2)


def test_parity_with_mediapipe(engine, photos, reference):
    faces = engine.process(photos)  # all photos in one batch per stage
    for name, found, (lms, bs, names) in zip(PHOTOS, faces, reference, strict=True):
        assert len(found) == 1, name
        face = found[0]
        assert names == list(BLENDSHAPE_NAMES)
        err = np.linalg.norm((face.landmarks[:, :2] - lms[:, :2]) * 256, axis=1)  # px @256
        assert err.mean() < 0.25 and err.max() < 1.0, (name, err.mean(), err.max())
        assert np.abs(face.landmarks[:, 2] - lms[:, 2]).max() * 256 < 2.0, name
        mae = np.abs(face.blendshapes - bs).mean()
        assert mae <= 0.02, (name, mae)
        assert face.presence > 0.5 and face.score > 0.5


def test_batched_equals_single(engine, photos):
    """A batch gives each face what it gets alone. The landmark net's convolutions do the
    same sums per image whatever the batch: equal to float32 rounding (measured: identical).
    The blendshape net's matrix products are blocked differently for a batch, so its
    scores move by up to 2.4e-5 (measured on 16 London photos; median 6.6e-6): 1e-4 is four
    times that, 200 times below the parity bound with MediaPipe (0.02 MAE) and a shape
    weight change nobody sees (1e-4 of a full smile moves the mouth corner ~1 µm)."""
    together = engine.process(photos)
    for rgb, batched in zip(photos, together, strict=True):
        alone = engine.process([rgb])[0]
        assert np.allclose(alone[0].landmarks, batched[0].landmarks, atol=1e-6)
        assert np.allclose(alone[0].blendshapes, batched[0].blendshapes, atol=1e-4)


def test_no_face(engine):
    blank = np.full((240, 320, 3), 127, np.uint8)
    assert engine.process([blank]) == [[]]
