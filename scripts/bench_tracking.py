"""Tracking accuracy with exact ground truth, and steadiness on real talking heads.

1. Renders of the ICT head (several identities, the default skin texture, yaw up to
   ±30°, pitch up to ±15°) with known ARKit weights go through the tracker with each
   reader (MediaPipe's blendshapes, the landmark encoder); reported:
   per-blendshape mean absolute error, head rotation error (degrees) and the vertex error
   of the retargeted mesh on the face (mm), raw and after a per-identity neutral
   calibration, against a predict-zeros baseline.
2. GRID clips: share of frames with a face and frame-to-frame jitter of ψ and θ before
   and after the One-Euro filter.

    python scripts/bench_tracking.py [--samples 120] [--encoder NPZ] [--out out/bench_tracking.json]
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from tqdm import tqdm

from engines.encoder.network import load_encoder
from engines.encoder.reader import torch_batch_fn
from engines.face.expressions import BASIC_EXPRESSIONS, expression_weights
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture
from engines.tracking.filters import OneEuroFilter
from engines.tracking.tracker import FaceTracker, TrackerConfig


def random_expression(model: ICTFaceModel, rng: np.random.Generator) -> torch.Tensor:
    """A basic expression at a random intensity plus up to three random extra shapes."""
    name = BASIC_EXPRESSIONS[rng.integers(len(BASIC_EXPRESSIONS))]
    psi = model.expression_vector(expression_weights(name)) * float(rng.uniform(0.3, 1.0))
    for k in rng.choice(model.n_expression, size=rng.integers(0, 4), replace=False):
        psi[0, k] = max(float(psi[0, k]), float(rng.uniform(0.2, 1.0)))
    return psi


def rotation_error_deg(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = cv2.Rodrigues(a)[0], cv2.Rodrigues(b)[0]
    cos = (np.trace(ra.T @ rb) - 1) / 2
    return math.degrees(math.acos(np.clip(cos, -1, 1)))


def reader_configs(encoder_path: str | None) -> dict[str, TrackerConfig]:
    """One tracker configuration per reader (unfiltered, every frame on its own)."""
    fn = torch_batch_fn(load_encoder(encoder_path)) if encoder_path else None
    return {
        "mediapipe": TrackerConfig(smoothing=None, video=False, reader="mediapipe"),
        "encoder": TrackerConfig(smoothing=None, video=False, reader="encoder", encoder_fn=fn),
    }


def head_camera(fov: float) -> PerspectiveCamera:
    """A camera at a distance where the head fills about the same area at any FOV."""
    dist = 13.0 / math.tan(math.radians(fov) / 2)
    return PerspectiveCamera(fov_y_deg=fov, eye=(0, 0, dist), target=(0, 0, 0), near=dist / 4)


def face_vertex_mask(model: ICTFaceModel) -> np.ndarray:
    """[V] bool: the vertices of the M_Face material."""
    return np.isin(
        np.arange(model.n_vertices),
        model.topology.faces[
            model.topology.face_material == model.topology.material_names.index("M_Face")
        ],
    )


def random_pose(rng: np.random.Generator) -> torch.Tensor:
    """[1, 6] pose: pitch up to ±15°, yaw up to ±30°, no roll, no translation."""
    pose = torch.zeros(1, 6)
    pose[0, 0] = math.radians(rng.uniform(-15, 15))
    pose[0, 1] = math.radians(rng.uniform(-30, 30))
    return pose


def neutral_readings(model: ICTFaceModel, renderer: MeshRenderer, cam: PerspectiveCamera,
                     ids: torch.Tensor, trackers: dict[str, FaceTracker]) -> dict[str, list]:
    """Per reader, each identity's resting reading [n_expression], to calibrate against."""
    neutral = {r: [] for r in trackers}
    for i in range(len(ids)):
        image = renderer.render(model(ids[i : i + 1], *model.zero_params(1)[1:])[0], cam)
        for r, tracker in trackers.items():
            res = tracker.process(image, 0.0)
            neutral[r].append(res.expression if res.found else np.zeros(model.n_expression))
    return neutral


def face_error_mm(model: ICTFaceModel, face: np.ndarray, s: torch.Tensor, v_exp: torch.Tensor,
                  est: np.ndarray) -> float:
    """Mean distance (mm) on the face between the mesh of ``est`` and the true mesh ``v_exp``."""
    v = model(s, torch.as_tensor(est, dtype=torch.float32)[None], torch.zeros(1, 6))[0]
    return float((v - v_exp).norm(dim=1).numpy()[face].mean() * 10)  # cm -> mm


