"""The two runtimes that read faces for ``FaceTracker``: MediaPipe's own Tasks API (TFLite)
and the same three networks under ONNX Runtime (``engines/tracking/mediapipe_onnx.py``).

Both take an RGB frame and give, per face found, the 478 landmarks, the 52 blendshape
scores and the facial transformation matrix (each only when asked for), so the tracker's
readers do not know which runtime ran.

The ONNX landmarker runs MediaPipe's VIDEO mode as FaceLandmarkerGraph does: each face's
next crop comes from its landmarks (their bounding box, turned so eye corners 33→263 are
level, squared on the long side, scaled 1.5: FaceLandmarksDetectorGraph's rect); while
fewer faces are tracked than ``max_faces`` the detector runs too, and a detected face
replaces the tracked one it overlaps (AssociationNormRectCalculator, IoU > 0.5). So with
one face and ``max_faces`` > 1 (the tracker's default) every frame is read from its
detection, exactly as MediaPipe does; with ``max_faces`` = 1 the detector runs only when
the face is lost. A face whose presence score is below the threshold is dropped. The
landmark and blendshape networks are called through
functions, so a server can put one ``InferenceBatcher`` in front of each and serve every
session's frames in one call (``OnnxNetworks.batched``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.files.assets import asset_path
from engines.tracking.face_geometry import GeometryMetadata, pose_matrix
from engines.tracking.mediapipe_onnx import (
    BLENDSHAPE_LANDMARKS,
    LANDMARK_ROW,
    LMK_SIZE,
    MediaPipeOnnx,
    blendshape_points,
    detection_to_rect,
    split_landmark_rows,
)

LANDMARKERS = ("tflite", "onnx")
DEFAULT_LANDMARKER = "tflite"
LANDMARKER_HELP = (
    "which runtime runs MediaPipe's face networks: tflite (MediaPipe's own) or onnx (the "
    "same networks under ONNX Runtime, shared by a server's sessions and batched on a GPU; "
    "CUDA / TensorRT when onnxruntime-gpu is installed)"
)
EYE_CORNERS = (33, 263)  # the next-frame rect is turned so this line is level


@dataclass
class FaceReading:
    """One face of one frame."""

    landmarks: np.ndarray  # (478, 3) normalised x, y in the frame; z scaled like x
    blendshapes: np.ndarray | None  # (52,) in BLENDSHAPE_NAMES order, when asked for
    matrix: np.ndarray | None  # (4, 4) facial transformation matrix, when asked for


class TfliteLandmarker:
    """MediaPipe's FaceLandmarker (Tasks API, TFLite with XNNPACK) for one stream."""

    def __init__(
        self, model_path: Path | None, *, video: bool, max_faces: int, min_confidence: float,
        scores: bool,
    ) -> None:  # fmt: skip
        from mediapipe.tasks.python import BaseOptions, vision

        self.video = video
        self.scores = scores
        self._names_checked = False
        path = model_path or asset_path("face_landmarker")
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if video else vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=scores,
            output_facial_transformation_matrixes=scores,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)
        # closed at the latest when Python exits, while it can still run the close: a
        # landmarker left to __del__ during interpreter shutdown can hang the exit
        self._finalizer = weakref.finalize(self, self._landmarker.close)

    def __call__(self, rgb: np.ndarray, timestamp_ms: int) -> list[FaceReading]:
        import mediapipe as mp

        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)
        if self.video:
            result = self._landmarker.detect_for_video(image, timestamp_ms)
        else:
            result = self._landmarker.detect(image)
        out = []
        for k, face in enumerate(result.face_landmarks):
            lms = np.array([[p.x, p.y, p.z] for p in face], np.float32)
            scores = matrix = None
            if self.scores:
                cats = result.face_blendshapes[k]
                if not self._names_checked:
                    self._check_names([c.category_name for c in cats])
                    self._names_checked = True
                scores = np.array([c.score for c in cats], np.float64)
                matrix = np.asarray(result.facial_transformation_matrixes[k], np.float64)
            out.append(FaceReading(lms, scores, matrix))
        return out

    @staticmethod
    def _check_names(names: list[str]) -> None:
        from engines.tracking.arkit_mapping import BLENDSHAPE_NAMES

        if tuple(names) != BLENDSHAPE_NAMES:
            raise ValueError("MediaPipe's blendshape categories are not the 52 this project "
                             "maps (engines/tracking/arkit_mapping.py): another .task?")

    def close(self) -> None:
        self._finalizer()  # runs the close once


