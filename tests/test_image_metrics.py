"""Image metrics (engines/evaluation/image_metrics.py):
PSNR, SSIM, face mask, offline LPIPS, identity.

CPU only. LPIPS and identity use real weights (the lpips_squeezenet asset; dlib's models
from face-recognition-models); their absence is a broken install, so those tests fail.
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engines.evaluation import image_metrics as im
from engines.files.assets import ASSETS, asset_root, sha256_file

LONDON = asset_root() / "faces" / "london_set"


def load_rgb(name: str) -> np.ndarray:
    path = LONDON / name
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        pytest.fail(f"missing London Set photo {path.resolve()}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return load_rgb("london_001_neutral.jpg")  # 450 x 450


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def centre_mask(shape: tuple[int, ...], margin: int) -> np.ndarray:
    m = np.zeros(shape[:2], dtype=bool)
    m[margin:-margin, margin:-margin] = True
    return m


def change_outside(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``img`` with the pixels outside ``mask`` replaced by noise."""
    noise = np.random.default_rng(7).integers(0, 256, img.shape, dtype=np.uint8)
    return np.where(mask[..., None], img, noise)


# ---------------------------------------------------------------------------------------
# PSNR
# ---------------------------------------------------------------------------------------


def test_psnr_of_identical_images_is_infinite(photo: np.ndarray) -> None:
    assert im.psnr(photo, photo.copy()) == float("inf")


def test_psnr_of_a_known_noise_matches_the_formula() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(20, 236, (64, 80, 3), dtype=np.uint8)
    sign = rng.choice(np.array([-1, 1]), a.shape)
    b = (a.astype(int) + 5 * sign).astype(np.uint8)  # every error is exactly +-5: MSE 25
    assert im.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 25), abs=1e-9)
    assert im.psnr(a, b) == pytest.approx(20 * np.log10(255 / 5), abs=1e-9)  # 34.15 dB

    c = np.clip(a + rng.normal(0, 9, a.shape), 0, 255).astype(np.uint8)
    mse = np.mean((a.astype(float) - c) ** 2)
    assert im.psnr(a, c) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)


def test_psnr_counts_only_masked_pixels(photo: np.ndarray) -> None:
    mask = centre_mask(photo.shape, 100)
    outside = change_outside(photo, mask)
    assert im.psnr(photo, outside) < 20  # the change is there...
    assert im.psnr(photo, outside, mask) == float("inf")  # ...but outside the mask

    inside = photo.copy()
    inside[mask] = np.clip(inside[mask].astype(int) + 4, 0, 255).astype(np.uint8)
    err = inside[mask].astype(float) - photo[mask]
    expected = 10 * np.log10(255**2 / np.mean(err**2))
    assert im.psnr(photo, inside, mask) == pytest.approx(expected, abs=1e-9)
    assert im.psnr(photo, inside, mask) < im.psnr(photo, inside)  # more error per pixel


def test_psnr_rejects_bad_inputs(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        im.psnr(photo, photo[:-1])
    with pytest.raises(ValueError, match="uint8"):
        im.psnr(photo.astype(np.float32), photo.astype(np.float32))
    with pytest.raises(ValueError, match="no pixel"):
        im.psnr(photo, photo, np.zeros(photo.shape[:2], dtype=bool))


# ---------------------------------------------------------------------------------------
# SSIM
# ---------------------------------------------------------------------------------------


def test_ssim_is_one_for_identical_and_drops_with_blur(photo: np.ndarray) -> None:
    assert im.ssim(photo, photo.copy()) == pytest.approx(1.0, abs=1e-9)
    values = [im.ssim(photo, blur(photo, s)) for s in (0.8, 2.0, 5.0)]
    assert values[0] < 0.99
    assert values[0] > values[1] > values[2], values


def test_ssim_without_mask_is_skimages_mean(photo: np.ndarray) -> None:
    from skimage.metrics import structural_similarity

    other = blur(photo, 1.5)
    expected = structural_similarity(photo, other, data_range=255, channel_axis=-1)
    assert im.ssim(photo, other) == pytest.approx(expected, abs=1e-9)
    whole = np.ones(photo.shape[:2], dtype=bool)
    assert im.ssim(photo, other, whole) == pytest.approx(expected, abs=1e-9)


def test_ssim_counts_only_masked_pixels(photo: np.ndarray) -> None:
    inner = centre_mask(photo.shape, 100)
    changed = change_outside(photo, centre_mask(photo.shape, 90))  # 10 px > 3 px window reach
    assert im.ssim(photo, changed) < 0.8
    assert im.ssim(photo, changed, inner) == pytest.approx(1.0, abs=1e-9)
    blurred_inside = np.where(inner[..., None], blur(photo, 3.0), photo)
    assert im.ssim(photo, blurred_inside, inner) < im.ssim(photo, blurred_inside) < 1.0


# ---------------------------------------------------------------------------------------
# face mask
# ---------------------------------------------------------------------------------------


def test_face_region_mask_fills_the_mediapipe_face_oval() -> None:
    h, w, cx, cy, r = 300, 400, 200.0, 150.0, 100.0
    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(cx - 50, cx + 50, 478), rng.uniform(cy - 50, cy + 50, 478)])
    angles = np.linspace(0, 2 * np.pi, len(im.FACE_OVAL), endpoint=False)
    pts[list(im.FACE_OVAL)] = np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)])
    pts[1] = (390.0, 290.0)  # nose tip far out: not an oval point, must not count
    mask = im.face_region_mask(pts, (h, w, 3))
    assert mask.shape == (h, w) and mask.dtype == bool
    polygon_area = 0.5 * len(angles) * r**2 * np.sin(2 * np.pi / len(angles))
    assert mask.sum() == pytest.approx(polygon_area, rel=0.02)
    assert mask[150, 200] and mask[150, 295] and not mask[150, 305]
    assert not mask[290, 390] and not mask[0, 0]

    mesh468 = im.face_region_mask(pts[:468], (h, w))  # without the 10 iris points
    assert np.array_equal(mesh468, mask)


