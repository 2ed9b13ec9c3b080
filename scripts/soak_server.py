"""Soak: N synthetic WebRTC clients (aiortc, loopback) keep `vn3d serve` busy for M minutes,
each making calls of `--call-seconds` back to back (connect, call, hang up, again), so
sessions churn the whole time. Every `--sample-seconds` the server's RSS, threads and open
file descriptors are read from /proc; its log is scanned for errors. After the clients
stop, the server should be back to its baseline threads and descriptors (no leaked peer
connections, sessions or files), and its RSS should not grow after the warm-up.

Runs inside a private network namespace (only loopback exists); as root it re-executes
itself under `unshare --net` when needed. Prints a table and writes JSON.

    python scripts/soak_server.py [--sessions 8] [--minutes 10] [--call-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiortc.rtcrtpreceiver
import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import (
    MarkerJitterBuffer,
    client,
    enter_private_netns,
    free_port,
    start_server,
)

from engines.files.assets import asset_root
from server.ice import restrict_ice_to_loopback


def server_sample(pid: int) -> dict:
    """RSS (MB), threads and open descriptors of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return {
        "rss_mb": round(rss_kb / 1024, 1),
        "threads": len(list(Path(f"/proc/{pid}/task").iterdir())),
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
    }


def log_errors(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    return [ln for ln in lines if " ERROR " in ln or "Traceback" in ln or "internal error" in ln]


async def caller(url: str, frames: list[np.ndarray], end: float, call_s: float) -> dict:
    """Calls back to back until ``end``: how many, their frame rates, and any failures."""
    calls, fps, failures = 0, [], []
    while time.perf_counter() < end - 5:
        try:
            result = await client(url, frames, min(call_s, end - time.perf_counter()), 2.0)
            calls += 1
            fps.append(result["fps"])
        except Exception as exc:  # a refused or broken call is what the soak looks for
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            await asyncio.sleep(1.0)
    return {"calls": calls, "fps": fps, "failures": failures}


async def soak(url: str, pid: int, frames, args) -> tuple[list[dict], list[dict]]:
    t0 = time.perf_counter()
    end = t0 + 60 * args.minutes
    samples: list[dict] = []

    async def monitor() -> None:
        while time.perf_counter() < end:
            samples.append({"t_s": round(time.perf_counter() - t0), **server_sample(pid)})
            print(f"  {samples[-1]}", flush=True)
            await asyncio.sleep(args.sample_seconds)

    watch = asyncio.ensure_future(monitor())
    callers = await asyncio.gather(*[caller(url, frames, end, args.call_seconds)
                                     for _ in range(args.sessions)])
    watch.cancel()
    return samples, callers


def summarise(samples: list[dict], baseline: dict, after: dict, callers: list[dict],
              errors: list[str], args) -> dict:
    warm = [s for s in samples if s["t_s"] >= 60 * args.warmup_minutes] or samples
    rss_start, rss_end = warm[0]["rss_mb"], samples[-1]["rss_mb"]
    second_half = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2]
    fps = [f for c in callers for f in c["fps"]]
    return {
        "sessions": args.sessions, "minutes": args.minutes, "call_seconds": args.call_seconds,
        "calls": sum(c["calls"] for c in callers),
        "failed_calls": sum(len(c["failures"]) for c in callers),
        "failures": [f for c in callers for f in c["failures"]][:20],
        "fps_per_call_mean": round(float(np.mean(fps)), 2) if fps else 0.0,
        "server_log_errors": errors[:20],
        "rss_after_warmup_mb": rss_start, "rss_end_mb": rss_end,
        "rss_growth_percent": round(100 * (rss_end - rss_start) / rss_start, 1),
        "rss_growth_second_half_percent": round(
            100 * (rss_end - second_half[0]["rss_mb"]) / second_half[0]["rss_mb"], 1),
        "threads_during": [min(s["threads"] for s in warm), max(s["threads"] for s in warm)],
        "baseline": baseline, "after_clients_left": after,
        "leaked_threads": after["threads"] - baseline["threads"],
        "leaked_fds": after["fds"] - baseline["fds"],
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--call-seconds", type=float, default=60.0)
    ap.add_argument("--warmup-minutes", type=float, default=1.0)
    ap.add_argument("--sample-seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="out/soak_server.json")
    args = ap.parse_args()
    enter_private_netns()
    restrict_ice_to_loopback()
    aiortc.rtcrtpreceiver.JitterBuffer = MarkerJitterBuffer
    with av.open(str(asset_root() / "video" / "grid_corpus" / "bbaf2n.mpg")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_path = out.with_suffix(".server.log")
    port = free_port()
    with open(log_path, "w") as log:
        server = start_server(port, ["--max-sessions", str(args.sessions),
                                     "--size", str(args.size)], log)
    try:
        time.sleep(2)
        baseline = server_sample(server.pid)
        samples, callers = asyncio.run(soak(f"ws://127.0.0.1:{port}/ws", server.pid, frames,
                                            args))
        time.sleep(5)  # sessions close as their sockets do
        after = server_sample(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    result = summarise(samples, baseline, after, callers, log_errors(log_path), args)
    print(f"\n{args.sessions} sessions x {args.minutes:g} min, calls of {args.call_seconds:g} s, "
          f"{args.size}x{args.size} renders")
    print("| calls (failed) | FPS per call | server log errors | RSS after warm-up -> end MB "
          "(growth; in the second half) | threads during | threads / FDs at start -> after "
          "the clients left |\n|---|---|---|---|---|---|")
    lo, hi = result["threads_during"]
    print(f"| {result['calls']} ({result['failed_calls']}) | {result['fps_per_call_mean']} | "
          f"{len(errors := result['server_log_errors'])} | {result['rss_after_warmup_mb']} -> "
          f"{result['rss_end_mb']} ({result['rss_growth_percent']:+} %; "
          f"{result['rss_growth_second_half_percent']:+} %) | {lo}-{hi} | "
          f"{baseline['threads']} / {baseline['fds']} -> {after['threads']} / {after['fds']} |")
    for line in errors + result["failures"]:
        print(f"  {line}")
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out} (server log: {log_path})")


if __name__ == "__main__":
    main()