@dataclass
class OnnxNetworks:
    """MediaPipe's networks under ONNX Runtime, shareable by every stream of a process:
    the detector and crops from ``engine``; the landmark and blendshape nets through row
    functions (the engine's own, or batchers in front of them)."""

    engine: MediaPipeOnnx
    landmark_fn: Callable[[np.ndarray], np.ndarray]  # (B, 256, 256, 3) 0–255 -> (B, LANDMARK_ROW)
    blendshape_fn: Callable[[np.ndarray], np.ndarray]  # (B, 146, 2) px -> (B, 52)
    geometry: GeometryMetadata
    _closers: tuple[Callable[[], None], ...] = ()

    @classmethod
    def local(cls, threads: int = 1, providers: list | None = None) -> OnnxNetworks:
        """Called directly by each stream's own thread (clips, photos; on a CPU also a
        server's sessions: ONNX Runtime sessions may be run from several threads at once,
        and one thread per call lets N sessions use N cores, docs/PERFORMANCE.md)."""
        engine = MediaPipeOnnx(threads=threads, providers=providers)
        return cls(engine, engine.landmark_rows, engine.blendshape_rows,
                   GeometryMetadata.from_task(asset_path("face_landmarker")))  # fmt: skip

    @classmethod
    def batched(
        cls, threads: int = 1, providers: list | None = None, *, max_batch: int = 16,
        max_wait_ms: float = 2.0, workers: int = 1,
    ) -> OnnxNetworks:  # fmt: skip
        """One batcher per network: frames of every stream that arrive within
        ``max_wait_ms`` of each other go through one call; ``workers`` batches may run
        at once (one per CPU core; one on a GPU). ``close`` stops them."""
        from engines.inference.batcher import InferenceBatcher

        engine = MediaPipeOnnx(threads=threads, providers=providers)
        marks = InferenceBatcher(engine.landmark_rows, (LMK_SIZE, LMK_SIZE, 3),
                                 max_batch=max_batch, max_wait_ms=max_wait_ms,
                                 name="mediapipe-landmarks", workers=workers)  # fmt: skip
        shapes = InferenceBatcher(engine.blendshape_rows, (len(BLENDSHAPE_LANDMARKS), 2),
                                  max_batch=max_batch, max_wait_ms=max_wait_ms,
                                  name="mediapipe-blendshapes", workers=workers)  # fmt: skip
        return cls(engine, marks, shapes, GeometryMetadata.from_task(asset_path("face_landmarker")),
                   (marks.close, shapes.close))  # fmt: skip

    @classmethod
    def shared(cls, backend: str = "auto") -> OnnxNetworks:
        """What a server's sessions share: on a GPU (CUDA or TensorRT) the batched
        networks, one call per tick for every session; on the CPU the networks called
        directly from each session's thread (batching there only adds the wait and runs
        one batch per core: fewer frames per second, docs/PERFORMANCE.md)."""
        providers = onnx_providers(backend)
        if providers == ["CPUExecutionProvider"]:
            return cls.local(threads=1, providers=providers)
        return cls.batched(threads=0, providers=providers, max_batch=64, workers=1)

    @property
    def providers(self) -> list[str]:
        return self.engine.providers_in_use

    def close(self) -> None:
        for close in self._closers:
            close()


def onnx_providers(backend: str = "auto") -> list:
    """ONNX Runtime providers for MediaPipe's networks from the project's backend names
    (engines/inference/backend.py): tensorrt → ONNX Runtime's TensorRT provider (fp16,
    engines cached under the project's cache) then CUDA; onnxruntime-cuda → CUDA;
    onnxruntime-cpu → CPU; auto → the first usable. CPU is always last."""
    from engines.files.disk_cache import cache_root
    from engines.inference.backend import select_backend

    chosen = select_backend(backend)
    if chosen == "onnxruntime-cpu":
        return ["CPUExecutionProvider"]
    import onnxruntime as ort

    have = ort.get_available_providers()
    out: list = []
    if chosen == "tensorrt" and "TensorrtExecutionProvider" in have:
        cache = cache_root() / "mediapipe-onnx-trt"
        cache.mkdir(parents=True, exist_ok=True)
        out.append(("TensorrtExecutionProvider", {
            "trt_fp16_enable": True, "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
        }))  # fmt: skip
    if "CUDAExecutionProvider" in have:
        out.append("CUDAExecutionProvider")
    return [*out, "CPUExecutionProvider"]


