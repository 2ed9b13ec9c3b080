"""Measure how MediaPipe's landmarks differ from the face model's, the noise model of the
encoder's synthetic training data (``engines/encoder/landmark_encoder.py``). Two parts, written
to ``engines/encoder/data/landmark_noise.npz``:

- ``sigma`` (470,): jitter on still frames. Each portrait is fed many times with what
  changes between two frames of a still webcam picture (sensor noise, σ = 2 grey levels;
  a sub-pixel shift; a 0.5 % scale change), the landmarks are mapped back to the original
  pixels, and their standard deviation per point is taken (RMS over the portraits).
- ``residuals`` (N, 470, 2): on every portrait, MediaPipe's points minus the best fit of
  the face model to them (the avatar's landmark fit: β, ψ, camera), i.e. what the model's
  points cannot explain: contour points that slide along the silhouette, iris centres
  off the eyeball's front vertex, real faces outside the model's identity space.

Both in the encoder's normalised units (÷ the face's RMS landmark radius).

    python scripts/measure_landmark_noise.py [--photos 12] [--repeats 16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from avatars.builder import AvatarBuilder, AvatarError
from engines.encoder.network import N_MESH, select_points
from engines.encoder.synthetic import NOISE_FILE, SyntheticLandmarks
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.tracking.tracker import FaceTracker, TrackerConfig


def jitter_sigma(tracker: FaceTracker, image: np.ndarray, repeats: int,
                 rng: np.random.Generator) -> np.ndarray | None:
    """Per-point σ (470,) over perturbed copies, ÷ the face's RMS radius; None: no face."""
    h, w = image.shape[:2]
    points = []
    for _ in range(repeats):
        s = 1 + rng.uniform(-0.005, 0.005)
        t = rng.uniform(-0.5, 0.5, 2)
        m = np.array([[s, 0, t[0] + (1 - s) * w / 2], [0, s, t[1] + (1 - s) * h / 2]])
        frame = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        frame = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
        result = tracker.process(frame, 0.0)
        if not result.found:
            return None
        px = select_points(result.landmarks) * [w, h]  # (470, 2) in the warped frame
        points.append((px - m[:, 2]) / s)  # back to the original pixels
    p = np.stack(points)  # (R, 470, 2)
    centre = p[:, :N_MESH].mean((0, 1))
    radius = np.sqrt(((p[:, :N_MESH] - centre) ** 2).sum(-1).mean())
    return np.sqrt(p.var(0).sum(-1) / 2) / radius  # per-axis σ


def fit_residuals(paths: list[Path]) -> np.ndarray:  # (N, 470, 2)
    """MediaPipe's points minus the fitted model's, per portrait, normalised."""
    model = ICTFaceModel()
    builder = AvatarBuilder(model)
    points = SyntheticLandmarks(model, noise=np.zeros(470))
    out = []
    try:
        for path in tqdm(paths, desc="fits"):
            image = cv2.imread(str(path))[:, :, ::-1].copy()
            try:
                lms, n = builder.landmarks(image)
            except AvatarError:
                continue
            if n != 1:
                continue
            h, w = image.shape[:2]
            fit = builder.fitter.fit([(lms, w, h)])[0]
            model_pts = points.points(torch.from_numpy(fit.shape[None]),
                                      torch.from_numpy(fit.expression[None]),
                                      torch.zeros(1, 3))[0].numpy()
            mp = select_points(lms[None])[0]  # (470, 2) px
            centre = mp[:N_MESH].mean(0)
            radius = np.sqrt(((mp[:N_MESH] - centre) ** 2).sum(-1).mean())
            out.append((mp - fit.project(model_pts.astype(np.float64))) / radius)
    finally:
        builder.close()
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=16)
    ap.add_argument("--out", type=Path, default=NOISE_FILE)
    args = ap.parse_args()
    faces = asset_root() / "faces"
    paths = sorted((faces / "london_set").glob("*_neutral.jpg"))[: args.photos - 4]
    paths += sorted((faces / "lisa_cc0").glob("*.jp*g"))[:2]
    paths += sorted((faces / "zoom_cc0").glob("*.jp*g"))[:2]
    rng = np.random.default_rng(0)
    sigmas = []
    cfg = TrackerConfig(video=False, smoothing=None, max_faces=1)
    with FaceTracker(ICTFaceModel().expression_names, cfg) as tracker:
        for path in tqdm(paths, desc="photos"):
            image = cv2.imread(str(path))[:, :, ::-1].copy()
            sigma = jitter_sigma(tracker, image, args.repeats, rng)
            if sigma is not None:
                sigmas.append(sigma)
    sigma = np.sqrt(np.mean(np.square(sigmas), 0)).astype(np.float32)  # (470,)
    residuals = fit_residuals(sorted(faces.rglob("*.jpg")))
    np.savez(args.out, sigma=sigma, photos=len(sigmas), repeats=args.repeats,
             residuals=residuals.astype(np.float32))
    print(f"{len(sigmas)} photos x {args.repeats}: σ median {np.median(sigma):.5f}, "
          f"mesh mean {sigma[:N_MESH].mean():.5f}, irises {sigma[N_MESH:].round(5)} "
          f"(normalised; x 100 ≈ px on a face of RMS radius 100 px); fit residuals on "
          f"{len(residuals)} portraits: RMS {np.sqrt((residuals ** 2).mean()):.4f} -> {args.out}")


if __name__ == "__main__":
    main()
