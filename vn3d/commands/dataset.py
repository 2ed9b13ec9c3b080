"""``vn3d dataset`` and ``vn3d eval``: VN3DFace-style datasets and their measurements."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from engines.face.by_name import FACE_MODELS
from vn3d.commands.common import add_landmarker_flag, load_model


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from engines.dataset.build import build_dataset, build_sample_dataset, sample_dataset_dir
    from engines.emotion.models import default_emotion_models

    model = load_model(getattr(args, "model", "ict"))  # the sample gallery is ICT's
    erm = default_emotion_models(model.expression_names).erm
    if args.dataset_command == "sample":
        out = Path(args.out) if args.out else sample_dataset_dir()
        manifest = build_sample_dataset(model, erm, out, args.workers, args.limit,
                                        args.landmarker)
    else:
        if not args.photos and not args.csv:
            raise ValueError("give a photo folder, or --csv FILE")
        out = Path(args.out)
        manifest = build_dataset(Path(args.photos) if args.photos else None, out, model, erm,
                                 pattern=args.pattern, csv=args.csv, workers=args.workers,
                                 landmarker=args.landmarker)
    subjects = manifest["subjects"]
    done = [s for s, e in subjects.items() if e.get("status") == "done"]
    failed = {s: e.get("error", "") for s, e in subjects.items() if e.get("status") != "done"}
    print(f"{out}: {len(done)} subjects built, {len(failed)} failed, "
          f"{len(manifest.get('skipped_inputs', []))} inputs skipped")
    for subject, why in failed.items():
        print(f"  failed {subject}: {why}")
    for why in manifest.get("skipped_inputs", []):
        print(f"  skipped {why}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from engines.dataset.loader import Dataset
    from engines.evaluation.dataset_eval import evaluate_dataset
    from engines.evaluation.tables import fmt

    model = load_model(Dataset(Path(args.dataset)).model)  # the model it was built on
    result = evaluate_dataset(Path(args.dataset), model,
                              synthetic=not args.no_synthetic,
                              scans=Path(args.scans) if args.scans else None,
                              scan_units=args.scan_units, seed=args.seed)
    s = result["summary"]
    print(f"{result['pairs']} pairs: PSNR {fmt(s['psnr'], 2)}  SSIM {fmt(s['ssim'])}  "
          f"LPIPS {fmt(s['lpips'])}  identity {fmt(s['identity'])}")
    mesh = result.get("mesh") or {}
    for source in ("synthetic", "scans"):
        part = mesh.get(source)
        if part is None:
            continue
        m = part["summary"] or {}
        print(f"mesh ({source}, {part['meshes']} meshes): median {fmt(m.get('median_mm'), 2)} "
              f"mm  mean {fmt(m.get('mean_mm'), 2)} mm  std {fmt(m.get('std_mm'), 2)} mm")
        for skipped in part["skipped"]:
            print(f"  skipped {skipped['item']}: {skipped['reason']}")
    print(f"wrote {Path(args.dataset) / 'eval.md'}")
    return 0



def register(sub: argparse._SubParsersAction) -> None:
    dataset = sub.add_parser("dataset", help="VN3DFace-style 3D expression datasets")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", required=True)
    workers = max(1, min(os.cpu_count() or 1, 4))
    p = dataset_sub.add_parser("build", help="build (or resume) a dataset from a photo folder")
    p.add_argument("photos", nargs="?",
                   help="a folder of SUBJECT/EXPRESSION.jpg (neutral, happy, ...)")
    p.add_argument("--pattern", help="regex with (?P<subject>...) and (?P<expression>...) "
                   "matched against each photo's path under PHOTOS (flat/V-Face-style folders)")
    p.add_argument("--csv", type=Path, help="CSV with columns subject,expression,path")
    p.add_argument("--out", default="out/dataset")
    p.add_argument("--workers", type=int, default=workers,
                   help=f"subjects built in parallel (default {workers})")
    p.add_argument("--model", choices=FACE_MODELS, default="ict",
                   help="ict (the open default) or flame (the paper's pipeline: MICA's shape "
                   "per subject, DECA's expression and pose per photo; needs the registered "
                   "files and DECA's UV template: vn3d doctor)")
    add_landmarker_flag(p)
    p.set_defaults(func=cmd_dataset_build)
    p = dataset_sub.add_parser("sample", help="build (or resume) the sample gallery from the "
                               "London Set; `vn3d serve` shows it")
    p.add_argument("--out", default=None, help="default: $VN3D_CACHE/datasets/london-sample")
    p.add_argument("--workers", type=int, default=workers)
    p.add_argument("--limit", type=int, default=None, help="only the first N people")
    add_landmarker_flag(p)
    p.set_defaults(func=cmd_dataset_build)

    p = sub.add_parser("eval", help="image and mesh measurements of a built dataset "
                       "(writes eval.md, eval.json and plots into it)")
    p.add_argument("dataset", help="a folder made by `vn3d dataset build`")
    p.add_argument("--no-synthetic", action="store_true",
                   help="skip the mesh accuracy on synthetic ground truth (each subject "
                   "rendered from its known parameters and reconstructed)")
    p.add_argument("--scans", default=None, metavar="DIR",
                   help="real scans to measure against: DIR/SUBJECT/EXPRESSION.obj with "
                   "DIR/SUBJECT/EXPRESSION.lmk.txt (7 landmarks; see "
                   "engines/evaluation/mesh_eval.py)")
    p.add_argument("--scan-units", choices=("mm", "cm", "m"), default="mm",
                   help="units of the scans and their landmarks (default mm)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the synthetic renders' head angles")
    p.set_defaults(func=cmd_eval)