def rect_from_landmarks(landmarks: np.ndarray, width: int, height: int) -> np.ndarray:
    """The next frame's crop (cx, cy, w, h, rotation), normalised, from this frame's
    landmarks (478, 3): LandmarksToDetection → DetectionsToRects (rotation from the eye
    corners, target 0) → RectTransformation (square_long, scale 1.5)."""
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    (x0, y0), (x1, y1) = landmarks[list(EYE_CORNERS), :2] * (width, height)
    rotation = -np.arctan2(-(y1 - y0), x1 - x0)
    rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
    w, h = hi - lo
    long_side = max(w * width, h * height)
    cx, cy = (lo + hi) / 2
    return np.array([cx, cy, 1.5 * long_side / width, 1.5 * long_side / height, rotation])


def axis_aligned_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two normalised rects (cx, cy, w, h, rotation), rotation ignored (as
    MediaPipe's AssociationNormRectCalculator compares them)."""
    lo = np.maximum(a[:2] - a[2:4] / 2, b[:2] - b[2:4] / 2)
    hi = np.minimum(a[:2] + a[2:4] / 2, b[:2] + b[2:4] / 2)
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def associate(
    tracked: list[np.ndarray], detected: list[np.ndarray], threshold: float = 0.5
) -> list[np.ndarray]:
    """AssociationNormRectCalculator: the tracked rects, then the detected ones, each
    newcomer replacing the rects it overlaps by IoU > ``threshold``; so a face both
    tracked and detected is read from its detection."""
    out: list[np.ndarray] = []
    for rect in [*tracked, *detected]:
        out = [r for r in out if axis_aligned_iou(r, rect) <= threshold]
        out.append(rect)
    return out


class OnnxLandmarker:
    """FaceLandmarker's IMAGE / VIDEO modes on ``OnnxNetworks``, for one stream."""

    def __init__(
        self, networks: OnnxNetworks, *, video: bool, max_faces: int, min_confidence: float,
        scores: bool,
    ) -> None:  # fmt: skip
        self.networks = networks
        self.video = video
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self.scores = scores
        self._rects: list[np.ndarray] = []  # tracked faces' next crops (VIDEO mode)

    def _detect(self, rgb: np.ndarray) -> list[np.ndarray]:
        h, w = rgb.shape[:2]
        found = self.networks.engine.detect([rgb], self.max_faces, self.min_confidence)[0]
        return [detection_to_rect(box, kps, w, h) for box, kps, _ in found]

    def _landmarks(self, rgb: np.ndarray, rects: list[np.ndarray]) -> list[np.ndarray]:
        """Landmarks of the faces in ``rects`` whose presence passes the threshold."""
        crops = np.stack([self.networks.engine.crop(rgb, r) for r in rects])
        rows = np.asarray(self.networks.landmark_fn(crops))  # (N, LANDMARK_ROW)
        if rows.shape != (len(rects), LANDMARK_ROW):
            raise ValueError(f"the landmark net gave {rows.shape} for {len(rects)} crops")
        lms, presence, _ = split_landmark_rows(rows, np.array(rects))
        return [lm for lm, p in zip(lms, presence, strict=True) if p >= self.min_confidence]

    def __call__(self, rgb: np.ndarray, timestamp_ms: int = 0) -> list[FaceReading]:
        h, w = rgb.shape[:2]
        rects = self._rects if self.video else []
        if len(rects) < self.max_faces:  # fewer faces tracked than wanted: detect
            rects = associate(rects, self._detect(rgb))[: self.max_faces]
        faces = self._landmarks(rgb, rects) if rects else []
        self._rects = [rect_from_landmarks(f, w, h) for f in faces] if self.video else []
        if not faces:
            return []
        stacked = np.stack(faces)  # (N, 478, 3)
        scores: list = [None] * len(faces)
        matrices: list = [None] * len(faces)
        if self.scores:
            sizes = np.tile([w, h], (len(faces), 1)).astype(np.float64)
            scores = list(np.asarray(self.networks.blendshape_fn(blendshape_points(stacked, sizes)),
                                     np.float64))  # fmt: skip
            matrices = [pose_matrix(f, w, h, self.networks.geometry) for f in faces]
        return [FaceReading(f.astype(np.float32), s, m)
                for f, s, m in zip(faces, scores, matrices, strict=True)]  # fmt: skip

    def close(self) -> None:
        self._rects = []
