"""Measure how MediaPipe reads the ICT head, one shape at a time (the "inverse" reader's data).

Each of the head's expression shapes alone at weights 0, 0.2, ..., 1 is rendered on
several random identities, skin tints and head poses (yaw ±20°, pitch ±10°, field of view
20-45°) and read by MediaPipe; the median score of the shape's own category at each weight
is its response curve (``engines/tracking/response_curves.py``). Prints each curve and the
strongest other categories that respond (cross-talk), and writes the curves. The same
renders' landmarks give the head's mouth and eye openings per shape and weight (the
"openings" reader's ``OpeningCurves``, ``engines/tracking/openings.py``).

The GRID clips are not used: they are what the reader is judged on
(``scripts/bench_fidelity.py``), and ``scripts/bench_tracking.py`` renders its own samples
with another seed.

    python scripts/measure_mediapipe_response.py [--identities 16] [--seed 1]
        [--out engines/tracking/data/mediapipe_response.npz]
        [--openings-out engines/tracking/data/mediapipe_openings.npz]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engines.face.ict import ICTFaceModel
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture
from engines.tracking.arkit_mapping import BLENDSHAPE_NAMES
from engines.tracking.openings import OPENINGS, OPENINGS_FILE, OpeningCurves, face_openings
from engines.tracking.response_curves import (
    RESPONSE_FILE,
    InverseResponse,
    ResponseCurves,
    own_categories,
)
from engines.tracking.tracker import FaceTracker, TrackerConfig

LEVELS = np.linspace(0.0, 1.0, 6)


def read_levels(model: ICTFaceModel, identities: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(E, L, identities, 52) MediaPipe's scores and (E, L, identities, 3) the openings its
    landmarks measure (``face_openings``), NaN where no face was found."""
    rng = np.random.default_rng(seed)
    n_expr = model.n_expression
    out = np.full((n_expr, len(LEVELS), identities, len(BLENDSHAPE_NAMES)), np.nan, np.float32)
    opened = np.full((n_expr, len(LEVELS), identities, len(OPENINGS)), np.nan, np.float32)
    base = plain_skin_texture(model).astype(np.float32)
    cfg = TrackerConfig(video=False, smoothing=None, reader="mediapipe")
    with (MeshRenderer(model.topology, RenderConfig(512, 512, samples=4)) as renderer,
          FaceTracker(model.expression_names, cfg) as tracker, torch.no_grad()):
        for k in range(identities):
            tint = rng.uniform(0.55, 1.1) * rng.uniform(0.95, 1.05, size=3)
            renderer.set_texture(np.clip(base * tint, 0, 255).astype(np.uint8))
            shape = torch.from_numpy(0.8 * rng.standard_normal((1, model.n_shape))).float()
            pose = torch.zeros(1, model.n_pose)
            pose[0, :2] = torch.from_numpy(np.radians([rng.uniform(-10, 10),
                                                       rng.uniform(-20, 20)]))
            fov = float(rng.uniform(20, 45))
            dist = 13.0 / math.tan(math.radians(fov) / 2)
            cam = PerspectiveCamera(fov_y_deg=fov, eye=(0, 0, dist), target=(0, 0, 0),
                                    near=dist / 4)
            for j in tqdm(range(n_expr), desc=f"identity {k + 1}/{identities}", unit="shape"):
                for li, level in enumerate(LEVELS):
                    psi = torch.zeros(1, n_expr)
                    psi[0, j] = float(level)
                    image = renderer.render(model(shape, psi, pose)[0], cam)
                    res = tracker.process(image, 0.0)
                    if res.found:
                        out[j, li, k] = res.blendshapes
                        opened[j, li, k] = face_openings(res.landmarks, *image.shape[1::-1])
    return out, opened


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identities", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(RESPONSE_FILE))
    ap.add_argument("--openings-out", default=str(OPENINGS_FILE))
    args = ap.parse_args()
    model = ICTFaceModel()
    scores, opened = read_levels(model, args.identities, args.seed)
    median = np.nanmedian(scores, axis=2)  # (E, L, 52)
    source = own_categories(model.expression_names)  # (E,)
    response = ResponseCurves(LEVELS, median.astype(np.float32), model.expression_names)
    own = response.own  # (E, L)
    print("| shape | own category | " + " | ".join(f"w={v:.1f}" for v in LEVELS)
          + " | strongest other responses |")
    print("|---|---|" + "---|" * len(LEVELS) + "---|")
    for j, name in enumerate(model.expression_names):
        change = median[j, -1] - median[j, 0]
        change[source[j]] = 0
        others = ", ".join(f"{BLENDSHAPE_NAMES[k]} {change[k]:+.2f}"
                           for k in np.argsort(-np.abs(change))[:2])
        print(f"| {name} | {BLENDSHAPE_NAMES[source[j]]} | "
              + " | ".join(f"{v:.2f}" for v in own[j]) + f" | {others} |")
    print(f"\ninverted (rises enough, little cross-talk): "
          f"{', '.join(InverseResponse(response).inverted)}")
    response.save(Path(args.out))
    curves = OpeningCurves(LEVELS, np.nanmedian(opened, axis=2).astype(np.float32),
                           model.expression_names)
    print("\n| opening | driver | " + " | ".join(f"w={v:.1f}" for v in LEVELS)
          + " | other shapes moving it most (at w=1) |")
    print("|---|---|" + "---|" * len(LEVELS) + "---|")
    for k, name in enumerate(OPENINGS):
        j = curves.driver(k)
        change = curves.openings[:, -1, k] - curves.openings[:, 0, k]
        change[j] = 0
        others = ", ".join(f"{model.expression_names[i]} {change[i]:+.3f}"
                           for i in np.argsort(-np.abs(change))[:3])
        print(f"| {name} | {model.expression_names[j]} | "
              + " | ".join(f"{v:.3f}" for v in curves.openings[j, :, k]) + f" | {others} |")
    curves.save(Path(args.openings_out))
    print(f"wrote {args.out} and {args.openings_out}")


if __name__ == "__main__":
    main()
