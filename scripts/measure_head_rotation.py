"""How well the head's rotation can be read from MediaPipe's landmarks: renders of the ICT
head with a known rotation, read by MediaPipe (IMAGE mode), the rotation taken in several
ways, against doing nothing.

Renders: random identities (β ~ 0.8 N(0, 1), the mean head first), the default skin, a
vertical field of view of 25, 40 or 55° (the camera's distance keeps the head's size),
pitch ±15°, yaw ±30°, roll ±10°; a quarter at rest, the rest a basic expression plus random
shapes (as ``scripts/bench_tracking.py`` draws them). Per identity and field of view one
frontal render at rest: the "calibration" a user gives the page. Two sets with different
seeds: the tuning set (the linear correction below is fitted there) and the held-out set
that every row is scored on.

Readers (error = the angle of the rotation between truth and reading, degrees):
- no rotation (the baseline);
- MediaPipe's facial transformation matrix;
- the same geometry pipeline assuming another field of view (MediaPipe assumes 63°);
- the canonical face fitted on all 468 landmarks (MediaPipe weighs 20-odd rigid ones);
- the person's own calibration frame as the reference face (a Procrustes fit of its
  metric landmarks onto the frame's), so the reference has the person's shape;
- the matrix's rotation vector corrected by a linear map fitted on the tuning set.

    python scripts/measure_head_rotation.py [--samples 240] [--cache out/head_rotation]
        [--out out/measure_head_rotation.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from bench_tracking import head_camera, random_expression
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_path
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture
from engines.tracking.face_geometry import (
    GeometryMetadata,
    metric_landmarks,
    pose_matrix,
    weighted_procrustes,
)
from engines.tracking.landmarkers import TfliteLandmarker

FOVS = (25.0, 40.0, 55.0)
IDENTITIES = 6
SIZE = 512


def random_pose(rng: np.random.Generator) -> torch.Tensor:
    """(1, 6): pitch ±15°, yaw ±30°, roll ±10°, no translation."""
    pose = torch.zeros(1, 6)
    for axis, limit in enumerate((15, 30, 10)):
        pose[0, axis] = math.radians(rng.uniform(-limit, limit))
    return pose


def read_set(model: ICTFaceModel, seed: int, n: int) -> dict[str, np.ndarray]:
    """n renders read by MediaPipe (those with a face found), and the calibration frames'
    landmarks (IDENTITIES, len(FOVS), 478, 3)."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    ids = 0.8 * torch.randn(IDENTITIES, model.n_shape, generator=gen)
    ids[0] = 0
    reader = TfliteLandmarker(None, video=False, max_faces=1, min_confidence=0.5, scores=True)
    out: dict[str, list] = {k: [] for k in ("fov", "id", "truth", "rest", "landmarks", "matrix")}
    calib = np.zeros((IDENTITIES, len(FOVS), 478, 3), np.float32)
    rest_psi = torch.zeros(1, model.n_expression)
    config = RenderConfig(SIZE, SIZE, samples=4)
    with MeshRenderer(model.topology, config, texture=plain_skin_texture(model)) as renderer, \
            torch.no_grad():  # fmt: skip
        for i in range(IDENTITIES):
            head = model(ids[i : i + 1], rest_psi, torch.zeros(1, 6))[0]
            for j, fov in enumerate(FOVS):
                calib[i, j] = reader(renderer.render(head, head_camera(fov)), 0)[0].landmarks
        for k in tqdm(range(n), desc=f"renders (seed {seed})", unit="render"):
            i, fov = k % IDENTITIES, FOVS[int(rng.integers(len(FOVS)))]
            rest = (k // IDENTITIES) % 4 == 0
            psi = rest_psi if rest else random_expression(model, rng)
            pose = random_pose(rng)
            image = renderer.render(model(ids[i : i + 1], psi, pose)[0], head_camera(fov))
            faces = reader(image, 0)
            if not faces:
                continue
            for key, value in (("fov", fov), ("id", i), ("truth", pose[0, :3].numpy()),
                               ("rest", rest), ("landmarks", faces[0].landmarks),
                               ("matrix", faces[0].matrix)):  # fmt: skip
                out[key].append(value)
    reader.close()
    return {**{k: np.asarray(v) for k, v in out.items()}, "calibration": calib}


def rotation_of(matrix: np.ndarray) -> np.ndarray:
    """The rotation vector (3,) of a similarity's 3x3 part."""
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    return Rotation.from_matrix(u @ vt).as_rotvec()


def errors(truth: np.ndarray, read: np.ndarray) -> np.ndarray:
    """Angles (degrees) between true and read rotation vectors (N, 3)."""
    diff = Rotation.from_rotvec(truth).inv() * Rotation.from_rotvec(read)
    return np.degrees(diff.magnitude())


def readers(data: dict, meta: GeometryMetadata, correction: np.ndarray) -> dict[str, np.ndarray]:
    """Each reader's rotation vectors (N, 3) for a set."""
    lms, n = data["landmarks"], len(data["truth"])
    fov_index = np.searchsorted(FOVS, data["fov"])
    everywhere = np.ones(len(meta.canonical))
    out = {
        "no rotation (baseline)": np.zeros((n, 3)),
        "MediaPipe's matrix": np.array([rotation_of(m) for m in data["matrix"]]),
    }
    for fov in (40.0, 50.0):
        out[f"the same pipeline, {fov:.0f}° assumed"] = np.array(
            [rotation_of(pose_matrix(x, SIZE, SIZE, meta, fov)) for x in lms])
    metric = [metric_landmarks(x, SIZE, SIZE, meta) for x in lms]  # (468, 3) each, once
    references = [[metric_landmarks(c, SIZE, SIZE, meta) for c in per_fov]
                  for per_fov in data["calibration"]]  # per identity and field of view
    out["canonical face on all 468 landmarks"] = np.array(
        [rotation_of(weighted_procrustes(meta.canonical, m, everywhere)) for m in metric])
    out["own calibration frame as reference"] = np.array([
        rotation_of(weighted_procrustes(references[i][j], m, everywhere))
        for m, i, j in zip(metric, data["id"], fov_index, strict=True)])
    matrix_read = out["MediaPipe's matrix"]
    out["matrix, linear correction (fitted on tuning)"] = (
        np.c_[matrix_read, np.ones(n)] @ correction)
    return out


def gains(truth: np.ndarray, read: np.ndarray) -> list[float]:
    """Per axis (pitch, yaw, roll) the slope of read on true."""
    return [float(np.polyfit(truth[:, a], read[:, a], 1)[0]) for a in range(3)]


def summary(data: dict, read: np.ndarray) -> dict:
    e = errors(data["truth"], read)
    by_fov = {f"{f:.0f}": round(float(e[data["fov"] == f].mean()), 2) for f in FOVS}
    return {"mean": round(float(e.mean()), 2), "median": round(float(np.median(e)), 2),
            "at_rest": round(float(e[data["rest"]].mean()), 2), "by_fov": by_fov,
            "gains": [round(g, 3) for g in gains(data["truth"], read)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=240, help="renders per set")
    ap.add_argument("--cache", default="out/head_rotation", help="folder for the readings")
    ap.add_argument("--out", default="out/measure_head_rotation.json")
    args = ap.parse_args()
    model = ICTFaceModel()
    meta = GeometryMetadata.from_task(asset_path("face_landmarker"))
    sets = {}
    for name, seed in (("tuning", 1), ("held_out", 2)):
        cache = Path(args.cache) / f"{name}_{args.samples}.npz"
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **read_set(model, seed, args.samples))
        with np.load(cache) as f:
            sets[name] = dict(f)
    tune = sets["tuning"]
    matrix_read = np.array([rotation_of(m) for m in tune["matrix"]])
    correction = np.linalg.lstsq(np.c_[matrix_read, np.ones(len(matrix_read))],
                                 tune["truth"], rcond=None)[0]  # (4, 3)
    result = {name: {r: summary(data, read) for r, read in readers(data, meta, correction).items()}
              for name, data in sets.items()}
    print("\nHeld out "
          f"({len(sets['held_out']['truth'])} renders; tuning set's mean in the last column)")
    print("| reader | mean ° | median ° | at rest ° | by FOV 25 / 40 / 55 ° "
          "| gain pitch / yaw / roll | tuning set mean ° |")
    print("|---|---|---|---|---|---|---|")
    for r, s in result["held_out"].items():
        fov = " / ".join(str(v) for v in s["by_fov"].values())
        gain = " / ".join(f"{g:.2f}" for g in s["gains"])
        print(f"| {r} | {s['mean']} | {s['median']} | {s['at_rest']} | {fov} | {gain} "
              f"| {result['tuning'][r]['mean']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
