"""Image measurements between a photo ``I`` and a render ``I_r`` over a face region.

Used by the avatar benchmark and the dataset evaluation. Images are uint8 RGB arrays of
shape (H, W, 3); a mask is an (H, W) bool array (True = face pixel), e.g. from
:func:`face_region_mask` on the photo's MediaPipe landmarks.

* :func:`psnr` — peak signal-to-noise ratio in dB (peak 255) from the mean squared error
  over the masked pixels and all three channels; ``inf`` for identical images.
* :func:`ssim` — ``skimage.metrics.structural_similarity`` (7x7 uniform window,
  ``data_range=255``, ``channel_axis=-1``, ``full=True``); its SSIM map is averaged over
  the channels and the masked pixels, leaving out the 3-pixel image border that skimage
  itself leaves out of its mean, so ``mask=None`` gives exactly skimage's mean SSIM.
* :class:`Lpips` — LPIPS v0.1 (Zhang et al., CVPR 2018; the ``lpips`` package) with the
  **SqueezeNet 1.1** backbone (``net='squeeze'``), not the paper's default AlexNet, whose
  weights are not available offline: LPIPS-squeeze values are comparable in spirit, not in
  digits, to AlexNet LPIPS figures. The backbone's ImageNet weights come from the asset
  ``lpips/squeezenet1_1_features.pth`` (:data:`engines.files.assets.ASSETS` key
  ``lpips_squeezenet``); the linear heads ship inside the ``lpips`` package. Nothing is
  downloaded: torchvision builds the network with random weights (``pretrained=False``)
  and the asset's weights are copied in. With a mask, both images are cropped to the
  mask's bounding box and the pixels outside the mask inside that box are set to black
  in both, so only the face region differs; lower is more similar (0 = identical).
* :class:`FaceIdentity` — identity distance with dlib's ResNet face-recognition model
  (``dlib_face_recognition_resnet_model_v1.dat``, a 29-layer ResNet giving a 128-D
  descriptor) after dlib's HOG frontal face detector and its 5-point landmark alignment
  (``shape_predictor_5_face_landmarks.dat``); both model files ship inside the
  ``face-recognition-models`` package, both CC0 (public domain, Davis King). The
  distance is Euclidean between descriptors; dlib's documented same-person threshold is
  :data:`SAME_PERSON_THRESHOLD` = 0.6 (99.38% pair accuracy on LFW, see the constant).

Optional parts raise errors a caller can catch to report "unavailable":
:class:`LpipsUnavailable` and :class:`FaceIdentityUnavailable` (missing package or
weights).
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from engines.files.assets import AssetMissingError, asset_path

if TYPE_CHECKING:
    import torch

# MediaPipe Face Mesh FACEMESH_FACE_OVAL, as one closed contour (forehead top, clockwise)
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
MEDIAPIPE_MESH_POINTS = 468  # 468 mesh points (478 with the 10 iris points)

SSIM_WIN_SIZE = 7  # skimage's default window
LPIPS_ASSET = "lpips_squeezenet"
LPIPS_MIN_SIDE = 32  # SqueezeNet's three pools need at least ~24 px; ask for 32

# dlib's documented threshold: "When using a distance threshold of 0.6, the dlib model
# obtains an accuracy of 99.38% on the standard LFW face recognition benchmark" and "if
# two face descriptor vectors have a Euclidean distance between them less than 0.6 then
# they are from the same person" (http://dlib.net/face_recognition.py.html, and
# dlib/examples/dnn_face_recognition_ex.cpp).
SAME_PERSON_THRESHOLD = 0.6
DESCRIPTOR_SIZE = 128


# ---------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------


def _check_image(img: np.ndarray, name: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"{name}: expected a uint8 RGB image (H, W, 3), got {img.dtype} {img.shape}"
        )
    return img


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check_image(a, "a"), _check_image(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The mask as an (H, W) bool array (all True for None); never empty."""
    if mask is None:
        return np.ones(shape[:2], dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != tuple(shape[:2]):
        raise ValueError(f"mask shape {mask.shape} does not match the images' {shape[:2]}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise ValueError("the mask selects no pixel")
    return mask


# ---------------------------------------------------------------------------------------
# PSNR, SSIM, face mask
# ---------------------------------------------------------------------------------------


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB (peak 255) over the masked pixels' three channels; ``inf`` if equal."""
    a, b = _check_pair(a, b)
    if mask is None:
        diff = a.astype(np.float64) - b
    else:
        m = _check_mask(mask, a.shape)
        diff = a[m].astype(np.float64) - b[m]
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the masked pixels (and channels), 1.0 for identical images.

    skimage's SSIM map (7x7 window) is averaged over the mask minus the 3-pixel image
    border, the part skimage also leaves out, so ``mask=None`` equals skimage's mean SSIM.
    """
    a, b = _check_pair(a, b)
    m = _check_mask(mask, a.shape)
    if min(a.shape[:2]) < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN_SIZE} px a side")
    _, smap = structural_similarity(
        a, b, win_size=SSIM_WIN_SIZE, data_range=255, channel_axis=-1, full=True
    )
    pad = (SSIM_WIN_SIZE - 1) // 2
    valid = np.zeros_like(m)
    valid[pad:-pad, pad:-pad] = m[pad:-pad, pad:-pad]
    if not valid.any():
        raise ValueError(f"the mask selects only pixels within {pad} px of the border")
    return float(smap[valid].mean())


def face_region_mask(landmarks_px: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) bool mask: the filled convex hull of the face.

    ``landmarks_px`` are (N, 2) pixel coordinates (x, y). With MediaPipe's mesh (468 or 478
    points) the hull is that of the face oval (:data:`FACE_OVAL`: jaw line, cheeks and
    forehead up to landmark 10); for any other N, that of all points. ``shape`` is the
    image's (H, W) or (H, W, C).
    """
    pts = np.asarray(landmarks_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"expected (N >= 3, 2) pixel landmarks, got {pts.shape}")
    if len(pts) >= MEDIAPIPE_MESH_POINTS:
        pts = pts[list(FACE_OVAL)]
    if not np.isfinite(pts).all():
        raise ValueError("landmarks contain NaN or inf")
    h, w = int(shape[0]), int(shape[1])
    shift = 4  # sub-pixel vertices: coordinates in 1/16 px
    fixed = np.round(pts * (1 << shift)).astype(np.int32)
    hull = cv2.convexHull(fixed)
    canvas = np.zeros((h, w), dtype=np.uint8)
    cv2.fillConvexPoly(canvas, hull, 1, lineType=cv2.LINE_8, shift=shift)
    return canvas.astype(bool)


# ---------------------------------------------------------------------------------------
# LPIPS (SqueezeNet backbone, offline)
# ---------------------------------------------------------------------------------------


class LpipsUnavailable(RuntimeError):  # noqa: N818 (the name callers catch)
    """LPIPS cannot run here: the ``lpips`` package or the backbone weights are missing."""


def lpips_weights_path(weights: Path | str | None = None) -> Path:
    """``weights``, or the ``lpips_squeezenet`` asset; :class:`LpipsUnavailable` if absent."""
    try:
        path = Path(weights) if weights is not None else asset_path(LPIPS_ASSET)
    except AssetMissingError as exc:
        raise LpipsUnavailable(f"LPIPS backbone weights missing: {exc}") from exc
    if not path.is_file():
        raise LpipsUnavailable(f"LPIPS backbone weights missing: {path} is not a file")
    return path


def load_lpips_model(weights: Path | str | None = None, device: str = "cpu") -> torch.nn.Module:
    """A fresh LPIPS-squeeze network (eval mode, no grad) with the backbone from ``weights``.

    ``weights`` defaults to the ``lpips_squeezenet`` asset. No download happens: the
    backbone is built with random weights (``pnet_rand=True``, i.e. torchvision's
    ``pretrained=False``) and then overwritten, strictly (every key must match), from the
    file; the linear heads are read from the ``lpips`` package's own ``weights/v0.1``.
    Not cached; :class:`Lpips` caches one per (weights, device).
    """
    path = lpips_weights_path(weights)
    try:
        import lpips
        import torch
    except ImportError as exc:
        raise LpipsUnavailable(f"LPIPS needs the `lpips` package: {exc}") from exc

    with warnings.catch_warnings():  # torchvision's 'pretrained is deprecated' notices
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="squeeze", pretrained=True, pnet_rand=True, verbose=False)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        # The net's slices hold torchvision's `features` layers under their original
        # indices (slice2 holds '3', '4'...), so a Sequential of the same module objects,
        # in order, has exactly the file's keys; loading into it fills the LPIPS net.
        slices = [getattr(model.net, f"slice{i}") for i in range(1, model.net.N_slices + 1)]
        features = torch.nn.Sequential(
            OrderedDict((name, layer) for s in slices for name, layer in s.named_children())
        )
        features.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise LpipsUnavailable(f"{path}: not SqueezeNet 1.1 feature weights: {exc}") from exc
    model.eval().requires_grad_(False)
    return model.to(device)


_LPIPS_CACHE: dict[tuple[str, str], Any] = {}
_LPIPS_LOCK = threading.Lock()


class Lpips:
    """LPIPS v0.1, SqueezeNet backbone; the network loads on first use, once per process.

    ``Lpips()(a, b, mask)`` -> float (0 = identical, larger = more different). With a mask,
    both images are cropped to the mask's bounding box and, inside it, the pixels outside
    the mask are set to black in both images (so background differences do not count and
    the face fills the frame); the crop must be at least :data:`LPIPS_MIN_SIDE` px a side.
    Raises :class:`LpipsUnavailable` (at the first call, or from :meth:`load`) when the
    package or weights are missing.
    """

    backbone = "squeezenet1_1"

    def __init__(self, device: str = "cpu", weights: Path | str | None = None):
        self.device = device
        self.weights = weights

    def load(self) -> Any:
        """The (cached) network; call early to fail fast with :class:`LpipsUnavailable`."""
        key = (str(lpips_weights_path(self.weights).resolve()), self.device)
        with _LPIPS_LOCK:
            model = _LPIPS_CACHE.get(key)
            if model is None:
                model = load_lpips_model(self.weights, self.device)
                _LPIPS_CACHE[key] = model
        return model

    @staticmethod
    def prepare(
        a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The two images as LPIPS sees them: cropped to the mask's box, black outside it."""
        a, b = _check_pair(a, b)
        if mask is None:
            return a, b
        m = _check_mask(mask, a.shape)
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        keep = m[box][..., None]
        black = np.uint8(0)
        return np.where(keep, a[box], black), np.where(keep, b[box], black)

    def __call__(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
        a, b = self.prepare(a, b, mask)
        if min(a.shape[:2]) < LPIPS_MIN_SIDE:
            raise ValueError(f"LPIPS needs at least {LPIPS_MIN_SIDE} px a side, got {a.shape[:2]}")
        model = self.load()
        import torch

        def tensor(img: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.array(img)).to(self.device)  # a writable copy
            return t.permute(2, 0, 1)[None].float() / 127.5 - 1.0  # [-1, 1], NCHW

        with torch.inference_mode():
            return float(model(tensor(a), tensor(b)).item())


# ---------------------------------------------------------------------------------------
# Identity distance (dlib ResNet face descriptor)
# ---------------------------------------------------------------------------------------


class FaceIdentityUnavailable(RuntimeError):  # noqa: N818 (pairs LpipsUnavailable)
    """dlib or the face-recognition-models files are missing."""


def dlib_model_paths() -> tuple[Path, Path]:
    """(ResNet face-recognition model, 5-point shape predictor) from face-recognition-models.

    The package's own locators import ``pkg_resources``, which setuptools >= 81 no longer
    has; then the files are found next to the package without importing it.
    """
    try:
        import face_recognition_models as frm

        rec = Path(frm.face_recognition_model_location())
        five = Path(frm.pose_predictor_five_point_model_location())
    except ImportError:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FaceIdentityUnavailable(
                "identity distance needs the `face-recognition-models` package"
            ) from None
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        rec = models / "dlib_face_recognition_resnet_model_v1.dat"
        five = models / "shape_predictor_5_face_landmarks.dat"
    for path in (rec, five):
        if not path.is_file():
            raise FaceIdentityUnavailable(f"dlib model file missing: {path}")
    return rec, five


_DLIB_CACHE: dict[str, Any] = {}
_DLIB_LOCK = threading.Lock()


def _dlib_models() -> tuple[Any, Any, Any]:
    """(detector, 5-point predictor, recognition model), loaded once per process."""
    with _DLIB_LOCK:
        if not _DLIB_CACHE:
            try:
                import dlib
            except ImportError as exc:
                raise FaceIdentityUnavailable(
                    f"identity distance needs dlib (`dlib-bin`): {exc}"
                ) from exc
            rec, five = dlib_model_paths()
            _DLIB_CACHE["detector"] = dlib.get_frontal_face_detector()
            _DLIB_CACHE["predictor"] = dlib.shape_predictor(str(five))
            _DLIB_CACHE["recognizer"] = dlib.face_recognition_model_v1(str(rec))
        return _DLIB_CACHE["detector"], _DLIB_CACHE["predictor"], _DLIB_CACHE["recognizer"]


class FaceIdentity:
    """128-D dlib face descriptors and their Euclidean distance.

    ``embed`` finds the largest face with dlib's HOG frontal detector (``upsample`` times
    upsampled; 1 finds faces down to ~40 px) unless a box is given, aligns it with the
    5-point predictor and returns ``compute_face_descriptor`` (``num_jitters`` extra
    jittered copies averaged; 0 = one pass). ``distance`` < :data:`SAME_PERSON_THRESHOLD`
    means "same person" by dlib's LFW calibration. Raises :class:`FaceIdentityUnavailable`
    at first use when dlib or its model files are missing.
    """

    threshold = SAME_PERSON_THRESHOLD

    def __init__(self, upsample: int = 1, num_jitters: int = 0):
        self.upsample = upsample
        self.num_jitters = num_jitters

    def load(self) -> None:
        """Load the dlib models now (cached per process); fails fast when unavailable."""
        _dlib_models()

    def face_box(self, image_rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest detected face as (left, top, right, bottom) pixels, or None."""
        img = np.ascontiguousarray(_check_image(image_rgb, "image"))
        detector, _, _ = _dlib_models()
        faces = list(detector(img, self.upsample))
        if not faces:
            return None
        r = max(faces, key=lambda r: r.width() * r.height())
        return r.left(), r.top(), r.right(), r.bottom()

    def embed(
        self, image_rgb: np.ndarray, box: tuple[int, int, int, int] | None = None
    ) -> np.ndarray | None:
        """The (128,) float64 descriptor of the face in ``box`` (left, top, right, bottom)
        or of the largest detected face; None when no face is found."""
        import dlib

        img = np.ascontiguousarray(_check_image(image_rgb, "image"))
        _, predictor, recognizer = _dlib_models()
        if box is None:
            box = self.face_box(img)
            if box is None:
                return None
        rect = dlib.rectangle(*(round(float(v)) for v in box))
        shape = predictor(img, rect)
        desc = recognizer.compute_face_descriptor(img, shape, self.num_jitters)
        return np.asarray(desc, dtype=np.float64)

    def distance(self, a: np.ndarray | None, b: np.ndarray | None) -> float | None:
        """Euclidean distance between two faces: each an RGB image or a (128,) descriptor.

        None when either is None or shows no face.
        """
        ea, eb = self._descriptor(a), self._descriptor(b)
        if ea is None or eb is None:
            return None
        return float(np.linalg.norm(ea - eb))

    def same_person(self, a: np.ndarray | None, b: np.ndarray | None) -> bool | None:
        """``distance < SAME_PERSON_THRESHOLD``; None when a face is missing."""
        d = self.distance(a, b)
        return None if d is None else d < self.threshold

    def _descriptor(self, x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            return None
        x = np.asarray(x)
        if x.shape == (DESCRIPTOR_SIZE,) and x.dtype != np.uint8:
            return x.astype(np.float64)
        return self.embed(x)
