"""Tracking accuracy with exact ground truth, and steadiness on real talking heads.

1. Renders of the ICT head (several identities, the default skin texture, yaw up to
   ±30°, pitch up to ±15°) with known ARKit weights go through the tracker; reported:
   per-blendshape mean absolute error, head rotation error (degrees) and the vertex error
   of the retargeted mesh on the face (mm), raw and after a per-identity neutral
   calibration, against a predict-zeros baseline.
2. GRID clips: share of frames with a face and frame-to-frame jitter of ψ and θ before
   and after the One-Euro filter.

    python scripts/bench_tracking.py [--samples 120] [--out out/bench_tracking.json]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from tqdm import tqdm

from engines.assets import asset_root
from engines.camera import PerspectiveCamera
from engines.expressions import BASIC_EXPRESSIONS, expression_weights
from engines.filters import OneEuroFilter
from engines.ict_model import ICTFaceModel
from engines.renderer import MeshRenderer, RenderConfig
from engines.skin_texture import plain_skin_texture
from engines.tracker import FaceTracker, TrackerConfig


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


def synthetic(model: ICTFaceModel, n: int, n_ids: int, seed: int, fov: float) -> dict:
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    ids = 0.8 * torch.randn(n_ids, model.n_shape, generator=gen)
    ids[0] = 0
    dist = 13.0 / math.tan(math.radians(fov) / 2)  # the head fills about the same area
    cam = PerspectiveCamera(fov_y_deg=fov, eye=(0, 0, dist), target=(0, 0, 0), near=dist / 4)
    face = np.isin(
        np.arange(model.n_vertices),
        model.topology.faces[
            model.topology.face_material == model.topology.material_names.index("M_Face")
        ],
    )
    cfg = TrackerConfig(smoothing=None, video=False)
    rows = {
        "truth": [],
        "raw": [],
        "calibrated": [],
        "rot_err": [],
        "mesh_raw": [],
        "mesh_cal": [],
        "mesh_zero": [],
        "found": 0,
    }
    with (
        MeshRenderer(
            model.topology, RenderConfig(512, 512, samples=4), texture=plain_skin_texture(model)
        ) as r,
        FaceTracker(model.expression_names, cfg) as tracker,
        torch.no_grad(),
    ):
        neutral_reading = []
        for i in range(n_ids):  # each identity's resting face, for calibration
            s = ids[i : i + 1]
            v = model(s, *model.zero_params(1)[1:])[0]
            res = tracker.process(r.render(v, cam), 0.0)
            neutral_reading.append(res.expression if res.found else np.zeros(model.n_expression))
        for k in tqdm(range(n), desc="synthetic", unit="render"):
            i = k % n_ids
            s = ids[i : i + 1]
            psi = random_expression(model, rng)
            pose = torch.zeros(1, 6)
            pose[0, 0] = math.radians(rng.uniform(-15, 15))
            pose[0, 1] = math.radians(rng.uniform(-30, 30))
            v_true = model(s, psi, pose)[0]
            res = tracker.process(r.render(v_true, cam), 0.0)
            if not res.found:
                continue
            rows["found"] += 1
            base = neutral_reading[i]
            cal = np.clip((res.expression - base) / np.maximum(1 - base, 0.2), 0, 1)
            rows["truth"].append(psi[0].numpy())
            rows["raw"].append(res.expression)
            rows["calibrated"].append(cal)
            rows["rot_err"].append(rotation_error_deg(pose[0, :3].numpy(), res.rotation))
            zero_pose = torch.zeros(1, 6)
            v_exp = model(s, psi, zero_pose)[0]
            for key, est in (
                ("mesh_raw", res.expression),
                ("mesh_cal", cal),
                ("mesh_zero", np.zeros_like(cal)),
            ):
                v_est = model(s, torch.as_tensor(est, dtype=torch.float32)[None], zero_pose)[0]
                err = (v_est - v_exp).norm(dim=1).numpy()[face] * 10  # cm -> mm
                rows[key].append(float(err.mean()))
    truth, raw, cal = (np.array(rows[k]) for k in ("truth", "raw", "calibrated"))
    per_shape = {
        name: {
            "truth_mean": round(float(truth[:, j].mean()), 3),
            "mae_raw": round(float(np.abs(raw[:, j] - truth[:, j]).mean()), 3),
            "mae_calibrated": round(float(np.abs(cal[:, j] - truth[:, j]).mean()), 3),
            "mae_zero": round(float(np.abs(truth[:, j]).mean()), 3),
        }
        for j, name in enumerate(model.expression_names)
    }
    active = truth > 0.05
    return {
        "samples": n,
        "identities": n_ids,
        "faces_found": rows["found"],
        "mae_all": {
            k: round(float(np.abs(x - truth).mean()), 4)
            for k, x in (("raw", raw), ("calibrated", cal), ("zero", 0 * truth))
        },
        "mae_active": {
            k: round(float(np.abs(x - truth)[active].mean()), 4)
            for k, x in (("raw", raw), ("calibrated", cal), ("zero", 0 * truth))
        },
        "rotation_error_deg": {
            "mean": round(float(np.mean(rows["rot_err"])), 2),
            "median": round(float(np.median(rows["rot_err"])), 2),
        },
        "face_vertex_error_mm": {
            k.split("_")[1]: round(float(np.mean(rows[k])), 3)
            for k in ("mesh_raw", "mesh_cal", "mesh_zero")
        },
        "per_blendshape": per_shape,
    }


def grid(model: ICTFaceModel) -> list[dict]:
    out = []
    for clip in sorted((asset_root() / "video" / "grid_corpus").glob("*.mpg")):
        with (
            FaceTracker(model.expression_names, TrackerConfig(smoothing=None)) as tracker,
            av.open(str(clip)) as c,
        ):
            rate = float(c.streams.video[0].average_rate or 25)
            seq = [tracker.process(f, i / rate) for i, f in enumerate(c.decode(video=0))]
        found = [r for r in seq if r.found]
        raw = np.array([np.concatenate([r.expression, r.rotation]) for r in found])
        f = OneEuroFilter()
        smooth = np.array([f(x, i / rate) for i, x in enumerate(raw)])
        n = model.n_expression

        def jitter(a: np.ndarray, sl: slice) -> float:
            return float(np.abs(np.diff(a[:, sl], axis=0)).mean())

        out.append(
            {
                "clip": clip.name,
                "frames": len(seq),
                "face_share": round(len(found) / len(seq), 3),
                "psi_jitter_raw": round(jitter(raw, slice(0, n)), 4),
                "psi_jitter_filtered": round(jitter(smooth, slice(0, n)), 4),
                "theta_jitter_raw_deg": round(math.degrees(jitter(raw, slice(n, None))), 3),
                "theta_jitter_filtered_deg": round(math.degrees(jitter(smooth, slice(n, None))), 3),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--identities", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fov", type=float, default=40.0, help="render camera's vertical FOV, deg")
    ap.add_argument("--out", default="out/bench_tracking.json")
    args = ap.parse_args()
    model = ICTFaceModel()
    syn = synthetic(model, args.samples, args.identities, args.seed, args.fov)
    clips = grid(model)

    print(
        f"\nSynthetic: {syn['faces_found']}/{syn['samples']} faces found, "
        f"{syn['identities']} identities, yaw ±30°, pitch ±15°, camera FOV {args.fov}°"
    )
    print("| measure | raw | calibrated | predict zeros |\n|---|---|---|---|")
    for key, label in (("mae_all", "ψ MAE, all 53"), ("mae_active", "ψ MAE, active (>0.05)")):
        d = syn[key]
        print(f"| {label} | {d['raw']} | {d['calibrated']} | {d['zero']} |")
    m = syn["face_vertex_error_mm"]
    print(f"| face vertex error, mm | {m['raw']} | {m['cal']} | {m['zero']} |")
    r = syn["rotation_error_deg"]
    print(f"| head rotation error, deg (mean / median) | {r['mean']} / {r['median']} | | |")
    print("\n| blendshape | truth mean | MAE raw | MAE calibrated | MAE zeros |")
    print("|---|---|---|---|---|")
    for name, d in syn["per_blendshape"].items():
        print(
            f"| {name} | {d['truth_mean']} | {d['mae_raw']} | {d['mae_calibrated']} | "
            f"{d['mae_zero']} |"
        )
    print(
        "\n| GRID clip | frames | face share | ψ jitter raw | ψ jitter filtered | "
        "θ jitter raw (deg) | θ jitter filtered (deg) |\n|---|---|---|---|---|---|---|"
    )
    for c in clips:
        print(
            f"| {c['clip']} | {c['frames']} | {c['face_share']} | {c['psi_jitter_raw']} | "
            f"{c['psi_jitter_filtered']} | {c['theta_jitter_raw_deg']} | "
            f"{c['theta_jitter_filtered_deg']} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"synthetic": syn, "grid": clips}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