def test_face_region_mask_of_few_points_is_their_convex_hull() -> None:
    square = np.array([[10, 10], [50, 10], [50, 40], [10, 40], [30, 25]], dtype=float)
    mask = im.face_region_mask(square, (60, 70))
    assert mask.shape == (60, 70)
    assert mask[25, 30] and mask[11, 11] and mask[39, 49]
    assert not mask[5, 30] and not mask[25, 55] and not mask[45, 30]
    assert mask.sum() == pytest.approx(41 * 31, abs=41 + 31)


# ---------------------------------------------------------------------------------------
# LPIPS
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_photo(photo: np.ndarray) -> np.ndarray:
    """The photo at 224 x 224: LPIPS behaviour does not need full size, and CPU time adds up."""
    return cv2.resize(photo, (224, 224), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def lpips_metric() -> im.Lpips:
    metric = im.Lpips()
    try:
        metric.load()
    except im.LpipsUnavailable as exc:  # a broken checkout or install, not a reason to skip
        pytest.fail(str(exc))
    return metric


def test_lpips_backbone_holds_the_asset_weights(lpips_metric: im.Lpips) -> None:
    path = im.lpips_weights_path()
    assert sha256_file(path) == ASSETS[im.LPIPS_ASSET].sha256
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = lpips_metric.load().net
    assert torch.equal(net.slice1[0].weight, state["0.weight"])
    assert torch.equal(getattr(net.slice7, "12").expand3x3.weight, state["12.expand3x3.weight"])
    assert lpips_metric.load().lin0.model[1].weight.abs().sum() > 0  # linear heads loaded


def test_lpips_identical_is_zero_symmetric_and_grows_with_distortion(
    lpips_metric: im.Lpips, small_photo: np.ndarray
) -> None:
    photo = small_photo
    assert lpips_metric(photo, photo.copy()) == pytest.approx(0.0, abs=1e-6)
    values = [lpips_metric(photo, blur(photo, s)) for s in (0.7, 1.5, 3.0)]
    assert 0.01 < values[0] < values[1] < values[2], values
    smiling = cv2.resize(
        load_rgb("london_001_smiling.jpg"), (224, 224), interpolation=cv2.INTER_AREA
    )
    forward, backward = lpips_metric(photo, smiling), lpips_metric(smiling, photo)
    assert forward > 0.05
    assert forward == pytest.approx(backward, abs=1e-6)


def test_lpips_mask_ignores_the_outside(lpips_metric: im.Lpips, small_photo: np.ndarray) -> None:
    photo = small_photo
    mask = centre_mask(photo.shape, 50)
    mask[50:70, 50:70] = False  # not a box: the hole is blacked out in both
    changed = photo.copy()
    changed[~mask] = 255 - changed[~mask]
    assert lpips_metric(photo, changed) > 0.1
    assert lpips_metric(photo, changed, mask) == pytest.approx(0.0, abs=1e-6)
    crop_a, crop_b = im.Lpips.prepare(photo, changed, mask)
    assert crop_a.shape == (124, 124, 3) and crop_a.dtype == np.uint8
    assert np.array_equal(crop_a, crop_b) and not crop_a[:20, :20].any() and crop_a[30:].any()
    inside = np.where(mask[..., None], blur(photo, 2.0), photo)
    assert lpips_metric(photo, inside, mask) > lpips_metric(photo, inside) > 0.01
    with pytest.raises(ValueError, match="at least"):
        lpips_metric(photo, photo, centre_mask(photo.shape, 100))  # a 24 px box


class NetworkAttemptError(AssertionError):
    pass


def test_lpips_loads_without_any_network_access(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, photo: np.ndarray
) -> None:
    import torch.hub
    import torchvision
    import torchvision.models._api as tv_api

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkAttemptError(f"network access attempted: {args[:2]}")

    torch_home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)

    # the trap works: a pretrained torchvision SqueezeNet would have to download
    with pytest.raises(NetworkAttemptError):
        torchvision.models.squeezenet1_1(weights="DEFAULT")

    model = im.load_lpips_model()  # uncached: builds the network under the trap
    x = torch.from_numpy(np.array(photo)).permute(2, 0, 1)[None].float() / 127.5 - 1
    y = torch.from_numpy(blur(photo, 2.0)).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        assert model(x, y).item() > 0.01
    assert not torch_home.exists() or not any(torch_home.rglob("*"))


