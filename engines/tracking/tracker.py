"""Expression ψ and head pose θ from video frames with MediaPipe Face Landmarker.

Per frame: 478 landmarks, 52 blendshape scores and the facial transformation matrix, from
MediaPipe's networks run by one of two landmarkers (``TrackerConfig.landmarker``, see
``engines/tracking/landmarkers.py``): "tflite", MediaPipe's own Tasks API in VIDEO running
mode, or "onnx", the same networks under ONNX Runtime (batched across sessions when the
config carries shared ``OnnxNetworks``). Six readers (``TrackerConfig.reader``): "mediapipe"
maps the scores to the face model's ψ by name through ``engines.tracking.arkit_mapping``
and takes the matrix's rotation as the head rotation; "inverse" takes the same rotation
and undoes, per shape, how weakly MediaPipe reads the ICT head's shapes
(``engines/tracking/response_curves.py``); "openings" is "inverse" with the jaw then set
so the avatar's mouth opens as far as the person's, as MediaPipe's landmarks measure both
(``engines/tracking/openings.py``); "encoder" reads both from the landmarks with the
project's landmark encoder (``engines/encoder/``); "fit" solves both per frame so the ICT
head's landmarks match them (``engines/tracking/landmark_fit.py``); "deca" runs DECA on
the frame's face (``engines/flame_encoders/deca_reader.py``: the registered files).
Rotations are axis-angle in the ICT head's axes (x to the subject's left, y up, z out of
the face). Then an optional neutral calibration (the person's resting face reads 0), an
optional range calibration (per shape, the person's own biggest reading during a few
seconds of big expressions reads 1: a full smile that reads 0.6 is scaled up to 1) and the
One-Euro filter.

No face: the last parameters are held for ``hold_s``, then eased to neutral over
``ease_s``. Several faces: the first frame picks the largest, most central one; later
frames keep the face nearest to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from engines.encoder.reader import EncoderReader
from engines.tracking.arkit_mapping import BLENDSHAPE_NAMES, mapping_matrix
from engines.tracking.filters import OneEuroConfig, OneEuroFilter, fast_elements
from engines.tracking.frames import fit_for_tracker, to_rgb
from engines.tracking.landmark_fit import LandmarkFitReader
from engines.tracking.landmarkers import (
    DEFAULT_LANDMARKER,
    LANDMARKERS,
    OnnxLandmarker,
    OnnxNetworks,
    TfliteLandmarker,
)
from engines.tracking.openings import OpeningCurves, OpeningMatcher, face_openings
from engines.tracking.response_curves import RESPONSE_FILE, InverseResponse, ResponseCurves

READERS = ("mediapipe", "inverse", "openings", "encoder", "fit", "deca")
SCORE_READERS = ("mediapipe", "inverse", "openings")  # read MediaPipe's blendshapes and its matrix
DEFAULT_READER = "mediapipe"


@dataclass
class TrackerConfig:
    model_path: str | None = None  # the tflite landmarker's .task; default: the asset one
    video: bool = True  # VIDEO mode (tracks between frames); False: every frame on its own
    max_side: int = 640  # frames are resized (aspect kept) so the long side is in range
    min_side: int = 192
    # 4 on video too: with 1, MediaPipe follows the face from its own landmarks and smooths
    # them (3 ms a frame less) but the avatar lags: GRID mouth r 0.968 → 0.890, eye r
    # 0.931 → 0.877 (openings; scripts/bench_fidelity.py --max-faces 1, 2026-11-28)
    max_faces: int = 4
    min_confidence: float = 0.5
    hold_s: float = 0.5  # keep the last pose this long when the face is lost
    ease_s: float = 1.0  # then ease to neutral over this long
    smoothing: OneEuroConfig | None = field(default_factory=OneEuroConfig)  # None: off
    # how ψ and the head rotation are read: one of READERS (see the module's docstring)
    reader: str = DEFAULT_READER
    encoder_fn: Callable[[np.ndarray], np.ndarray] | None = None  # batched; None: in-process
    response_path: str | None = None  # the inverse reader's curves; None: the shipped ones
    landmarker: str = DEFAULT_LANDMARKER  # one of LANDMARKERS: which runtime runs MediaPipe
    # the onnx landmarker's networks, shared (and batched) by a server's sessions; None:
    # the tracker loads its own and runs them directly
    onnx_networks: OnnxNetworks | None = None


@dataclass
class TrackResult:
    """One frame's reading. ``status``: tracked, held, easing or lost (neutral)."""

    status: str
    expression: np.ndarray  # (n_expression,) in the face model's order, in [0, 1]
    rotation: np.ndarray  # (3,) head rotation, axis-angle radians
    blendshapes: np.ndarray | None = None  # (52,) MediaPipe's scores (its reader)
    landmarks: np.ndarray | None = None  # (478, 3) normalised x, y in the frame, z
    n_faces: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)  # "track" and "filter"

    @property
    def found(self) -> bool:
        return self.status == "tracked"


