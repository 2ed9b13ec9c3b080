"""What aligning a hairstyle to a head costs (``align_to_head``: each avatar build, each
try-on in the page, each ``vn3d avatar restyle``), and that the aligned hair stays out of
the head.

Every style is aligned to five heads (the mean head and four random identities, β ~ N(0, 1)
clipped at ±2.5, the same as the test); per style the median wall time of the five, and
over all: the median and the 90th percentile, the roots inside the skin (must be 0) and the
share of strand points inside (an exact nearest-vertex query of the result). Baseline: the
thesis's anchor alignment alone (no mends), its time and what it leaves inside.

    python scripts/bench_hair_align.py [--styles long_wavy,afro_large]
        [--out out/bench_hair_align.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from avatars.hair.align import align_to_head, anchor_aligned
from avatars.hair.scalp import HeadSurface, skin_faces
from avatars.hair.strands import POINTS
from avatars.hair.styles import list_styles, load_style
from engines.face.ict import ICTFaceModel

HEADS = 5


def heads(model: ICTFaceModel) -> np.ndarray:
    """(HEADS, V, 3): the mean head and random identities."""
    gen = torch.Generator().manual_seed(11)
    shapes = torch.randn(HEADS - 1, model.n_shape, generator=gen).clamp(-2.5, 2.5)
    with torch.no_grad():
        return model.prepare_identity(torch.cat([torch.zeros(1, model.n_shape), shapes])).numpy()


def inside(surface: HeadSurface, strands: np.ndarray) -> tuple[int, float]:
    """Roots inside the skin and the share of all points inside, for strands (S, P, 3)."""
    sd, _ = surface.query(strands.reshape(-1, 3).astype(np.float64), exact=True)
    sd = sd.reshape(strands.shape[0], -1)
    return int((sd[:, 0] < 0).sum()), float((sd < 0).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--styles", default="", help="comma-separated (default: all)")
    ap.add_argument("--out", default="out/bench_hair_align.json")
    args = ap.parse_args()
    names = args.styles.split(",") if args.styles else list_styles()
    model = ICTFaceModel()
    faces = skin_faces(model.topology)
    surfaces = [(h, HeadSurface(h, faces)) for h in heads(model)]
    rows = []
    for name in names:
        style = load_style(name)
        times, base_times, roots, share, base_share = [], [], 0, 0.0, 0.0
        for head, surface in surfaces:
            t = time.perf_counter()
            aligned = align_to_head(style, head, model.topology)
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            base = anchor_aligned(style, surface.vertices)
            base_times.append(time.perf_counter() - t)
            r, s = inside(surface, aligned.positions.reshape(-1, POINTS, 3))
            roots, share = roots + r, max(share, s)
            base_share = max(base_share, inside(surface, base)[1])
        rows.append({"style": name, "ms": 1000 * statistics.median(times),
                     "anchor_ms": 1000 * statistics.median(base_times), "roots_inside": roots,
                     "worst_inside": share, "anchor_worst_inside": base_share})
        print(f"{name:22s} {rows[-1]['ms']:7.1f} ms  inside {share:.4f} "
              f"(anchors alone {base_share:.4f})", flush=True)
    ms = [r["ms"] for r in rows]
    summary = {
        "styles": len(rows), "heads": HEADS,
        "median_ms": statistics.median(ms), "p90_ms": float(np.percentile(ms, 90)),
        "anchor_median_ms": statistics.median(r["anchor_ms"] for r in rows),
        "roots_inside": sum(r["roots_inside"] for r in rows),
        "worst_inside": max(r["worst_inside"] for r in rows),
        "anchor_worst_inside": max(r["anchor_worst_inside"] for r in rows),
    }
    print("\n| align | median ms | p90 ms | roots inside | worst share of points inside |")
    print("|---|---|---|---|---|")
    print(f"| align_to_head | {summary['median_ms']:.1f} | {summary['p90_ms']:.1f} | "
          f"{summary['roots_inside']} | {summary['worst_inside']:.4f} |")
    print(f"| anchors alone (baseline) | {summary['anchor_median_ms']:.1f} | | | "
          f"{summary['anchor_worst_inside']:.4f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
