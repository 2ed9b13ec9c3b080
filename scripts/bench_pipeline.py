"""Pipeline speed on a GRID clip: per-stage median / p95 ms and end-to-end FPS at 512x512,
stages run one after another ("sequential") and with tracking overlapped with modelling and
rendering on two threads ("overlapped"). Prints a table and writes JSON.

    python scripts/bench_pipeline.py [--clip PATH] [--size 512] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.render.renderer import RenderConfig
from engines.retarget.overlapped import OverlappedRetargeter
from engines.retarget.retargeter import Retargeter, stage_summary

STAGES = ("decode", "track", "filter", "wait", "model", "render", "encode")


def decode_all(path: Path) -> tuple[list[av.VideoFrame], list[float], float]:
    """Decode once up front (timed per frame) so both modes see the same frames."""
    frames, times = [], []
    with av.open(str(path)) as c:
        it = c.decode(video=0)
        while True:
            t0 = time.perf_counter()
            try:
                frame = next(it)
            except StopIteration:
                break
            frame.to_ndarray(format="rgb24")  # include the conversion in "decode"
            times.append(1000 * (time.perf_counter() - t0))
            frames.append(frame)
        rate = float(c.streams.video[0].average_rate or 25)
    return frames, times, rate


def encode_ms(codec: av.CodecContext, image: np.ndarray) -> float:
    t0 = time.perf_counter()
    codec.encode(av.VideoFrame.from_ndarray(image, format="rgb24"))
    return 1000 * (time.perf_counter() - t0)


def new_encoder(size: int) -> av.CodecContext:
    codec = av.CodecContext.create("libx264", "w")
    codec.width = codec.height = size
    codec.pix_fmt = "yuv420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"preset": "veryfast", "crf": "20"}
    return codec


def run(mode: str, model, frames, decode_ms, rate: float, size: int) -> dict:
    cfg = RenderConfig(width=size, height=size)
    encoder = new_encoder(size)
    with Retargeter(model, render_config=cfg) as rt:
        t0 = time.perf_counter()
        if mode == "sequential":
            for i, f in enumerate(frames):
                r = rt.process(f, i / rate)
                r.timings_ms["decode"] = decode_ms[i]
                r.timings_ms["encode"] = encode_ms(encoder, r.image)
        else:
            with OverlappedRetargeter(rt) as ov:
                outs = [ov.submit(f, i / rate) for i, f in enumerate(frames)] + [ov.flush()]
                for i, r in enumerate(o for o in outs if o is not None):
                    r.timings_ms["decode"] = decode_ms[i]
                    r.timings_ms["encode"] = encode_ms(encoder, r.image)
        wall = time.perf_counter() - t0
        history = list(rt.history)
    # decode happened up front: add its total to the wall time for an end-to-end figure
    wall += sum(decode_ms) / 1000
    summary = {s: {k: round(v, 2) for k, v in d.items()} for s, d in stage_summary(history).items()}
    waits = [h["wait"] for h in history if "wait" in h]
    if waits:
        summary["wait"] = {
            "median_ms": round(float(np.median(waits)), 2),
            "p95_ms": round(float(np.percentile(waits, 95)), 2),
        }
    return {
        "mode": mode,
        "frames": len(frames),
        "fps": round(len(frames) / wall, 1),
        "stages": summary,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default=str(asset_root() / "video/grid_corpus/bbaf2n.mpg"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=2, help="clip repetitions per mode")
    ap.add_argument("--out", default="out/bench_pipeline.json")
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads (1 leaves the cores to MediaPipe and llvmpipe)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)

    model = ICTFaceModel()
    frames, decode_ms, rate = decode_all(Path(args.clip))
    frames, decode_ms = frames * args.repeat, decode_ms * args.repeat
    results = [
        run(m, model, frames, decode_ms, rate, args.size) for m in ("sequential", "overlapped")
    ]

    print(f"\n{Path(args.clip).name}, {len(frames)} frames, {args.size}x{args.size} output")
    print("| mode | FPS | " + " | ".join(f"{s} med/p95 ms" for s in STAGES) + " |")
    print("|---|---|" + "---|" * len(STAGES))
    for r in results:
        cells = []
        for s in STAGES:
            d = r["stages"].get(s)
            cells.append(f"{d['median_ms']:.1f} / {d['p95_ms']:.1f}" if d else "-")
        print(f"| {r['mode']} | {r['fps']} | " + " | ".join(cells) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "clip": Path(args.clip).name,
        "size": args.size,
        "machine": platform.machine(),
        "torch_threads": args.torch_threads,
    }
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
