"""MediaPipe Face Landmarker's own networks under ONNX Runtime, batched over images/faces.

The three TFLite networks of ``face_landmarker.task`` (BlazeFace short-range detector,
Face Mesh V2 with 478 points, the 52-score blendshape MLP-Mixer) are converted once to
ONNX by ``scripts/convert_mediapipe_onnx.py`` (a set-up step with its own converter venv;
see docs/MEDIAPIPE_ONNX.md). This module re-implements the graph around them in numpy +
OpenCV, following MediaPipe's tasks graphs (``face_detector_graph.cc``,
``face_landmarks_detector_graph.cc``, ``face_blendshapes_graph.cc``) in IMAGE mode:

1. detector: the whole image letterboxed (zero border) to 128x128, values in [-1, 1];
   896 SSD anchors (SsdAnchorsCalculator: 4 layers, strides 8/16/16/16, fixed size);
   boxes decoded with scale 128, sigmoid scores (clipped logits at ±100), weighted NMS
   (IoU > 0.3), letterbox removed, at most ``num_faces`` kept;
2. face rect: the detection box, rotated so the eye keypoints 0→1 are level, scaled 1.5
   in both axes (not squared), then warped (bilinear, replicated border) to 256x256 in
   [0, 1];
3. landmarks: 478 (x, y, z) in crop pixels → normalised crop → projected back with the
   rect (MediaPipe's LandmarkProjection, in normalised image coordinates; z scaled like x);
   face presence = sigmoid of the second output;
4. blendshapes: 146 of the landmarks (x, y) in image pixels → 52 scores.

Every stage runs batched: one detector run for all images, one landmark run for all faces
of all images, one blendshape run for all faces. Outputs match ``FaceLandmarker`` (IMAGE
mode): landmarks normalised to the image, z in the same scale as x.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.files.assets import asset_root
from engines.files.disk_cache import cache_root
from engines.tracking.arkit_mapping import BLENDSHAPE_NAMES

MODEL_FILES = {
    "detector": "face_detector.onnx",
    "landmarks": "face_landmarks_detector.onnx",
    "blendshapes": "face_blendshapes.onnx",
}
CACHE_SUBDIR = "mediapipe-onnx"

#: The 146 landmark indices the blendshape model reads (face_blendshapes_graph.cc).
BLENDSHAPE_LANDMARKS = np.array(
    [0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63,
     65, 66, 67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132,
     133, 136, 144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161,
     162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263,
     267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310,
     311, 312, 314, 317, 318, 321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373,
     374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386, 387, 388, 389, 390, 397, 398,
     400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477],
    np.int64,
)  # fmt: skip


DET_SIZE = 128
LMK_SIZE = 256


class OnnxModelsMissingError(FileNotFoundError):
    """The converted ONNX files are absent: run scripts/convert_mediapipe_onnx.py."""


ASSET_SUBDIR = "mediapipe_onnx"


def converted_dir() -> Path:
    """Where scripts/convert_mediapipe_onnx.py writes: the project's disk cache."""
    return cache_root() / CACHE_SUBDIR


def model_dirs() -> tuple[Path, Path]:
    """Searched in order: the asset root's converted files (the shipped ones), then the
    converter's output in the cache (for users who convert their own ``.task``)."""
    return asset_root() / ASSET_SUBDIR, converted_dir()


def default_model_dir() -> Path:
    """The first of :func:`model_dirs` holding all three files (else the first)."""
    dirs = model_dirs()
    return next((d for d in dirs if models_available(d)), dirs[0])


def models_available(model_dir: Path | str | None = None) -> bool:
    if model_dir is None:
        return any(models_available(d) for d in model_dirs())
    return all((Path(model_dir) / f).is_file() for f in MODEL_FILES.values())


# -- detector post-processing ----------------------------------------------------------------
def ssd_anchors() -> np.ndarray:
    """(896, 2) anchor centres of the short-range BlazeFace model, in [0, 1].

    SsdAnchorsCalculator with num_layers 4, strides (8, 16, 16, 16), aspect ratio 1 plus
    the interpolated one, fixed_anchor_size: consecutive layers of equal stride share one
    grid, each contributing 2 anchors per cell (so 2 per cell at 16x16, 6 at 8x8); all
    anchors are 1x1, so only the centres matter."""
    strides = (8, 16, 16, 16)
    out = []
    layer = 0
    while layer < len(strides):
        n = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            n += 2  # aspect ratio 1.0 + interpolated scale
            last += 1
        fm = int(np.ceil(DET_SIZE / strides[layer]))
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(centres, n, axis=0))
        layer = last
    return np.concatenate(out).astype(np.float32)