def test_lpips_reports_missing_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VN3D_ASSETS", str(tmp_path))  # an empty asset root
    with pytest.raises(im.LpipsUnavailable, match=r"squeezenet1_1_features\.pth"):
        im.load_lpips_model()
    with pytest.raises(im.LpipsUnavailable):
        im.Lpips()(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8))
    wrong = tmp_path / "wrong.pth"
    torch.save({"0.weight": torch.zeros(3)}, wrong)
    with pytest.raises(im.LpipsUnavailable, match="not SqueezeNet"):
        im.load_lpips_model(wrong)


# ---------------------------------------------------------------------------------------
# identity distance (dlib ResNet)
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def identity() -> im.FaceIdentity:
    fi = im.FaceIdentity()
    try:
        fi.load()
    except im.FaceIdentityUnavailable as exc:
        pytest.fail(str(exc))
    return fi


def test_dlib_model_files_are_found() -> None:
    rec, five = im.dlib_model_paths()
    assert rec.name == "dlib_face_recognition_resnet_model_v1.dat" and rec.stat().st_size > 20e6
    assert five.name == "shape_predictor_5_face_landmarks.dat" and five.stat().st_size > 5e6


def test_same_person_is_closer_than_the_threshold_and_than_another_person(
    identity: im.FaceIdentity, photo: np.ndarray
) -> None:
    smiling, other = load_rgb("london_001_smiling.jpg"), load_rgb("london_003_neutral.jpg")
    e_neutral, e_smiling, e_other = (identity.embed(x) for x in (photo, smiling, other))
    for e in (e_neutral, e_smiling, e_other):
        assert e is not None and e.shape == (128,) and np.isfinite(e).all()
    same = identity.distance(e_neutral, e_smiling)
    different = identity.distance(e_neutral, e_other)
    assert same is not None and different is not None
    assert same < im.SAME_PERSON_THRESHOLD == 0.6
    assert different > same
    assert identity.same_person(photo, smiling) is True
    assert identity.distance(photo, smiling) == pytest.approx(same, abs=1e-9)  # images work too


def test_a_given_face_box_gives_the_detected_faces_descriptor(
    identity: im.FaceIdentity, photo: np.ndarray
) -> None:
    box = identity.face_box(photo)
    assert box is not None
    left, top, right, bottom = box
    assert 0 <= left < right <= 450 and 0 <= top < bottom <= 450 and right - left > 80
    np.testing.assert_allclose(identity.embed(photo, box), identity.embed(photo), atol=1e-9)
    shifted = identity.embed(photo, (left + 30, top + 30, right + 30, bottom + 30))
    assert shifted is not None and not np.allclose(shifted, identity.embed(photo))


def test_an_image_without_a_face_gives_none(identity: im.FaceIdentity, photo: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    no_face = cv2.GaussianBlur(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), (0, 0), 4)
    assert identity.face_box(no_face) is None
    assert identity.embed(no_face) is None
    assert identity.distance(no_face, photo) is None
    assert identity.same_person(photo, no_face) is None
