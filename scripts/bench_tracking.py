"""Tracking accuracy with exact ground truth, and steadiness on real talking heads.

1. Renders of the ICT head (several identities, the default skin texture, yaw up to
   ±30°, pitch up to ±15°) with known ARKit weights go through the tracker with each
   reader (MediaPipe's blendshapes by name and through the learned inverse map, the
   landmark encoder, the per-frame landmark fit; the
   fit learns each person's identity, so it gets a tracker per identity). The weights come
   in equal shares from three sources: a basic expression plus random shapes, the FACS
   emotion records, and ψ sequences tracked on the GRID clips (real speech). Reported, raw,
   after a per-identity neutral calibration, and after that plus a range calibration (each
   identity first holds the six basic expressions, an open jaw and closed eyes at full
   intensity for three frames each, as a user would on the page's "Calibrate range"),
   beside the trivial baselines (predict neutral, a constant: the truth's own mean ψ):
   - expression displacement error: the retargeted face vs the true one (same identity,
     no pose), mean vertex distance over the face in mm, and its ratio to predicting
     neutral (1.0 = no better than doing nothing);
   - per-shape Pearson r between true and read weights for the shapes that matter
     (``KEY_SHAPES``) and the mean over every shape that varies (constants score 0);
   - head rotation error (degrees; predicting no rotation as the baseline);
   - per-blendshape MAE (in the JSON; an MAE alone cannot tell a reader from zeros).
2. GRID clips: share of frames with a face and frame-to-frame jitter of ψ and θ before
   and after the One-Euro filter.

    python scripts/bench_tracking.py [--samples 120] [--readers mediapipe,fit] [--encoder NPZ]
        [--out out/bench_tracking.json]
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

from engines.emotion.facs import facs_records
from engines.encoder.network import load_encoder
from engines.encoder.reader import torch_batch_fn
from engines.face.expressions import BASIC_EXPRESSIONS, expression_weights
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture
from engines.tracking.filters import OneEuroFilter, fast_elements
from engines.tracking.landmark_fit import FitConfig
from engines.tracking.tracker import FaceTracker, TrackerConfig, from_neutral, range_gains

KEY_SHAPES = ("jawOpen", "mouthSmile_L", "mouthSmile_R", "mouthFunnel", "mouthPucker",
              "browInnerUp_L", "browInnerUp_R", "browDown_L", "browDown_R", "eyeBlink_L",
              "eyeBlink_R", "eyeWide_L", "eyeWide_R", "cheekPuff_L", "cheekPuff_R",
              "mouthPress_L", "mouthPress_R", "noseSneer_L", "noseSneer_R")
SOURCES = ("random", "facs", "grid")


def grid_expressions(model: ICTFaceModel) -> np.ndarray:
    """ψ read by MediaPipe (VIDEO mode, unfiltered) on every frame of the GRID clips with a
    face: real speech, as a pool of realistic expressions [N, n_expression]."""
    cfg = TrackerConfig(smoothing=None, reader="mediapipe")
    out = []
    for clip in sorted((asset_root() / "video" / "grid_corpus").glob("*.mpg")):
        with FaceTracker(model.expression_names, cfg) as tracker, av.open(str(clip)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                res = tracker.process(frame, i / 25)
                if res.found:
                    out.append(res.expression)
    return np.array(out, np.float32)


def expression_source(model: ICTFaceModel, seed: int):
    """A function (rng, k) -> ψ [1, n_expression]: sample k from the three sources in turn."""
    facs = facs_records(model.expression_names, n_subjects=20, per_subject=30, seed=seed)
    pools = {"facs": facs.expression.astype(np.float32), "grid": grid_expressions(model)}

    def draw(rng: np.random.Generator, k: int) -> tuple[torch.Tensor, str]:
        source = SOURCES[k % len(SOURCES)]
        if source == "random":
            return random_expression(model, rng), source
        pool = pools[source]
        return torch.from_numpy(pool[rng.integers(len(pool))].copy())[None], source

    return draw


def pearson(truth: np.ndarray, read: np.ndarray) -> float:
    """r between two columns; 0 when either is constant (no information)."""
    if np.ptp(truth) == 0 or np.ptp(read) == 0:
        return 0.0
    return float(np.corrcoef(truth, read)[0, 1])


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
        "inverse": TrackerConfig(smoothing=None, video=False, reader="inverse"),
        "openings": TrackerConfig(smoothing=None, video=False, reader="openings"),
        "encoder": TrackerConfig(smoothing=None, video=False, reader="encoder", encoder_fn=fn),
        "fit": TrackerConfig(smoothing=None, video=False, reader="fit"),
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
                     ids: torch.Tensor, trackers: dict[str, list[FaceTracker]]
                     ) -> dict[str, list]:
    """Per reader, each identity's resting reading [n_expression], to calibrate against.
    Each stream starts with a second of the person at rest (what the fit reader learns
    the person's identity from, as it would live)."""
    neutral = {r: [] for r in trackers}
    for i in range(len(ids)):
        image = renderer.render(model(ids[i : i + 1], *model.zero_params(1)[1:])[0], cam)
        for r, per_identity in trackers.items():
            if per_identity[i].config.reader == "fit":  # the others keep no per-person state
                for _ in range(FitConfig.identity_frames - 1):
                    per_identity[i].process(image, 0.0)
            res = per_identity[i].process(image, 0.0)
            neutral[r].append(res.expression if res.found else np.zeros(model.n_expression))
    return neutral


def range_routine(model: ICTFaceModel) -> list[torch.Tensor]:
    """The range calibration's frames: each basic expression, an open jaw and closed eyes
    at full intensity, held three frames each."""
    poses = [expression_weights(n) for n in BASIC_EXPRESSIONS if n != "neutral"]
    poses += [{"jawOpen": 1.0}, {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0}]
    return [model.expression_vector(w) for w in poses for _ in range(3)]


def range_calibration(model: ICTFaceModel, renderer: MeshRenderer, cam: PerspectiveCamera,
                      ids: torch.Tensor, trackers: dict[str, list[FaceTracker]],
                      neutral: dict[str, list]) -> dict[str, list[np.ndarray]]:
    """Per reader, each identity's range gains from its neutral-calibrated readings of the
    routine (``engines.tracking.tracker.range_gains``)."""
    gains = {r: [] for r in trackers}
    routine = range_routine(model)
    for i in range(len(ids)):
        images = [renderer.render(model(ids[i : i + 1], psi, torch.zeros(1, 6))[0], cam)
                  for psi in routine]
        for r, per_identity in trackers.items():
            base = neutral[r][i]
            reads = [per_identity[i].process(im, 0.0) for im in images]
            cal = [from_neutral(x.expression, base) for x in reads if x.found]
            gains[r].append(range_gains(np.array(cal)))
    return gains


def face_error_mm(model: ICTFaceModel, face: np.ndarray, s: torch.Tensor, v_exp: torch.Tensor,
                  est: np.ndarray) -> float:
    """Mean distance (mm) on the face between the mesh of ``est`` and the true mesh ``v_exp``."""
    v = model(s, torch.as_tensor(est, dtype=torch.float32)[None], torch.zeros(1, 6))[0]
    return float((v - v_exp).norm(dim=1).numpy()[face].mean() * 10)  # cm -> mm


def sample_scores(model: ICTFaceModel, face: np.ndarray, s: torch.Tensor, psi: torch.Tensor,
                  pose: torch.Tensor, results: dict, neutral: dict[str, np.ndarray],
                  gains: dict[str, np.ndarray]) -> tuple[float, dict[str, dict]]:
    """Mesh error of predicting neutral, and per reader: ψ raw/calibrated/ranged, rotation,
    mesh errors."""
    v_exp = model(s, psi, torch.zeros(1, 6))[0]
    zero = face_error_mm(model, face, s, v_exp, np.zeros(model.n_expression))
    scores = {}
    for r, res in results.items():
        base = neutral[r]
        cal = from_neutral(res.expression, base)
        ranged = np.clip(cal * gains[r], 0, 1)
        scores[r] = {
            "raw": res.expression, "calibrated": cal, "range": ranged,
            "rot_err": rotation_error_deg(pose[0, :3].numpy(), res.rotation),
            "mesh_raw": face_error_mm(model, face, s, v_exp, res.expression),
            "mesh_cal": face_error_mm(model, face, s, v_exp, cal),
            "mesh_range": face_error_mm(model, face, s, v_exp, ranged),
        }
    return zero, scores


def shape_correlations(names: list[str], truth: np.ndarray, read: np.ndarray) -> dict:
    """Pearson r per key shape, and the means over the key shapes and over every shape that
    varies in the truth."""
    per = {n: pearson(truth[:, j], read[:, j]) for j, n in enumerate(names)}
    varying = [n for j, n in enumerate(names) if np.ptp(truth[:, j]) > 0]
    return {
        "r_key_mean": round(float(np.mean([per[n] for n in KEY_SHAPES])), 3),
        "r_all_mean": round(float(np.mean([per[n] for n in varying])), 3),
        "r_key": {n: round(per[n], 3) for n in KEY_SHAPES},
    }


def reader_summary(names: list[str], row: dict[str, list], truth: np.ndarray,
                   active: np.ndarray, zero_mm: float) -> dict:
    """One reader: displacement error and its ratio to predicting neutral, per-shape r,
    rotation error, and ψ MAE (all, active, per blendshape), raw and calibrated (the
    displacement error and r also after the range calibration)."""
    raw, cal = np.array(row["raw"]), np.array(row["calibrated"])
    mm = {k: float(np.mean(row[f"mesh_{k}"])) for k in ("raw", "cal", "range")}
    return {
        "face_vertex_error_mm": {k: round(v, 3) for k, v in mm.items()},
        "ratio_to_neutral": {k: round(v / zero_mm, 3) for k, v in mm.items()},
        "correlation": {"raw": shape_correlations(names, truth, raw),
                        "calibrated": shape_correlations(names, truth, cal),
                        "range": shape_correlations(names, truth, np.array(row["range"]))},
        "mae_all": {k: round(float(np.abs(x - truth).mean()), 4)
                    for k, x in (("raw", raw), ("calibrated", cal))},
        "mae_active": {k: round(float(np.abs(x - truth)[active].mean()), 4)
                       for k, x in (("raw", raw), ("calibrated", cal))},
        "rotation_error_deg": {"mean": round(float(np.mean(row["rot_err"])), 2),
                               "median": round(float(np.median(row["rot_err"])), 2)},
        "per_blendshape": {
            name: {"truth_mean": round(float(truth[:, j].mean()), 3),
                   "mae_raw": round(float(np.abs(raw[:, j] - truth[:, j]).mean()), 3),
                   "mae_calibrated": round(float(np.abs(cal[:, j] - truth[:, j]).mean()), 3),
                   "mae_zero": round(float(np.abs(truth[:, j]).mean()), 3)}
            for j, name in enumerate(names)
        },
    }


def baselines(model: ICTFaceModel, face: np.ndarray, ids: torch.Tensor, which: list[int],
              truth: np.ndarray, rotations: np.ndarray) -> dict:
    """The trivial readers: neutral (ψ = 0, no rotation) and a constant (the truth's own
    mean ψ, the best a constant can do), on the same samples."""
    out = {}
    for name, guess in (("neutral", np.zeros_like(truth[0])), ("constant", truth.mean(0))):
        errs = []
        for i, psi in zip(which, truth, strict=True):
            s = ids[i : i + 1]
            v_true = model(s, torch.from_numpy(psi)[None], torch.zeros(1, 6))[0]
            errs.append(face_error_mm(model, face, s, v_true, guess))
        corr = shape_correlations(model.expression_names, truth, np.tile(guess, (len(truth), 1)))
        out[name] = {"face_vertex_error_mm": round(float(np.mean(errs)), 3),
                     "r_key_mean": corr["r_key_mean"], "r_all_mean": corr["r_all_mean"]}
    angles = np.degrees(np.linalg.norm(rotations, axis=1))
    out["neutral"]["rotation_error_deg"] = {"mean": round(float(angles.mean()), 2),
                                            "median": round(float(np.median(angles)), 2)}
    return out


def identity_trackers(model: ICTFaceModel, cfg: TrackerConfig, n_ids: int
                      ) -> list[FaceTracker]:
    """The tracker each identity's renders go to: its own for a reader that learns the
    person (the fit reader's identity), as in a live stream; else one shared."""
    if cfg.reader == "fit":
        return [FaceTracker(model.expression_names, cfg) for _ in range(n_ids)]
    return [FaceTracker(model.expression_names, cfg)] * n_ids


def synthetic(model: ICTFaceModel, n: int, n_ids: int, seed: int, fov: float,
              configs: dict[str, TrackerConfig]) -> dict:
    """Each reader on the same renders, with the trivial baselines beside them."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    ids = 0.8 * torch.randn(n_ids, model.n_shape, generator=gen)
    ids[0] = 0
    cam = head_camera(fov)
    face = face_vertex_mask(model)
    draw = expression_source(model, seed)
    rows = {r: {k: [] for k in ("raw", "calibrated", "range", "rot_err", "mesh_raw",
                                "mesh_cal", "mesh_range")}
            for r in configs}
    truth, which, rotations, sources = [], [], [], []
    found = dict.fromkeys(configs, 0)
    trackers = {r: identity_trackers(model, c, n_ids) for r, c in configs.items()}
    with (
        MeshRenderer(
            model.topology, RenderConfig(512, 512, samples=4), texture=plain_skin_texture(model)
        ) as renderer,
        torch.no_grad(),
    ):
        neutral = neutral_readings(model, renderer, cam, ids, trackers)
        gains = range_calibration(model, renderer, cam, ids, trackers, neutral)
        for k in tqdm(range(n), desc="synthetic", unit="render"):
            i = k % n_ids
            s = ids[i : i + 1]
            psi, source = draw(rng, k)
            pose = random_pose(rng)
            image = renderer.render(model(s, psi, pose)[0], cam)
            results = {r: t[i].process(image, 0.0) for r, t in trackers.items()}
            if not all(res.found for res in results.values()):
                for r, res in results.items():
                    found[r] += int(res.found)
                continue  # compared on the renders every reader found
            truth.append(psi[0].numpy())
            which.append(i)
            rotations.append(pose[0, :3].numpy())
            sources.append(source)
            _, scores = sample_scores(model, face, s, psi, pose, results,
                                      {r: v[i] for r, v in neutral.items()},
                                      {r: g[i] for r, g in gains.items()})
            for r, score in scores.items():
                found[r] += 1
                for key, value in score.items():
                    rows[r][key].append(value)
        truth = np.array(truth)
        base = baselines(model, face, ids, which, truth, np.array(rotations))
    for t in {id(x): x for per in trackers.values() for x in per}.values():
        t.close()
    active = truth > 0.05
    zero_mm = base["neutral"]["face_vertex_error_mm"]
    return {"samples": n, "identities": n_ids, "compared": len(truth), "faces_found": found,
            "sources": {s: sources.count(s) for s in SOURCES},
            "baselines": base,
            "mae_all_zero": round(float(np.abs(truth).mean()), 4),
            "mae_active_zero": round(float(np.abs(truth)[active].mean()), 4),
            "readers": {r: reader_summary(model.expression_names, row, truth, active, zero_mm)
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
            f = OneEuroFilter(fast=fast_elements(model.expression_names))  # as the tracker
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


def print_synthetic(syn: dict, fov: float) -> None:
    """The headline table (displacement error, its ratio to neutral, shape correlations,
    rotation; readers beside the trivial baselines) and the key shapes' r."""
    print(f"\nSynthetic: {syn['compared']}/{syn['samples']} renders found by every reader "
          f"{syn['faces_found']}, expressions {syn['sources']}, {syn['identities']} "
          f"identities, yaw ±30°, pitch ±15°, camera FOV {fov}°")
    readers, base = syn["readers"], syn["baselines"]
    cols = [(r, k) for r in readers for k in ("raw", "calibrated", "range")]
    print("| measure | " + " | ".join(f"{r} {k}" for r, k in cols)
          + " | predict neutral | constant (mean ψ) |")
    print("|---|" + "---|" * (len(cols) + 2))

    def row(label: str, cell, neutral, constant) -> None:
        print(f"| {label} | " + " | ".join(str(cell(r, k)) for r, k in cols)
              + f" | {neutral} | {constant} |")

    short = {"raw": "raw", "calibrated": "cal", "range": "range"}
    row("expression displacement error, mm",
        lambda r, k: readers[r]["face_vertex_error_mm"][short[k]],
        base["neutral"]["face_vertex_error_mm"], base["constant"]["face_vertex_error_mm"])
    row("ratio to predict-neutral (1.0 = useless)",
        lambda r, k: readers[r]["ratio_to_neutral"][short[k]], 1.0,
        round(base["constant"]["face_vertex_error_mm"]
              / base["neutral"]["face_vertex_error_mm"], 3))
    for key, label in (("r_key_mean", "mean r, key shapes"), ("r_all_mean", "mean r, all shapes")):
        row(label, lambda r, k, key=key: readers[r]["correlation"][k][key],
            base["neutral"][key], base["constant"][key])
    rot = base["neutral"]["rotation_error_deg"]
    row("head rotation error, deg (mean / median)",
        lambda r, k: (f"{readers[r]['rotation_error_deg']['mean']} / "
                      f"{readers[r]['rotation_error_deg']['median']}" if k == "raw" else ""),
        f"{rot['mean']} / {rot['median']}", "")
    print("\n| shape (Pearson r) | " + " | ".join(f"{r} {k}" for r, k in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for shape in KEY_SHAPES:
        print(f"| {shape} | " + " | ".join(
            str(readers[r]["correlation"][k]["r_key"][shape]) for r, k in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--identities", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fov", type=float, default=40.0, help="render camera's vertical FOV, deg")
    ap.add_argument("--encoder", default=None,
                    help="a landmark_encoder.npz (default: the shipped encoder)")
    ap.add_argument("--readers", default="",
                    help="comma-separated subset of the readers (default: all)")
    ap.add_argument("--out", default="out/bench_tracking.json")
    args = ap.parse_args()
    model = ICTFaceModel()
    configs = reader_configs(args.encoder)
    if args.readers:
        configs = {r: configs[r] for r in args.readers.split(",")}
    syn = synthetic(model, args.samples, args.identities, args.seed, args.fov, configs)
    clips = grid(model, configs)

    print_synthetic(syn, args.fov)
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
