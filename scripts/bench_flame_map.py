"""How well your FLAME file takes ICT's expressions (``--model flame``): for each of the 53
ARKit shapes, how far ICT moves the shared face (the error of leaving FLAME's face still,
the trivial baseline), how far the fitted ARKit -> FLAME map misses it, and the ratio
(0 = exact, 1 = no better than no motion); the jaw turn of the jaw shapes. Needs the FLAME
file and DECA's landmark embedding (``vn3d doctor`` says where they are looked for).
Table + JSON.

    python scripts/bench_flame_map.py [--flame generic_model.pkl] [--landmarks ...]
        [--out out/bench_flame_map.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from engines.face.arkit_to_flame import fit_arkit_map
from engines.face.flame import FlameModel
from engines.face.flame_landmarks import load_landmark_embedding
from engines.face.ict import ICTFaceModel
from engines.files.registered import FLAME_LANDMARKS, FLAME_MODEL


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flame", default=None, help="generic_model.pkl (default: as doctor says)")
    ap.add_argument("--landmarks", default=None, help="DECA's landmark_embedding.npy")
    ap.add_argument("--out", default="out/bench_flame_map.json")
    args = ap.parse_args(argv)
    flame_file, landmarks_file = FLAME_MODEL.find(args.flame), FLAME_LANDMARKS.find(args.landmarks)
    flame = FlameModel(flame_file, n_expression=None)
    t0 = time.perf_counter()
    arkit = fit_arkit_map(ICTFaceModel(), flame, load_landmark_embedding(landmarks_file))
    seconds = time.perf_counter() - t0
    rows = [
        {"shape": name, "motion_mm": float(m), "error_mm": float(e), "ratio": float(r),
         "jaw_rad": [float(x) for x in j]}
        for name, m, e, r, j in zip(arkit.names, arkit.motion_mm, arkit.error_mm,
                                    arkit.residual, arkit.jaw, strict=True)
    ]
    moving = [r for r in rows if r["motion_mm"] > 0.5]  # eyeLook shapes barely move skin
    summary = {
        "flame_file": str(flame_file), "shared_face_vertices": arkit.n_points,
        "flame_expression_components": flame.n_expression, "fit_seconds": seconds,
        "mean_ratio_moving_shapes": float(np.mean([r["ratio"] for r in moving])),
        "mean_error_mm_moving_shapes": float(np.mean([r["error_mm"] for r in moving])),
        "mean_motion_mm_moving_shapes": float(np.mean([r["motion_mm"] for r in moving])),
    }
    print(f"{flame_file}: {arkit.n_points} FLAME vertices on ICT's face, "
          f"{flame.n_expression} expression components, fitted in {seconds:.1f} s\n")
    print("| ARKit shape | ICT motion, mm (= error of no motion) | FLAME fit error, mm | ratio "
          "| jaw turn, rad |")
    print("|---|---|---|---|---|")
    for r in rows:
        jaw = max(r["jaw_rad"], key=abs)
        print(f"| {r['shape']} | {r['motion_mm']:.2f} | {r['error_mm']:.2f} | "
              f"{r['ratio']:.3f} | {jaw:+.2f} |" if jaw else
              f"| {r['shape']} | {r['motion_mm']:.2f} | {r['error_mm']:.2f} | "
              f"{r['ratio']:.3f} | |")
    print(f"\nshapes moving the skin > 0.5 mm ({len(moving)}): mean error "
          f"{summary['mean_error_mm_moving_shapes']:.2f} mm against "
          f"{summary['mean_motion_mm_moving_shapes']:.2f} mm for no motion "
          f"(ratio {summary['mean_ratio_moving_shapes']:.3f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "shapes": rows}, indent=1))
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    main()