def from_neutral(psi: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """ψ (…, E) relative to a person's resting ψ (E,): rest reads 0, each shape's remaining
    way to 1 is stretched back to [0, 1] (at most 5x)."""
    return np.clip((psi - neutral) / np.maximum(1.0 - neutral, 0.2), 0, 1)


RANGE_MIN_PEAK = 0.2  # a shape peaking lower was not part of the user's big expressions
RANGE_MAX_GAIN = 2.5


def range_gains(readings: np.ndarray) -> np.ndarray:
    """(N, n_expression) ψ read while the user made big expressions -> per-shape gains.
    A shape's peak is the largest median of three consecutive frames, so one noisy frame
    does not set it."""
    x = np.asarray(readings, np.float64)
    if len(x) >= 3:
        x = np.median(np.stack([x[:-2], x[1:-1], x[2:]]), axis=0)  # (N - 2, n_expression)
    peak = x.max(axis=0)  # (n_expression,)
    gains = np.ones_like(peak)
    moved = peak >= RANGE_MIN_PEAK
    gains[moved] = np.clip(1.0 / peak[moved], 1.0, RANGE_MAX_GAIN)
    return gains


class FaceTracker:
    """One tracker per video stream (it keeps the stream's filter and face choice)."""

    def __init__(self, expression_names: tuple[str, ...], config: TrackerConfig | None = None):
        self.config = cfg = config or TrackerConfig()
        if cfg.reader not in READERS:
            raise ValueError(f"unknown reader {cfg.reader!r}; one of {', '.join(READERS)}")
        if cfg.landmarker not in LANDMARKERS:
            raise ValueError(f"unknown landmarker {cfg.landmarker!r}; one of "
                             f"{', '.join(LANDMARKERS)}")  # fmt: skip
        self.expression_names = expression_names
        # the landmark readers read ψ and θ from the landmarks: no blendshape net, no matrix
        modes = dict(video=cfg.video, max_faces=cfg.max_faces,
                     min_confidence=cfg.min_confidence, scores=cfg.reader in SCORE_READERS)
        self._own_networks: OnnxNetworks | None = None
        if cfg.landmarker == "onnx":
            networks = cfg.onnx_networks
            if networks is None:
                networks = self._own_networks = OnnxNetworks.local()
            self._landmarker: TfliteLandmarker | OnnxLandmarker | None = OnnxLandmarker(
                networks, **modes)
        else:
            path = Path(cfg.model_path) if cfg.model_path else None
            self._landmarker = TfliteLandmarker(path, **modes)
        # readers that work on the landmarks alone: (landmarks, width, height) -> (ψ, θ)
        self._landmark_reader: Callable | None = None
        if cfg.reader == "encoder":
            self._landmark_reader = EncoderReader(expression_names, cfg.encoder_fn)
        elif cfg.reader == "fit":
            self._landmark_reader = LandmarkFitReader(expression_names)
        # readers of the frame itself: (rgb, landmarks in its pixels) -> (ψ, θ)
        self._image_reader: Callable | None = None
        if cfg.reader == "deca":  # the registered FLAME and DECA files
            from engines.flame_encoders.deca_reader import DecaReader

            self._image_reader = DecaReader(expression_names)
        self._map: np.ndarray | None = None  # (n_expr, 52), built from the first result
        self._inverse: InverseResponse | None = None
        self._openings: OpeningMatcher | None = None
        if cfg.reader in ("inverse", "openings"):
            curves = ResponseCurves.load(Path(cfg.response_path or RESPONSE_FILE))
            if curves.expression_names != tuple(expression_names):
                raise ValueError("the inverse reader's curves are for another face model")
            self._inverse = InverseResponse(curves)
        if cfg.reader == "openings":
            opening_curves = OpeningCurves.load()
            if opening_curves.expression_names != tuple(expression_names):
                raise ValueError("the openings reader's curves are for another face model")
            self._openings = OpeningMatcher(opening_curves)
        self._filter = (OneEuroFilter(cfg.smoothing, fast_elements(tuple(expression_names)))
                        if cfg.smoothing else None)  # filters ψ then the rotation
        self._last_ms = -1
        self._last_seen_s: float | None = None
        self._last = (np.zeros(len(expression_names)), np.zeros(3))
        self._centre: np.ndarray | None = None  # where the followed face was
        self._neutral: np.ndarray | None = None  # calibrated resting ψ
        self._calibration: list[np.ndarray] = []
        self._calibrate_n = 0
        self._gains: np.ndarray | None = None  # per-shape range gains
        self._range: list[np.ndarray] = []
        self._range_n = 0

    # -- calibration -------------------------------------------------------------------
    def start_neutral_calibration(self, n_frames: int = 15) -> None:
        """Average the next ``n_frames`` tracked frames as this user's resting face."""
        self._calibration, self._calibrate_n = [], n_frames

    def start_range_calibration(self, n_frames: int = 60) -> None:
        """Take the next ``n_frames`` tracked frames as this user's biggest expressions:
        each shape the user moved clearly (peak ≥ ``RANGE_MIN_PEAK``) gets the gain that
        maps its peak to 1, at most ``RANGE_MAX_GAIN``; the others keep gain 1."""
        self._range, self._range_n = [], n_frames

    @property
    def calibrated(self) -> bool:
        """Whether ψ is read relative to the user's neutral calibration."""
        return self._neutral is not None

    @property
    def calibrating(self) -> bool:
        return self._calibrate_n > 0 or self._range_n > 0

    @property
    def range_gains(self) -> np.ndarray | None:
        """(n_expression,) the range calibration's gains, None before one."""
        return None if self._gains is None else self._gains.copy()

    # -- per frame -----------------------------------------------------------------------
    def process(
        self, frame: av.VideoFrame | np.ndarray, timestamp_s: float, fmt: str = "rgb"
    ) -> TrackResult:
        """Track one frame taken at ``timestamp_s`` (seconds, increasing per stream)."""
        t0 = time.perf_counter()
        timings = {"filter": 0.0}
        rgb = fit_for_tracker(to_rgb(frame, fmt), self.config.max_side, self.config.min_side)
        ms = max(int(timestamp_s * 1000), self._last_ms + 1)  # strictly increasing
        self._last_ms = ms
        readings = self._landmarker(rgb, ms)
        timings["track"] = 1000 * (time.perf_counter() - t0)
        n = len(readings)
        if n == 0:
            found = self._no_face(timestamp_s)
            found.timings_ms = timings
            return found
        faces = [r.landmarks for r in readings]
        k = self._choose_face(faces)
        scores = None  # MediaPipe's 52 scores, read only by the score readers
        if self._image_reader is not None:
            pixels = faces[k][:, :2] * [rgb.shape[1], rgb.shape[0]]
            psi, rotation = self._image_reader(rgb, pixels)
        elif self._landmark_reader is not None:
            psi, rotation = self._landmark_reader(faces[k], rgb.shape[1], rgb.shape[0])
            psi = np.clip(psi, 0, 1)
        else:
            scores = readings[k].blendshapes
            if self._map is None:
                self._map = mapping_matrix(list(BLENDSHAPE_NAMES), self.expression_names)
            psi = self._inverse(scores) if self._inverse is not None else self._map @ scores
            if self._openings is not None:
                opened = face_openings(faces[k], rgb.shape[1], rgb.shape[0])
                psi = self._openings(psi, opened)
            matrix = readings[k].matrix
            rotation = cv2.Rodrigues(matrix[:3, :3])[0].ravel()
        if self._calibrate_n > 0:
            self._calibration.append(psi)
            if len(self._calibration) >= self._calibrate_n:
                self._neutral = np.median(self._calibration, axis=0)
                self._calibrate_n = 0
        if self._neutral is not None:
            psi = from_neutral(psi, self._neutral)
        if self._range_n > 0:
            self._range.append(psi)
            if len(self._range) >= self._range_n:
                self._gains = range_gains(np.array(self._range))
                self._range_n = 0
        if self._gains is not None:
            psi = np.clip(psi * self._gains, 0, 1)
        if self._filter is not None:
            t1 = time.perf_counter()
            both = self._filter(np.concatenate([psi, rotation]), timestamp_s)
            psi, rotation = np.clip(both[: len(psi)], 0, 1), both[len(psi) :]
            timings["filter"] = 1000 * (time.perf_counter() - t1)
        self._last = (psi, rotation)
        self._last_seen_s = timestamp_s
        return TrackResult("tracked", psi, rotation, scores, faces[k], n, timings)

    def _choose_face(self, faces: list[np.ndarray]) -> int:
        """Keep the face nearest the one followed so far; else the largest, most central."""
        centres = np.stack([f[:, :2].mean(0) for f in faces])  # (n, 2)
        if self._centre is not None:
            k = int(np.argmin(np.linalg.norm(centres - self._centre, axis=1)))
        else:
            spans = np.array([np.ptp(f[:, 0]) * np.ptp(f[:, 1]) for f in faces])
            k = int(np.argmax(spans - 0.1 * np.linalg.norm(centres - 0.5, axis=1)))
        self._centre = centres[k]
        return k

    def _no_face(self, t: float) -> TrackResult:
        cfg = self.config
        psi, rot = self._last
        since = np.inf if self._last_seen_s is None else t - self._last_seen_s
        if since <= cfg.hold_s:
            return TrackResult("held", psi.copy(), rot.copy())
        w = 1.0 - (since - cfg.hold_s) / cfg.ease_s if cfg.ease_s > 0 else 0.0
        if w > 0:
            return TrackResult("easing", psi * w, rot * w)
        if self._filter is not None:
            self._filter.reset()
        self._centre = None
        return TrackResult("lost", np.zeros_like(psi), np.zeros(3))

    def close(self) -> None:
        """Release MediaPipe's graph or the tracker's own ONNX sessions (safe to call twice)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None
        if self._own_networks is not None:
            self._own_networks.close()
            self._own_networks = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
