"""Latency and throughput of the project's networks per backend and batch size, and of
the cross-session batcher.

Backends: PyTorch (CPU), ONNX Runtime (CPU), and on a machine with CUDA + TensorRT the
TensorRT FP32 and FP16 engines (``trt_build``). Per (network, backend, batch): median and
p95 latency of one call and rows per second; then the landmark encoder behind one
``InferenceBatcher`` fed by N concurrent "sessions" (threads sending one row each, as
live sessions do), against each session calling the runner alone.

    python scripts/bench_encoders.py [--batches 1,8,32,64] [--sessions 1,8,32]
                                     [--out out/bench_encoders.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from engines.face.ict import ICTFaceModel
from engines.inference.backend import OnnxRunner, backend_status
from engines.inference.batcher import InferenceBatcher
from engines.inference.networks import project_networks
from engines.inference.onnx_export import export_onnx


def time_calls(fn, x: np.ndarray, seconds: float, warmup: int = 5) -> list[float]:
    for _ in range(warmup):
        fn(x)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return times


def runners(module: torch.nn.Module, onnx: Path) -> dict:
    def torch_fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    out = {"pytorch-cpu": torch_fn, "onnxruntime-cpu": OnnxRunner(onnx)}
    status = backend_status()
    if status["tensorrt"][0]:
        from trt_build.build import TrtRunner, build_engine
        from trt_build.engine_cache import EngineCache

        for precision in ("fp32", "fp16"):
            out[f"tensorrt-{precision}"] = TrtRunner(build_engine(onnx, precision, EngineCache()))
    return out


def sessions_bench(fn, n_inputs: int, sessions: int, seconds: float) -> dict:
    """``sessions`` threads, each sending one row after the other, through one batcher."""
    rng = np.random.default_rng(0)
    rows = rng.uniform(-1, 1, (sessions, n_inputs)).astype(np.float32)
    latencies: list[float] = []
    lock = threading.Lock()
    with InferenceBatcher(fn, (n_inputs,), max_batch=64, max_wait_ms=2.0) as batcher:
        stop = time.perf_counter() + seconds

        def session(k: int) -> None:
            mine = []
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                batcher(rows[k])
                mine.append(time.perf_counter() - t0)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=session, args=(k,)) for k in range(sessions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = batcher.stats
    lat = np.array(latencies) * 1000
    return {"sessions": sessions, "requests_per_s": round(len(lat) / seconds, 1),
            "latency_median_ms": round(float(np.median(lat)), 3),
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 3),
            "mean_batch": round(stats.mean_batch_size, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--sessions", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    ap.add_argument("--out", default="out/bench_encoders.json")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    names = ICTFaceModel().expression_names
    rows, session_rows = [], []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (module, n_in, inp, outp) in project_networks(names).items():
            onnx = export_onnx(module, n_in, Path(tmp) / f"{name}.onnx", inp, outp)
            for backend, fn in runners(module.eval(), onnx).items():
                for b in batches:
                    x = rng.uniform(0, 1, (b, n_in)).astype(np.float32)
                    t = np.array(time_calls(fn, x, args.seconds)) * 1000
                    med = float(np.median(t))
                    rows.append({"network": name, "backend": backend, "batch": b,
                                 "median_ms": round(med, 4),
                                 "p95_ms": round(float(np.percentile(t, 95)), 4),
                                 "per_row_us": round(1000 * med / b, 2),
                                 "rows_per_s": round(1000 * b / med)})
                if name == "landmark_encoder":
                    for s in (int(k) for k in args.sessions.split(",")):
                        session_rows.append({"backend": backend,
                                             **sessions_bench(fn, n_in, s, args.seconds)})
    print(f"\n{platform.processor() or platform.machine()}, torch threads "
          f"{torch.get_num_threads()}; backends: {backend_status()}")
    print("\n| network | backend | batch | median ms | p95 ms | µs per row | rows/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['backend']} | {r['batch']} | {r['median_ms']} | "
              f"{r['p95_ms']} | {r['per_row_us']} | {r['rows_per_s']} |")
    print("\nLandmark encoder behind one batcher (sessions = threads sending one row each):")
    print("| backend | sessions | requests/s | latency median ms | p95 ms | mean batch |")
    print("|---|---|---|---|---|---|")
    for r in session_rows:
        print(f"| {r['backend']} | {r['sessions']} | {r['requests_per_s']} | "
              f"{r['latency_median_ms']} | {r['latency_p95_ms']} | {r['mean_batch']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"calls": rows, "sessions": session_rows,
                               "backends": backend_status()}, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