def sample_scores(model: ICTFaceModel, face: np.ndarray, s: torch.Tensor, psi: torch.Tensor,
                  pose: torch.Tensor, results: dict, neutral: dict[str, np.ndarray]
                  ) -> tuple[float, dict[str, dict]]:
    """Mesh error of predicting zeros, and per reader: ψ raw/calibrated, rotation, mesh errors."""
    v_exp = model(s, psi, torch.zeros(1, 6))[0]
    zero = face_error_mm(model, face, s, v_exp, np.zeros(model.n_expression))
    scores = {}
    for r, res in results.items():
        base = neutral[r]
        cal = np.clip((res.expression - base) / np.maximum(1 - base, 0.2), 0, 1)
        scores[r] = {
            "raw": res.expression, "calibrated": cal,
            "rot_err": rotation_error_deg(pose[0, :3].numpy(), res.rotation),
            "mesh_raw": face_error_mm(model, face, s, v_exp, res.expression),
            "mesh_cal": face_error_mm(model, face, s, v_exp, cal),
        }
    return zero, scores


def reader_summary(names: list[str], row: dict[str, list], truth: np.ndarray,
                   active: np.ndarray) -> dict:
    """One reader's ψ MAE (all, active, per blendshape), rotation and mesh errors."""
    raw, cal = np.array(row["raw"]), np.array(row["calibrated"])
    return {
        "mae_all": {k: round(float(np.abs(x - truth).mean()), 4)
                    for k, x in (("raw", raw), ("calibrated", cal))},
        "mae_active": {k: round(float(np.abs(x - truth)[active].mean()), 4)
                       for k, x in (("raw", raw), ("calibrated", cal))},
        "rotation_error_deg": {"mean": round(float(np.mean(row["rot_err"])), 2),
                               "median": round(float(np.median(row["rot_err"])), 2)},
        "face_vertex_error_mm": {"raw": round(float(np.mean(row["mesh_raw"])), 3),
                                 "cal": round(float(np.mean(row["mesh_cal"])), 3)},
        "per_blendshape": {
            name: {"truth_mean": round(float(truth[:, j].mean()), 3),
                   "mae_raw": round(float(np.abs(raw[:, j] - truth[:, j]).mean()), 3),
                   "mae_calibrated": round(float(np.abs(cal[:, j] - truth[:, j]).mean()), 3),
                   "mae_zero": round(float(np.abs(truth[:, j]).mean()), 3)}
            for j, name in enumerate(names)
        },
    }