ANCHORS = ssd_anchors()


def decode_detections(
    regressors: np.ndarray, logits: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs (896, 16), (896,) -> boxes (K, 4) xmin ymin xmax ymax,
    keypoints (K, 6, 2) and scores (K,), in letterboxed-tensor coordinates [0, 1]."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
    keep = scores >= min_score
    raw, anchors, scores = regressors[keep] / DET_SIZE, ANCHORS[keep], scores[keep]
    centre = raw[:, 0:2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
    return boxes, keypoints, scores


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    wh = np.clip(hi - lo, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, threshold: float = 0.3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-max suppression: each kept detection is the score-weighted
    mean (box corners and keypoints) of all remaining detections overlapping the best one
    by IoU > threshold; its score stays the best one's."""
    order = np.argsort(-scores, kind="stable")
    out_b, out_k, out_s = [], [], []
    while order.size:
        best = order[0]
        overlap = iou(boxes[best], boxes[order]) > threshold
        cand = order[overlap]
        w = scores[cand][:, None]
        out_b.append((boxes[cand] * w).sum(0) / w.sum())
        out_k.append((keypoints[cand] * w[:, :, None]).sum(0) / w.sum())
        out_s.append(scores[best])
        order = order[~overlap]
    if not out_s:
        return np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0)
    return np.array(out_b), np.array(out_k), np.array(out_s)


# -- geometry --------------------------------------------------------------------------------
def rect_to_tensor_matrix(rect_px: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine taking image pixels to a ``size``x``size`` tensor for a rotated rect
    (cx, cy, w, h, rotation) in pixels: the rect's corners go to the tensor's corners
    (ImageToTensorCalculator's mapping, not pixel centres)."""
    cx, cy, w, h, r = rect_px
    c, s = np.cos(r), np.sin(r)
    rot = np.array([[c, s], [-s, c]])  # R(-r)
    lin = np.diag([size / w, size / h]) @ rot
    t = np.array([size / 2, size / 2]) - lin @ np.array([cx, cy])
    return np.concatenate([lin, t[:, None]], 1)


def letterbox_detector_input(image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """The image letterboxed to 128x128 (uint8), the side L of the square roi in pixels
    and its centre: tensor point t in [0,1]^2 is image pixel ``centre + (t - 0.5) * L``."""
    h, w = image.shape[:2]
    side = float(max(w, h))
    centre = np.array([w / 2, h / 2])
    m = rect_to_tensor_matrix(np.array([centre[0], centre[1], side, side, 0.0]), DET_SIZE)
    out = cv2.warpAffine(
        image, m, (DET_SIZE, DET_SIZE), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    return out, side, centre


def detection_to_rect(
    box: np.ndarray, keypoints: np.ndarray, width: int, height: int, scale: float = 1.5
) -> np.ndarray:
    """Normalised rect (cx, cy, w, h, rotation) from one detection in normalised image
    coordinates: DetectionsToRects (rotation from keypoint 0 to 1, target 0) then
    RectTransformation (scale 1.5 in x and y)."""
    x0, y0 = keypoints[0] * (width, height)
    x1, y1 = keypoints[1] * (width, height)
    rotation = -np.arctan2(-(y1 - y0), x1 - x0)
    rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.array([cx, cy, (box[2] - box[0]) * scale, (box[3] - box[1]) * scale, rotation])


def project_landmarks(raw: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """(478, 3) landmarks in 256-px crop coordinates -> normalised image coordinates, as
    TensorsToLandmarks + LandmarkProjection do (rotation applied in normalised space)."""
    cx, cy, w, h, r = rect
    p = raw / LMK_SIZE
    x, y = p[:, 0] - 0.5, p[:, 1] - 0.5
    c, s = np.cos(r), np.sin(r)
    return np.stack([(c * x - s * y) * w + cx, (s * x + c * y) * h + cy, p[:, 2] * w], 1)


LANDMARK_ROW = 478 * 3 + 2


def split_landmark_rows(
    rows: np.ndarray, rects: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, LANDMARK_ROW) landmark-net rows and their rects (N, 5) -> landmarks (N, 478, 3)
    normalised to their images, presence (N,) (sigmoid), extra (N,)."""
    raw = rows[:, : 478 * 3].reshape(len(rows), 478, 3)
    lms = np.stack([project_landmarks(raw[i], rects[i]) for i in range(len(rows))])
    presence = 1.0 / (1.0 + np.exp(-rows[:, 478 * 3].astype(np.float64)))
    return lms, presence, rows[:, 478 * 3 + 1]


def blendshape_points(landmarks: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """The blendshape net's input: (N, 478, 3) normalised landmarks, (N, 2) image sizes
    in pixels -> (N, 146, 2) float32 pixels."""
    return (landmarks[:, BLENDSHAPE_LANDMARKS, :2] * sizes[:, None, :]).astype(np.float32)


# -- the engine ------------------------------------------------------------------------------
@dataclass
class Face:
    """One face: the same quantities FaceLandmarker (IMAGE mode) returns, plus its boxes."""

    landmarks: np.ndarray  # (478, 3): x, y normalised to the image, z scaled like x
    blendshapes: np.ndarray  # (52,) in BLENDSHAPE_NAMES order
    presence: float  # sigmoid face-presence score of the landmark net
    score: float  # detector score
    rect: np.ndarray  # (5,) normalised cx, cy, w, h, rotation (radians) of the crop
    extra: float = 0.0  # the landmark net's third output (sigmoid'd scalar; unused by MP)


class MediaPipeOnnx:
    """Face detection + 478 landmarks + 52 blendshapes, batched under ONNX Runtime.

    ``providers`` defaults to CUDA (if the installed onnxruntime has it) then CPU; pass
    e.g. ``["TensorrtExecutionProvider", "CUDAExecutionProvider"]`` explicitly for TRT.
    On the CPU provider alone the networks are rewritten for its blocked layout unless
    ``cpu_rewrite`` is False (engines/inference/nchwc_rewrite.py).
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        num_faces: int = 1,
        min_detection_confidence: float = 0.5,
        min_presence_confidence: float = 0.5,
        min_suppression_threshold: float = 0.3,
        providers: Sequence[str | tuple[str, dict]] | None = None,
        threads: int = 0,
        cpu_rewrite: bool = True,
    ):
        import onnxruntime as ort

        d = Path(model_dir) if model_dir else default_model_dir()
        if not models_available(d):
            raise OnnxModelsMissingError(
                f"MediaPipe ONNX models missing in {d} (need {sorted(MODEL_FILES.values())}; "
                f"searched {', '.join(str(p) for p in model_dirs())}).\n"
                f"  fix: point $VN3D_ASSETS at an asset root with {ASSET_SUBDIR}/, or run "
                "python scripts/convert_mediapipe_onnx.py --python <venv with tf2onnx> "
                "(see docs/MEDIAPIPE_ONNX.md)"
            )
        self.model_dir = d
        manifest = d / "manifest.json"
        self.manifest = json.loads(manifest.read_text()) if manifest.is_file() else {}
        if providers is None:
            have = ort.get_available_providers()
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # idle pool threads sleep: these nets share the cores with rendering (as OnnxRunner)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self.providers = list(providers)
        # on the CPU provider alone, PRelu and channel Pad become ops that stay in its
        # blocked layout (engines/inference/nchwc_rewrite.py)
        cpu_only = cpu_rewrite and self.providers == ["CPUExecutionProvider"]
        self._sess = {
            k: ort.InferenceSession(self._model_bytes(d / f, cpu_only), opts,
                                    providers=self.providers)
            for k, f in MODEL_FILES.items()
        }  # fmt: skip
        self._in = {k: s.get_inputs()[0].name for k, s in self._sess.items()}
        #: the providers ONNX Runtime really uses (it drops those it cannot start)
        self.providers_in_use = self._sess["landmarks"].get_providers()
        self.num_faces = num_faces
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self.min_suppression_threshold = min_suppression_threshold

    @staticmethod
    def _model_bytes(path: Path, rewrite: bool) -> bytes:
        if not rewrite:
            return path.read_bytes()
        import onnx

        from engines.inference.nchwc_rewrite import rewrite_for_cpu

        return rewrite_for_cpu(onnx.load(str(path)))[0].SerializeToString()

    def _run(self, key: str, x: np.ndarray) -> list[np.ndarray]:
        return self._sess[key].run(None, {self._in[key]: np.ascontiguousarray(x, np.float32)})

    # -- stages ------------------------------------------------------------------------------
    def detect(
        self, images: Sequence[np.ndarray], num_faces: int | None = None,
        min_score: float | None = None,
    ) -> list[list[tuple[np.ndarray, np.ndarray, float]]]:  # fmt: skip
        """Faces per image (RGB uint8 HxWx3), each (box xyxy, keypoints (6, 2), score) in
        normalised image coordinates, best first, at most ``num_faces`` (default: the
        engine's), scored at least ``min_score`` (default: min_detection_confidence). One
        batched run."""
        if not images:
            return []
        tensors, frames = [], []
        for img in images:
            t, side, centre = letterbox_detector_input(img)
            tensors.append(t)
            frames.append((side, centre, img.shape[1], img.shape[0]))
        x = np.stack(tensors).astype(np.float32) * (2.0 / 255.0) - 1.0
        regressors, logits = self._run("detector", x)
        out = []
        for i, (side, centre, w, h) in enumerate(frames):
            boxes, kps, scores = decode_detections(
                regressors[i], logits[i, :, 0],
                self.min_detection_confidence if min_score is None else min_score,
            )  # fmt: skip
            boxes, kps, scores = weighted_nms(boxes, kps, scores, self.min_suppression_threshold)
            size = np.array([w, h], np.float64)
            to_img = lambda t: (centre + (t - 0.5) * side) / size  # noqa: B023, E731
            faces, n = [], self.num_faces if num_faces is None else num_faces
            for b, k, s in zip(boxes[:n], kps[:n], scores[:n], strict=True):
                bb = np.concatenate([to_img(b[:2]), to_img(b[2:])])
                faces.append((bb, to_img(k), float(s)))
            out.append(faces)
        return out

    @staticmethod
    def crop(image: np.ndarray, rect: np.ndarray) -> np.ndarray:
        """The 256x256 uint8 crop of the landmark net for a normalised rect."""
        h, w = image.shape[:2]
        cx, cy, rw, rh, r = rect
        m = rect_to_tensor_matrix(np.array([cx * w, cy * h, rw * w, rh * h, r]), LMK_SIZE)
        return cv2.warpAffine(
            image, m, (LMK_SIZE, LMK_SIZE), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip

    def landmark_rows(self, crops: np.ndarray) -> np.ndarray:
        """The landmark net as one row function (for a batcher): crops (N, 256, 256, 3)
        with values 0–255 -> (N, LANDMARK_ROW): 478 × (x, y, z) in crop pixels, then the
        presence logit and the unused third output."""
        raw, presence_logit, extra = self._run("landmarks", np.asarray(crops, np.float32) / 255)
        n = len(crops)
        return np.concatenate([raw.reshape(n, -1), presence_logit.reshape(n, 1),
                               extra.reshape(n, 1)], 1)  # fmt: skip

    def landmarks(
        self, crops: np.ndarray, rects: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batched landmark net: crops (N, 256, 256, 3) uint8, rects (N, 5) -> landmarks
        (N, 478, 3) normalised to their images, presence (N,), extra (N,)."""
        return split_landmark_rows(self.landmark_rows(crops), rects)

    def blendshape_rows(self, points: np.ndarray) -> np.ndarray:
        """The blendshape net as one row function: (N, 146, 2) landmark pixels -> (N, 52)."""
        return self._run("blendshapes", points)[0].reshape(len(points), -1)

    def blendshapes(self, landmarks: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Batched blendshape net: landmarks (N, 478, 3) normalised, sizes (N, 2) image
        width/height in pixels -> (N, 52) scores."""
        return self.blendshape_rows(blendshape_points(landmarks, sizes))

    # -- all together ------------------------------------------------------------------------
    def process(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces of each image (RGB uint8), as FaceLandmarker.detect (IMAGE mode) would
        give: detection → crop → landmarks → blendshapes, each stage one batched run."""
        detections = self.detect(images)
        rects, crops, owners, scores, sizes = [], [], [], [], []
        for i, (img, dets) in enumerate(zip(images, detections, strict=True)):
            h, w = img.shape[:2]
            for box, kps, score in dets:
                rect = detection_to_rect(box, kps, w, h)
                rects.append(rect)
                crops.append(self.crop(img, rect))
                owners.append(i)
                scores.append(score)
                sizes.append((w, h))
        results: list[list[Face]] = [[] for _ in images]
        if not rects:
            return results
        rects_a = np.array(rects)
        lms, presence, extra = self.landmarks(np.stack(crops), rects_a)
        keep = presence >= self.min_presence_confidence
        bs = np.zeros((len(lms), len(BLENDSHAPE_NAMES)), np.float32)
        if keep.any():
            bs[keep] = self.blendshapes(lms[keep], np.array(sizes, np.float64)[keep])
        for j, owner in enumerate(owners):
            if keep[j]:
                results[owner].append(
                    Face(lms[j], bs[j], float(presence[j]), scores[j], rects_a[j], float(extra[j]))
                )
        return results
