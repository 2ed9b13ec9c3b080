"""The two landmarkers side by side: MediaPipe's own (tflite) and its networks under ONNX
Runtime (onnx). Agreement on the GRID clips, and speed for one session and for N.

Agreement (every GRID clip, tracker in VIDEO mode, the mediapipe reader, no filter), per
frame where both found the face, onnx against tflite:
- landmarks: mean distance of the 478 points (x, y) in pixels of the 360x288 frame;
- blendshapes: mean |difference| of the 52 scores;
- head rotation: angle between the two rotations, degrees.
Beside it, two rows to judge the numbers by: tflite IMAGE mode against tflite VIDEO mode
(how much MediaPipe's own two modes disagree), and "previous frame" (tflite VIDEO against
its own previous frame: how much a frame's face moves; a landmarker off by this much would
be a frame late).

Speed, on frames decoded beforehand:
- the networks alone: ms per call of each network at batches ``--batches``, on
  ``--backend`` (the CPU rewrite on and off on the CPU);
- one session: the tracker's per-frame time ("track": frame in, landmarks, scores and
  matrix out), median and p95: tflite, onnx, and onnx without the CPU rewrite;
- N sessions (``--sessions``): N threads, each its own tracker and clip, frames as fast as
  they go; frames per second over all and ms of machine time per frame (wall / frames),
  the median of ``--repeats`` runs that take turns:
  tflite (one MediaPipe graph per session, what the server does by default), onnx with the
  networks shared and called by each session (the server's choice on a CPU), and onnx
  through batchers (the server's choice on a GPU; its mean batch).

    python scripts/bench_landmarker.py [--clips 0-7] [--sessions 8] [--backend auto]
        [--batches 1,8] [--skip-agreement] [--out out/bench_landmarker.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_path, asset_root
from engines.inference.backend import BackendUnavailableError
from engines.tracking.face_geometry import GeometryMetadata
from engines.tracking.landmarkers import OnnxNetworks, onnx_providers
from engines.tracking.mediapipe_onnx import LMK_SIZE, MediaPipeOnnx
from engines.tracking.tracker import FaceTracker, TrackerConfig, TrackResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fidelity import parse_indices


def clip_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def run(names: tuple[str, ...], frames: list[np.ndarray], cfg: TrackerConfig) -> list[TrackResult]:
    with FaceTracker(names, cfg) as tracker:
        return [tracker.process(f, i / 25) for i, f in enumerate(frames)]


def rotation_deg(a: np.ndarray, b: np.ndarray) -> float:
    rel = cv2.Rodrigues(a)[0].T @ cv2.Rodrigues(b)[0]
    return float(np.degrees(np.linalg.norm(cv2.Rodrigues(rel)[0])))


def disagreement(a: list[TrackResult], b: list[TrackResult], size: tuple[int, int]) -> dict:
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x.found and y.found]
    px = [np.linalg.norm((x.landmarks[:, :2] - y.landmarks[:, :2]) * size, axis=1).mean()
          for x, y in pairs]  # fmt: skip
    bs = [np.abs(x.blendshapes - y.blendshapes).mean() for x, y in pairs]
    rot = [rotation_deg(x.rotation, y.rotation) for x, y in pairs]
    return {"frames": len(pairs), "found_a": sum(x.found for x in a),
            "found_b": sum(y.found for y in b), "landmark_px": float(np.mean(px)),
            "landmark_px_p95": float(np.percentile(px, 95)),
            "blendshape_mae": float(np.mean(bs)), "rotation_deg": float(np.mean(rot)),
            "rotation_deg_max": float(np.max(rot))}  # fmt: skip


def agreement(names: tuple[str, ...], clips: list[list[np.ndarray]],
              nets: OnnxNetworks) -> dict[str, dict]:  # fmt: skip
    rows: dict[str, list[dict]] = {"onnx vs tflite": [], "tflite IMAGE vs VIDEO": [],
                                   "previous frame (tflite)": []}  # fmt: skip
    base = dict(smoothing=None, reader="mediapipe")
    for frames in tqdm(clips, desc="agreement", unit="clip"):
        size = (frames[0].shape[1], frames[0].shape[0])
        tfl = run(names, frames, TrackerConfig(**base))
        onnx = run(names, frames, TrackerConfig(**base, landmarker="onnx", onnx_networks=nets))
        image = run(names, frames, TrackerConfig(**base, video=False))
        rows["onnx vs tflite"].append(disagreement(onnx, tfl, size))
        rows["tflite IMAGE vs VIDEO"].append(disagreement(image, tfl, size))
        rows["previous frame (tflite)"].append(disagreement(tfl[:-1], tfl[1:], size))
    out = {}
    for k, per_clip in rows.items():
        w = np.array([r["frames"] for r in per_clip], float)
        out[k] = {m: float(np.average([r[m] for r in per_clip], weights=w))
                  for m in ("landmark_px", "landmark_px_p95", "blendshape_mae", "rotation_deg")}
        out[k]["rotation_deg_max"] = max(r["rotation_deg_max"] for r in per_clip)
        out[k]["frames"] = int(w.sum())
        out[k]["found"] = [sum(r["found_a"] for r in per_clip), sum(r["found_b"] for r in per_clip)]
    return out


def one_session(names: tuple[str, ...], frames: list[np.ndarray], cfg: TrackerConfig) -> dict:
    ms = [r.timings_ms["track"] for r in run(names, frames * 3, cfg)][10:]
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


def n_sessions(names: tuple[str, ...], clips: list[list[np.ndarray]], n: int,
               cfg: TrackerConfig) -> dict:  # fmt: skip
    trackers = [FaceTracker(names, cfg) for _ in range(n)]
    counts = [0] * n
    start = threading.Barrier(n + 1)

    def work(k: int) -> None:
        frames = clips[k % len(clips)] * 2
        start.wait()
        for i, f in enumerate(frames):
            trackers[k].process(f, i / 25)
            counts[k] += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    for t in trackers:
        t.close()
    frames = sum(counts)
    return {"sessions": n, "frames": frames, "fps_total": frames / wall,
            "fps_per_session": frames / wall / n, "ms_per_frame": 1000 * wall / frames}


def network_ms(engine: MediaPipeOnnx, batches: list[int]) -> dict[str, dict[int, float]]:
    """Median ms per call of each network at each batch size (random inputs)."""
    rng = np.random.default_rng(0)
    inputs = {"detector": lambda b: rng.uniform(-1, 1, (b, 128, 128, 3)),
              "landmarks": lambda b: rng.uniform(0, 1, (b, LMK_SIZE, LMK_SIZE, 3)),
              "blendshapes": lambda b: rng.uniform(0, 400, (b, 146, 2))}  # fmt: skip
    out: dict[str, dict[int, float]] = {}
    for key, make in inputs.items():
        out[key] = {}
        for b in batches:
            x = make(b).astype(np.float32)
            for _ in range(3):
                engine._run(key, x)
            times = []
            for _ in range(max(5, 40 // b)):
                t0 = time.perf_counter()
                engine._run(key, x)
                times.append(1000 * (time.perf_counter() - t0))
            out[key][b] = float(np.median(times))
    return out


def print_tables(result: dict, sessions: int) -> None:
    if "agreement" in result:
        n = len(result["clips"])
        print(f"\nAgreement on {n} GRID clips (360x288), per frame where both found the face")
        print(f"{'pair':<26} {'frames':>6} {'lmk px':>7} {'p95':>6} {'bs MAE':>7} "
              f"{'rot °':>6} {'max °':>6}")
        for k, r in result["agreement"].items():
            print(f"{k:<26} {r['frames']:>6} {r['landmark_px']:>7.3f} {r['landmark_px_p95']:>6.3f} "
                  f"{r['blendshape_mae']:>7.4f} {r['rotation_deg']:>6.2f} "
                  f"{r['rotation_deg_max']:>6.2f}")
    print(f"\nNetworks alone, ms per call on {', '.join(result['providers'])}")
    for k, nets in result["networks_ms"].items():
        for net, per_batch in nets.items():
            cells = "  ".join(f"b{b} {ms:7.2f}" for b, ms in per_batch.items())
            print(f"  {k:<22} {net:<12} {cells}")
    print("\nOne session, tracker per frame (ms)")
    for k, r in result["one_session"].items():
        print(f"  {k:<22} median {r['median_ms']:6.2f}   p95 {r['p95_ms']:6.2f}")
    print(f"\n{sessions} sessions at once (threads, frames as fast as they go)")
    for k, r in result["n_sessions"].items():
        extra = f"   mean batch {r['mean_batch']:.2f}" if "mean_batch" in r else ""
        extra += "   (runs: " + ", ".join(f"{x:.0f}" for x in r["fps_total_all"]) + ")"
        print(f"  {k:<26} {r['fps_total']:6.1f} frames/s total  {r['fps_per_session']:5.1f} "
              f"per session  {r['ms_per_frame']:6.2f} ms/frame{extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", default="", help="clip indices, e.g. 0-3 (default: all)")
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--backend", default="auto", help="auto, onnxruntime-cpu, "
                    "onnxruntime-cuda or tensorrt (engines/inference/backend.py)")
    ap.add_argument("--batches", default="1,8", help="batch sizes for the networks alone")
    ap.add_argument("--workers", type=int, default=2, help="batcher workers on a CPU")
    ap.add_argument("--repeats", type=int, default=3, help="turns of the N-session runs")
    ap.add_argument("--skip-agreement", action="store_true")
    ap.add_argument("--out", default="out/bench_landmarker.json")
    args = ap.parse_args()
    names = ICTFaceModel().expression_names
    paths = sorted((asset_root() / "video" / "grid_corpus").glob("*.mpg"))
    paths = [paths[i] for i in parse_indices(args.clips, len(paths))]
    clips = [clip_frames(p) for p in paths]
    try:
        providers = onnx_providers(args.backend)
    except BackendUnavailableError as exc:
        sys.exit(f"{exc} (vn3d doctor says what this machine has)")
    cpu = providers == ["CPUExecutionProvider"]
    result: dict = {"clips": [p.name for p in paths], "providers": [
        p if isinstance(p, str) else p[0] for p in providers]}  # fmt: skip
    batches = [int(b) for b in args.batches.split(",")]
    geometry = GeometryMetadata.from_task(asset_path("face_landmarker"))
    engines = {"onnx": MediaPipeOnnx(providers=providers, threads=1 if cpu else 0)}
    if not args.skip_agreement:
        nets = OnnxNetworks(engines["onnx"], engines["onnx"].landmark_rows,
                            engines["onnx"].blendshape_rows, geometry)  # fmt: skip
        result["agreement"] = agreement(names, clips, nets)
    if cpu:
        engines["onnx, no CPU rewrite"] = MediaPipeOnnx(providers=providers, threads=1,
                                                        cpu_rewrite=False)  # fmt: skip
    result["networks_ms"] = {k: network_ms(e, batches) for k, e in engines.items()}
    base = dict(smoothing=None, reader="mediapipe")
    result["one_session"] = {"tflite": one_session(names, clips[0], TrackerConfig(**base))}
    for k, e in engines.items():
        nets = OnnxNetworks(e, e.landmark_rows, e.blendshape_rows, geometry)
        result["one_session"][k] = one_session(
            names, clips[0], TrackerConfig(**base, landmarker="onnx", onnx_networks=nets))
    shared = OnnxNetworks.local(threads=1, providers=providers) if cpu else None
    workers = args.workers if cpu else 1
    batched = OnnxNetworks.batched(threads=1 if cpu else 0, providers=providers,
                                   workers=workers, max_batch=64)  # fmt: skip
    runs = {"tflite": TrackerConfig(**base)}
    if shared is not None:
        runs["onnx shared"] = TrackerConfig(**base, landmarker="onnx", onnx_networks=shared)
    runs[f"onnx batched ({workers} worker{'s' * (workers > 1)})"] = TrackerConfig(
        **base, landmarker="onnx", onnx_networks=batched)
    # the runs take turns, ``--repeats`` times, so a slow minute of the machine hits all;
    # the row is the run with the median frames per second
    tries: dict[str, list[dict]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, cfg in runs.items():
            tries[k].append(n_sessions(names, clips, args.sessions, cfg))
    result["n_sessions"] = {}
    for k, rows in tries.items():
        rows = sorted(rows, key=lambda r: r["fps_total"])
        result["n_sessions"][k] = {**rows[len(rows) // 2],
                                   "fps_total_all": [r["fps_total"] for r in rows]}  # fmt: skip
    last = list(runs)[-1]
    result["n_sessions"][last]["mean_batch"] = batched.landmark_fn.stats.mean_batch_size
    batched.close()

    print_tables(result, args.sessions)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