def synthetic(model: ICTFaceModel, n: int, n_ids: int, seed: int, fov: float,
              configs: dict[str, TrackerConfig]) -> dict:
    """Each reader on the same renders; per reader: ψ MAE raw/calibrated, rotation, mesh."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    ids = 0.8 * torch.randn(n_ids, model.n_shape, generator=gen)
    ids[0] = 0
    cam = head_camera(fov)
    face = face_vertex_mask(model)
    rows = {r: {k: [] for k in ("raw", "calibrated", "rot_err", "mesh_raw", "mesh_cal")}
            for r in configs}
    truth, mesh_zero, found = [], [], dict.fromkeys(configs, 0)
    trackers = {r: FaceTracker(model.expression_names, c) for r, c in configs.items()}
    with (
        MeshRenderer(
            model.topology, RenderConfig(512, 512, samples=4), texture=plain_skin_texture(model)
        ) as renderer,
        torch.no_grad(),
    ):
        neutral = neutral_readings(model, renderer, cam, ids, trackers)
        for k in tqdm(range(n), desc="synthetic", unit="render"):
            i = k % n_ids
            s = ids[i : i + 1]
            psi = random_expression(model, rng)
            pose = random_pose(rng)
            image = renderer.render(model(s, psi, pose)[0], cam)
            results = {r: t.process(image, 0.0) for r, t in trackers.items()}
            if not all(res.found for res in results.values()):
                for r, res in results.items():
                    found[r] += int(res.found)
                continue  # compared on the renders every reader found
            truth.append(psi[0].numpy())
            zero, scores = sample_scores(model, face, s, psi, pose, results,
                                         {r: v[i] for r, v in neutral.items()})
            mesh_zero.append(zero)
            for r, score in scores.items():
                found[r] += 1
                for key, value in score.items():
                    rows[r][key].append(value)
    for t in trackers.values():
        t.close()
    truth = np.array(truth)
    active = truth > 0.05
    return {"samples": n, "identities": n_ids, "compared": len(truth), "faces_found": found,
            "mae_all_zero": round(float(np.abs(truth).mean()), 4),
            "mae_active_zero": round(float(np.abs(truth)[active].mean()), 4),
            "face_vertex_error_mm_zero": round(float(np.mean(mesh_zero)), 3),
            "readers": {r: reader_summary(model.expression_names, row, truth, active)
                        for r, row in rows.items()}}


def grid(model: ICTFaceModel, configs: dict[str, TrackerConfig]) -> list[dict]:
    out = []
    for clip in sorted((asset_root() / "video" / "grid_corpus").glob("*.mpg")):
        for reader, cfg in configs.items():
            video_cfg = replace(cfg, video=True)
            with FaceTracker(model.expression_names, video_cfg) as tracker, \
                    av.open(str(clip)) as c:
                rate = float(c.streams.video[0].average_rate or 25)
                seq = [tracker.process(f, i / rate) for i, f in enumerate(c.decode(video=0))]
            found = [r for r in seq if r.found]
            raw = np.array([np.concatenate([r.expression, r.rotation]) for r in found])
            f = OneEuroFilter()
            smooth = np.array([f(x, i / rate) for i, x in enumerate(raw)])
            n = model.n_expression

            def jitter(a: np.ndarray, sl: slice) -> float:
                return float(np.abs(np.diff(a[:, sl], axis=0)).mean())

            out.append({
                "clip": clip.name, "reader": reader, "frames": len(seq),
                "face_share": round(len(found) / len(seq), 3),
                "psi_jitter_raw": round(jitter(raw, slice(0, n)), 4),
                "psi_jitter_filtered": round(jitter(smooth, slice(0, n)), 4),
                "theta_jitter_raw_deg": round(math.degrees(jitter(raw, slice(n, None))), 3),
                "theta_jitter_filtered_deg": round(
                    math.degrees(jitter(smooth, slice(n, None))), 3),
            })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--identities", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fov", type=float, default=40.0, help="render camera's vertical FOV, deg")
    ap.add_argument("--encoder", default=None,
                    help="a landmark_encoder.npz (default: the shipped encoder)")
    ap.add_argument("--out", default="out/bench_tracking.json")
    args = ap.parse_args()
    model = ICTFaceModel()
    configs = reader_configs(args.encoder)
    syn = synthetic(model, args.samples, args.identities, args.seed, args.fov, configs)
    clips = grid(model, configs)

    print(
        f"\nSynthetic: {syn['compared']}/{syn['samples']} renders found by every reader "
        f"{syn['faces_found']}, {syn['identities']} identities, yaw ±30°, pitch ±15°, "
        f"camera FOV {args.fov}°"
    )
    names = list(syn["readers"])
    print("| measure | " + " | ".join(f"{r} raw | {r} calibrated" for r in names)
          + " | predict zeros |")
    print("|---|" + "---|---|" * len(names) + "---|")
    for key, label in (("mae_all", "ψ MAE, all 53"), ("mae_active", "ψ MAE, active (>0.05)")):
        cells = [f"{syn['readers'][r][key]['raw']} | {syn['readers'][r][key]['calibrated']}"
                 for r in names]
        print(f"| {label} | " + " | ".join(cells) + f" | {syn[key + '_zero']} |")
    cells = [f"{syn['readers'][r]['face_vertex_error_mm']['raw']} | "
             f"{syn['readers'][r]['face_vertex_error_mm']['cal']}" for r in names]
    print("| face vertex error, mm | " + " | ".join(cells)
          + f" | {syn['face_vertex_error_mm_zero']} |")
    cells = [f"{syn['readers'][r]['rotation_error_deg']['mean']} / "
             f"{syn['readers'][r]['rotation_error_deg']['median']} | " for r in names]
    print("| head rotation error, deg (mean / median) | " + " | ".join(cells) + " |")
    print("\n| blendshape | truth mean | " + " | ".join(f"MAE {r} raw" for r in names)
          + " | MAE zeros |")
    print("|---|---|" + "---|" * len(names) + "---|")
    first = syn["readers"][names[0]]["per_blendshape"]
    for name, d in first.items():
        cells = [str(syn["readers"][r]["per_blendshape"][name]["mae_raw"]) for r in names]
        print(f"| {name} | {d['truth_mean']} | " + " | ".join(cells) + f" | {d['mae_zero']} |")
    print(
        "\n| GRID clip | reader | frames | face share | ψ jitter raw | ψ jitter filtered | "
        "θ jitter raw (deg) | θ jitter filtered (deg) |\n|---|---|---|---|---|---|---|---|"
    )
    for c in clips:
        print(
            f"| {c['clip']} | {c['reader']} | {c['frames']} | {c['face_share']} | "
            f"{c['psi_jitter_raw']} | {c['psi_jitter_filtered']} | "
            f"{c['theta_jitter_raw_deg']} | {c['theta_jitter_filtered_deg']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"synthetic": syn, "grid": clips}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
