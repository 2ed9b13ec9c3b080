"""TensorRT engines on a GPU machine: for every ONNX file given, build (or reuse) the FP16
and FP32 engines, check parity against ONNX Runtime (float32, CPU) and time them at batch
1/8/32/64. Table + JSON.

    python scripts/gpu_engines_check.py out/erm/erm.onnx [more.onnx ...] \\
        [--out out/gpu_engines_check.json] [--cache DIR] [--force]

Needs TensorRT and a CUDA device (``pip install tensorrt-cu12 --extra-index-url
https://pypi.nvidia.com``); exits 2 with the install lines when they are missing, 1 when a
parity check fails. Latency: ``gpu_ms`` is the engine alone on device tensors (CUDA events,
median), ``e2e_ms`` the numpy call with host<->device copies and the sync (wall clock,
median), ``ort_cpu_ms`` ONNX Runtime on the CPU for comparison.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from engines.inference.backend import OnnxRunner
from trt_build.availability import TensorRTUnavailable, require_tensorrt
from trt_build.build import TrtRunner, build_engine, parity_tolerance, profile_shapes
from trt_build.engine_cache import EngineCache, engine_key

PRECISIONS = ("fp16", "fp32")


def median_ms(fn, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def gpu_median_ms(runner: TrtRunner, x_cuda, iters: int, warmup: int) -> float:
    import torch

    for _ in range(warmup):
        runner.run_torch(x_cuda)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        runner.run_torch(x_cuda)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def check_one(onnx_path: Path, precision: str, cache: EngineCache, args) -> dict:
    import torch

    shapes = profile_shapes(onnx_path, max_batch=args.max_batch)
    if len(shapes) != 1:
        return {"onnx": str(onnx_path), "precision": precision, "skipped": "not one input"}
    (feature_shape,) = {s[2][1:] for s in shapes.values()}
    key = engine_key(onnx_path, precision, args.max_batch)
    hit = not args.force and cache.lookup(key) is not None
    t0 = time.perf_counter()
    engine = build_engine(onnx_path, precision, cache, max_batch=args.max_batch, force=args.force)
    build_s = time.perf_counter() - t0
    runner, ref_runner = TrtRunner(engine), OnnxRunner(onnx_path)
    rng = np.random.default_rng(0)
    rows = {}
    for batch in args.batches:
        if batch > args.max_batch:
            continue
        x = rng.random((batch, *feature_shape), dtype=np.float32)
        ref = ref_runner(x)
        out = runner(x)
        err = float(np.abs(out - ref).max())
        tol = parity_tolerance(precision, ref)
        x_cuda = torch.from_numpy(x).cuda()
        rows[batch] = {
            "max_abs_err": err,
            "tolerance": tol,
            "ok": bool(err <= tol and np.isfinite(out).all()),
            "gpu_ms": gpu_median_ms(runner, x_cuda, args.iters, args.warmup),
            "e2e_ms": median_ms(lambda x=x: runner(x), args.iters, args.warmup),
            "ort_cpu_ms": median_ms(lambda x=x: ref_runner(x), args.iters, args.warmup),
        }
    return {
        "onnx": str(onnx_path),
        "precision": precision,
        "engine": str(engine),
        "engine_bytes": engine.stat().st_size,
        "cache_hit": hit,
        "build_s": build_s,
        "batches": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", nargs="+", type=Path)
    ap.add_argument("--out", default="out/gpu_engines_check.json")
    ap.add_argument("--cache", default=None, help="engine cache root (default: $VN3D_CACHE)")
    ap.add_argument("--force", action="store_true", help="rebuild even on a cache hit")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]

    try:
        trt = require_tensorrt()
    except TensorRTUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    import onnxruntime
    import torch

    cache = EngineCache(args.cache)
    env = {
        "tensorrt": str(trt.__version__),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "cache": str(cache.root),
    }
    results = [
        check_one(path, precision, cache, args) for path in args.onnx for precision in PRECISIONS
    ]

    print(f"TensorRT {env['tensorrt']} on {env['gpu']} (torch {env['torch']}, CUDA {env['cuda']})")
    head = f"{'onnx':24} {'prec':4} {'build':>9} {'B':>3} {'max|err|':>9} {'tol':>8} "
    print(head + f"{'ok':>3} {'gpu ms':>7} {'e2e ms':>7} {'ort ms':>7}")
    for r in results:
        if "skipped" in r:
            print(f"{Path(r['onnx']).name:24} {r['precision']:4} skipped: {r['skipped']}")
            continue
        build = "cached" if r["cache_hit"] else f"{r['build_s']:.1f}s"
        for batch, row in r["batches"].items():
            print(
                f"{Path(r['onnx']).name:24} {r['precision']:4} {build:>9} {batch:>3} "
                f"{row['max_abs_err']:9.2e} {row['tolerance']:8.1e} "
                f"{'yes' if row['ok'] else 'NO':>3} {row['gpu_ms']:7.3f} {row['e2e_ms']:7.3f} "
                f"{row['ort_cpu_ms']:7.3f}"
            )
    ok = all(row["ok"] for r in results for row in r.get("batches", {}).values())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"env": env, "ok": ok, "results": results}, indent=2))
    print(f"wrote {out}; parity {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
