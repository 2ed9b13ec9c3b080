"""``vn3d encoder``, ``vn3d engines`` and ``vn3d erm``: the networks the project owns
(landmark encoder, ERM, emotion detector), their ONNX files and TensorRT engines."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engines.emotion.erm import ERMConfig
from engines.emotion.facs import Records
from engines.encoder.config import EncoderConfig
from engines.face.model import FaceModel
from vn3d.commands.common import load_model, output_path

FLAME_HELP = ("also DECA's encoder (deca_encoder) and MICA (mica) from your deca_model.tar and "
              "mica.tar (vn3d doctor says where they are looked for)")


def load_records(spec: str, model: FaceModel) -> Records:
    """``default`` (FACS records), a records ``.npz``, a photo folder or a CSV of photos."""
    from engines.emotion.facs import facs_records

    if spec == "default":
        return facs_records(model.expression_names)
    path = Path(spec)
    if path.suffix == ".npz":
        return Records.load(path)
    from engines.emotion.photo_records import records_from_photos

    records, skipped = records_from_photos(path, model.expression_names)
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    return records


def cmd_erm_records(args: argparse.Namespace) -> int:
    model = load_model("ict")
    records = load_records(args.source, model)
    out = output_path(args.out)
    records.save(out)
    print(f"wrote {out}: {len(records)} records from {len(set(records.subject))} subjects")
    return 0


def cmd_erm_train(args: argparse.Namespace) -> int:
    from engines.emotion.erm import ERMConfig, save_erm, train_erm

    model = load_model("ict")
    records = load_records(args.data, model)
    cfg = ERMConfig(
        use_identity=args.identity,
        rho=args.rho,
        epsilon=args.epsilon,
        epochs=args.epochs,
        seed=args.seed,
    )
    result = train_erm(records, cfg)
    metrics = {k: v for k, v in result.metrics.items() if k != "history"}
    path = save_erm(result.model, args.out, result.metrics)
    print(f"wrote {path} (+ erm.onnx, metrics.json)")
    print(json.dumps({k: metrics[k] for k in ("train", "val", "val_loss_predict_mean")}, indent=2))
    return 0


def cmd_encoder_train(args: argparse.Namespace) -> int:
    from engines.encoder.config import EncoderConfig
    from engines.encoder.network import save_encoder
    from engines.encoder.training import train_encoder

    cfg = EncoderConfig(steps=args.steps, batch=args.batch, seed=args.seed)
    result = train_encoder(load_model("ict"), cfg)
    path = save_encoder(result.encoder, args.out, result.metrics)
    print(f"wrote {path} (+ landmark_encoder.onnx, metrics.json)")
    print(json.dumps(result.metrics["held_out"], indent=2))
    return 0


def cmd_engines_export(args: argparse.Namespace) -> int:
    from engines.inference.networks import export_all

    names = load_model("ict").expression_names
    for name, path in export_all(Path(args.out), names, flame=args.flame).items():
        print(f"{name}: {path}")
    return 0


def cmd_engines_build(args: argparse.Namespace) -> int:
    from engines.inference.networks import export_all
    from trt_build.availability import TensorRTUnavailable, require_tensorrt
    from trt_build.build import build_engine
    from trt_build.engine_cache import EngineCache

    try:
        require_tensorrt()
    except TensorRTUnavailable as exc:  # no GPU/TensorRT: say so and how to install
        print(f"vn3d engines build: {exc}", file=sys.stderr)
        return 2
    cache = EngineCache(args.cache)
    onnx = export_all(Path(args.out), load_model("ict").expression_names, flame=args.flame)
    for name, path in onnx.items():
        for precision in args.precision:
            engine = build_engine(path, precision, cache, max_batch=args.max_batch,
                                  force=args.force)
            print(f"{name} {precision}: {engine}")
    return 0


def cmd_erm_eval(args: argparse.Namespace) -> int:
    from engines.emotion.erm import evaluate, load_erm, split_by_subject

    erm = load_erm(args.model)
    records = load_records(args.data, load_model("ict"))
    if args.split == "val":
        records = split_by_subject(records, erm.config.val_fraction, erm.config.seed)[1]
    print(json.dumps(evaluate(erm, records), indent=2))
    return 0



def register(sub: argparse._SubParsersAction) -> None:
    enc = sub.add_parser("encoder", help="the landmark encoder (landmarks -> ψ, θ)")
    enc_sub = enc.add_subparsers(dest="encoder_command", required=True)
    p = enc_sub.add_parser("train", help="train on synthetic landmarks; writes "
                           "landmark_encoder.npz/.onnx and metrics.json")
    p.add_argument("--out", default="out/encoder")
    p.add_argument("--steps", type=int, default=EncoderConfig.steps)
    p.add_argument("--batch", type=int, default=EncoderConfig.batch)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_encoder_train)

    eng = sub.add_parser("engines", help="ONNX files and TensorRT engines of our networks")
    eng_sub = eng.add_subparsers(dest="engines_command", required=True)
    p = eng_sub.add_parser("export", help="write every network as ONNX (dynamic batch)")
    p.add_argument("--out", default="out/onnx")
    p.add_argument("--flame", action="store_true", help=FLAME_HELP)
    p.set_defaults(func=cmd_engines_export)
    p = eng_sub.add_parser("build", help="TensorRT engines from the ONNX files (GPU, cached)")
    p.add_argument("--out", default="out/onnx", help="where the ONNX files are written")
    p.add_argument("--precision", nargs="+", choices=["fp16", "fp32"], default=["fp16", "fp32"])
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--cache", default=None, help="engine cache (default $VN3D_CACHE/engines)")
    p.add_argument("--force", action="store_true", help="rebuild even when cached")
    p.add_argument("--flame", action="store_true", help=FLAME_HELP)
    p.set_defaults(func=cmd_engines_build)

    erm = sub.add_parser("erm", help="the emotion regressive model").add_subparsers(
        dest="erm_command", required=True
    )
    p = erm.add_parser("records", help="write training records (FACS default or photos)")
    p.add_argument("source", help="'default', a photo folder (SUBJECT/EMOTION.jpg) or a CSV")
    p.add_argument("--out", default="out/records.npz")
    p.set_defaults(func=cmd_erm_records)
    p = erm.add_parser("train", help="train the ERM; writes erm.pt, erm.onnx, metrics.json")
    p.add_argument("--data", default="default", help="'default', records .npz, photos or CSV")
    p.add_argument("--out", default="out/erm")
    p.add_argument("--identity", action="store_true", help="the variant that also takes β")
    p.add_argument("--rho", type=float, default=ERMConfig.rho)
    p.add_argument("--epsilon", type=float, default=ERMConfig.epsilon)
    p.add_argument("--epochs", type=int, default=ERMConfig.epochs)
    p.add_argument("--seed", type=int, default=ERMConfig.seed)
    p.set_defaults(func=cmd_erm_train)
    p = erm.add_parser("eval", help="MAE per output group of a trained ERM")
    p.add_argument("--model", default="out/erm")
    p.add_argument("--data", default="default")
    p.add_argument("--split", choices=["all", "val"], default="val")
    p.set_defaults(func=cmd_erm_eval)
