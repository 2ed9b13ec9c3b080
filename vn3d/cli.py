"""The ``vn3d`` command: one subcommand per job."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from engines.emotion.erm import ERMConfig
from engines.encoder.config import EncoderConfig
from engines.files.assets import AssetMissingError
from engines.inference.backend import BACKENDS
from engines.retarget.demo import DemoConfig
from engines.tracking.tracker import DEFAULT_READER, READERS, TrackerConfig

READER_HELP = ("how ψ and the head pose are read from the landmarks: mediapipe (its "
               "blendshapes) or encoder (the project's landmark encoder)")


def load_model(name: str):  # -> FaceModel
    """The face model by name: ``ict`` (open default) or ``flame`` (needs the FLAME file)."""
    if name == "flame":
        from engines.face.flame import FlameModel

        return FlameModel()
    from engines.face.ict import ICTFaceModel

    return ICTFaceModel()


def output_path(text: str) -> Path:
    """The output file's path, with its folder created."""
    out = Path(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def parse_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def cmd_render(args: argparse.Namespace) -> int:
    import cv2
    import torch

    from engines.face.expressions import parse_weights
    from engines.render.camera import PerspectiveCamera
    from engines.render.renderer import MeshRenderer, RenderConfig

    model = load_model(args.model)
    shape, _, pose = model.zero_params(1)
    ident = torch.tensor(args.identity, dtype=torch.float32)
    if len(ident) > model.n_shape:
        raise ValueError(
            f"--identity has {len(ident)} values; {model.name} takes <= {model.n_shape}"
        )
    shape[0, : len(ident)] = ident
    psi = model.expression_vector(parse_weights(args.expression))
    if args.emotion:
        from engines.emotion.models import default_emotion_models

        text = args.emotion if "=" in args.emotion else f"{args.emotion}=1"
        models = default_emotion_models(model.expression_names)
        erm_psi, erm_theta = models.sliders(parse_weights(text))
        psi = torch.maximum(psi, torch.from_numpy(erm_psi)[None])
        pose[0, 3:6] = torch.from_numpy(erm_theta[3:6])
        pose[0, :3] += torch.from_numpy(erm_theta[:3])
    # head rotation: pitch about x, yaw about y, roll about z (degrees), composed as one
    # axis-angle for ICT's head joint / FLAME's global joint
    rot = torch.tensor([[math.radians(a) for a in (args.pitch, args.yaw, args.roll)]])
    pose[:, :3] = rot
    with torch.no_grad():
        vertices = model(shape, psi, pose)[0]
    cfg = RenderConfig(
        width=args.size, height=args.size, samples=args.samples, transparent=args.transparent
    )
    camera = PerspectiveCamera.portrait(model.units_in_metres)
    with MeshRenderer(model.topology, cfg) as renderer:
        img = renderer.render(vertices, camera)
    code = cv2.COLOR_RGBA2BGRA if args.transparent else cv2.COLOR_RGB2BGR
    out = output_path(args.out)
    if not cv2.imwrite(str(out), cv2.cvtColor(img, code)):
        raise ValueError(f"could not write {out}: use a .png or .jpg name")
    print(f"wrote {out} ({args.size}x{args.size})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from engines.retarget.demo import render_demo

    model = load_model(args.model)
    cfg = DemoConfig(
        size=args.size,
        fps=args.fps,
        samples=args.samples,
        seconds_per_expression=args.seconds_per_expression,
    )
    out = output_path(args.out)
    n = render_demo(model, out, cfg)
    print(f"wrote {out}: {n} frames, {n / cfg.fps:.1f} s at {cfg.size}x{cfg.size}")
    return 0


def cmd_retarget_clip(args: argparse.Namespace) -> int:
    from avatars.store import load_any_target
    from engines.retarget.clip import ClipConfig, ClipError, retarget_clip

    model = load_model(args.model)
    target = load_any_target(args.target, model)
    cfg = ClipConfig(
        size=args.size,
        side_by_side=args.side_by_side,
        samples=args.samples,
        calibrate_frames=args.calibrate_neutral,
    )
    out = output_path(args.out)
    try:
        report = retarget_clip(model, args.source, out, target, cfg,
                               TrackerConfig(reader=args.reader))
    except ClipError as exc:
        raise ValueError(str(exc)) from exc
    print(
        f"wrote {out}: {report.frames} frames, face found in {report.frames_with_face}, "
        f"{report.frames / report.seconds:.1f} frames/s"
    )
    for stage, t in report.stages.items():
        print(f"  {stage:<7} median {t['median_ms']:6.1f} ms   p95 {t['p95_ms']:6.1f} ms")
    return 0


def load_records(spec: str, model):  # -> Records
    """``default`` (FACS records), a records ``.npz``, a photo folder or a CSV of photos."""
    from engines.emotion.facs import Records, facs_records

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

    for name, path in export_all(Path(args.out), load_model("ict").expression_names).items():
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
    onnx = export_all(Path(args.out), load_model("ict").expression_names)
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


def cmd_avatar_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from avatars.builder import STAGES, AvatarBuilder, AvatarConfig, decode_photo, photo_hash
    from avatars.hair.styles import list_styles
    from avatars.identity_fit import FitConfig
    from avatars.store import AvatarStore

    if args.hair not in ("auto", "none", *list_styles()):
        raise ValueError(f"unknown hairstyle {args.hair!r}; use auto, none or one of: "
                         f"{', '.join(list_styles())}")
    data = Path(args.photo).read_bytes()
    image = decode_photo(data)
    model = load_model("ict")
    config = AvatarConfig(
        texture_size=args.texture_size, hair=args.hair, fit=FitConfig(fov_y_deg=args.fov)
    )
    builder = AvatarBuilder(model, config)
    name = args.name or Path(args.photo).stem
    try:
        with tqdm(total=len(STAGES), desc="avatar", unit="stage") as bar:
            avatar = builder.build(image, name, photo_hash(data), lambda s: bar.update(1))
    finally:
        builder.close()
    store = AvatarStore(args.store)
    avatar_id = store.add(avatar, model)
    print(f"avatar {avatar_id} ({name}) in {store.root / avatar_id}")
    print(f"  hair: {avatar.hair.name if avatar.hair else 'none'}, "
          f"colour {tuple(round(c, 2) for c in avatar.hair_rgb)}; "
          f"landmark fit {avatar.photo.residual_px:.2f} px")
    for stage, ms in avatar.timings_ms.items():
        print(f"  {stage:<9} {ms:7.0f} ms")
    print(f"  total     {sum(avatar.timings_ms.values()):7.0f} ms")
    return 0


def cmd_avatar_list(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    entries = AvatarStore(args.store).entries(everyone=True)
    for e in entries:
        owner = "local" if e.owner is None else ("public" if e.public else "private upload")
        print(f"{e.id}  {e.name:<24} hair={e.hairstyle or 'none':<14} {owner}")
    if not entries:
        print("no avatars yet: vn3d avatar build PHOTO")
    return 0


def cmd_avatar_show(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    store = AvatarStore(args.store)
    folder = store.folder(args.id)
    print((folder / "manifest.json").read_text())
    return 0


def cmd_avatar_export(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    store = AvatarStore(args.store)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = store.entry(args.id).name
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or args.id
    (out / f"{stem}.zip").write_bytes(store.zip(args.id))
    (out / f"{stem}.glb").write_bytes(store.glb(args.id))
    print(f"wrote {out / (stem + '.zip')} and {out / (stem + '.glb')}")
    return 0


def cmd_avatar_import(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    avatar_id = AvatarStore(args.store).import_avatar(Path(args.source), load_model("ict"))
    print(f"imported avatar {avatar_id}")
    return 0


def cmd_avatar_delete(args: argparse.Namespace) -> int:
    from avatars.store import AvatarStore

    AvatarStore(args.store).delete(args.id)
    print(f"deleted avatar {args.id}")
    return 0


def cmd_dataset_build(args: argparse.Namespace) -> int:
    from engines.dataset.build import build_dataset, build_sample_dataset, sample_dataset_dir
    from engines.emotion.models import default_emotion_models

    model = load_model("ict")
    erm = default_emotion_models(model.expression_names).erm
    if args.dataset_command == "sample":
        out = Path(args.out) if args.out else sample_dataset_dir()
        manifest = build_sample_dataset(model, erm, out, args.workers, args.limit)
    else:
        if not args.photos and not args.csv:
            raise ValueError("give a photo folder, or --csv FILE")
        out = Path(args.out)
        manifest = build_dataset(Path(args.photos) if args.photos else None, out, model, erm,
                                 pattern=args.pattern, csv=args.csv, workers=args.workers)
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
    from engines.evaluation.dataset_eval import evaluate_dataset, fmt

    result = evaluate_dataset(Path(args.dataset), load_model("ict"),
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


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from server.app import ServerConfig, run_server

    if bool(args.cert) != bool(args.key):
        raise ValueError("--cert and --key go together")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = ServerConfig(
        host=args.host,
        port=args.port,
        max_sessions=args.max_sessions,
        token=args.token,
        ice_loopback=args.ice_loopback,
        ice_servers=args.ice_server,
        size=args.size,
        cert=args.cert,
        key=args.key,
        stamp_frames=args.stamp_frames,
        avatar_store=args.avatar_store,
        render_slots=args.render_slots,
        reader=args.reader,
        backend=args.backend,
        datasets=args.dataset,
        sample_gallery=args.sample_gallery,
    )

    def ready(url: str) -> None:
        suffix = f"?token={args.token}" if args.token else ""
        print(f"serving on {url}{suffix}  (Ctrl+C stops)", flush=True)

    asyncio.run(run_server(config, args.target, ready))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from vn3d.doctor import run_doctor

    return run_doctor()


def list_hairstyles() -> list[str]:
    from avatars.hair.styles import list_styles

    return list_styles()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vn3d", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="render the default head with given parameters to a PNG")
    p.add_argument("--expression", default="", help="NAME=W,... ARKit weights, or e.g. 'happy'")
    p.add_argument(
        "--identity", type=parse_floats, default=[], help="identity coefficients a,b,..."
    )
    p.add_argument("--emotion", default="", help="EMOTION or EMOTION=I,... through the ERM")
    p.add_argument("--yaw", type=float, default=0.0, help="degrees, + turns to the head's left")
    p.add_argument("--pitch", type=float, default=0.0, help="degrees, + tilts the chin down")
    p.add_argument("--roll", type=float, default=0.0, help="degrees")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--samples", type=int, default=4, help="MSAA samples (0 = off)")
    p.add_argument("--transparent", action="store_true", help="transparent background (PNG)")
    p.add_argument("--model", choices=["ict", "flame"], default="ict")
    p.add_argument("--out", default="head.png")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("demo", help="render the seven basic expressions with head motion to MP4")
    p.add_argument("--out", default="out/demo.mp4")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument(
        "--seconds-per-expression", type=float, default=DemoConfig.seconds_per_expression
    )
    p.add_argument("--samples", type=int, default=4, help="MSAA samples (0 = off)")
    p.add_argument("--model", choices=["ict", "flame"], default="ict")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("retarget-clip", help="put a video's expressions onto a target's head")
    p.add_argument("source", help="input video (any format FFmpeg reads)")
    p.add_argument("--target", default="default",
                   help="'default', a target .npz, an avatar folder/zip or an avatar id, "
                   "or a dataset subject DATASET:SUBJECT (sample:london_001)")
    p.add_argument("--out", default="out/retargeted.mp4")
    p.add_argument("--side-by-side", action="store_true", help="source | render")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--samples", type=int, default=0, help="MSAA samples (0 = off)")
    p.add_argument(
        "--calibrate-neutral",
        type=int,
        default=0,
        metavar="N",
        help="treat the first N frames with a face as the neutral face",
    )
    p.add_argument("--model", choices=["ict"], default="ict")
    p.add_argument("--reader", choices=READERS, default=DEFAULT_READER, help=READER_HELP)
    p.set_defaults(func=cmd_retarget_clip)

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
    p.set_defaults(func=cmd_engines_export)
    p = eng_sub.add_parser("build", help="TensorRT engines from the ONNX files (GPU, cached)")
    p.add_argument("--out", default="out/onnx", help="where the ONNX files are written")
    p.add_argument("--precision", nargs="+", choices=["fp16", "fp32"], default=["fp16", "fp32"])
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--cache", default=None, help="engine cache (default $VN3D_CACHE/engines)")
    p.add_argument("--force", action="store_true", help="rebuild even when cached")
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

    avatar = sub.add_parser("avatar", help="avatars from portraits, and the avatar store")
    avatar_sub = avatar.add_subparsers(dest="avatar_command", required=True)
    store_help = "the avatar store folder (default: $VN3D_AVATARS or ~/.local/share/vn3d/avatars)"
    p = avatar_sub.add_parser("build", help="build an avatar from one portrait into the store")
    p.add_argument("photo", help="a JPEG, PNG or WebP portrait")
    p.add_argument("--hair", default="auto", help="'auto' (chosen from the photo), a style "
                   "name (see `vn3d avatar styles`) or 'none'")
    p.add_argument("--name", default=None, help="display name (default: the file name)")
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--fov", type=float, default=20.0, help="the photo's vertical field of "
                   "view in degrees (portraits ~20, phone/webcam selfies ~50)")
    p.add_argument("--store", default=None, help=store_help)
    p.set_defaults(func=cmd_avatar_build)
    p = avatar_sub.add_parser("styles", help="list the hairstyles")
    p.set_defaults(func=lambda args: print("\n".join(list_hairstyles())) or 0)
    for verb, helptext, func in (
        ("list", "list the avatars in the store", cmd_avatar_list),
        ("show", "print an avatar's manifest", cmd_avatar_show),
        ("export", "write an avatar's zip and GLB", cmd_avatar_export),
        ("delete", "delete an avatar from the store", cmd_avatar_delete),
        ("import", "import an avatar folder or zip into the store", cmd_avatar_import),
    ):
        p = avatar_sub.add_parser(verb, help=helptext)
        if verb == "import":
            p.add_argument("source", help="an avatar folder or .zip")
        elif verb != "list":
            p.add_argument("id", help="the avatar's id (vn3d avatar list)")
        if verb == "export":
            p.add_argument("--out", default="out/avatars")
        p.add_argument("--store", default=None, help=store_help)
        p.set_defaults(func=func)

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
    p.set_defaults(func=cmd_dataset_build)
    p = dataset_sub.add_parser("sample", help="build (or resume) the sample gallery from the "
                               "London Set; `vn3d serve` shows it")
    p.add_argument("--out", default=None, help="default: $VN3D_CACHE/datasets/london-sample")
    p.add_argument("--workers", type=int, default=workers)
    p.add_argument("--limit", type=int, default=None, help="only the first N people")
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

    p = sub.add_parser("serve", help="the live service: web page + WebRTC retargeting")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-sessions", type=int, default=4)
    p.add_argument("--target", default="default", help="the target new sessions start with")
    p.add_argument("--size", type=int, default=512, help="rendered video size")
    p.add_argument("--token", default=None, help="require ?token=... for signalling")
    p.add_argument("--cert", default=None, help="TLS certificate (PEM) for https/wss")
    p.add_argument("--key", default=None, help="TLS private key (PEM)")
    p.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN/TURN server URL (repeatable); none by default",
    )
    p.add_argument(
        "--ice-loopback",
        action="store_true",
        help="ICE on 127.0.0.1 only (tests and single-machine use)",
    )
    p.add_argument("--dataset", action="append", default=[], metavar="DIR",
                   help="a built dataset whose subjects join the target picker (repeatable)")
    p.add_argument("--no-sample-gallery", dest="sample_gallery", action="store_false",
                   help="leave out the sample gallery (built by `vn3d dataset sample`)")
    p.add_argument("--reader", choices=READERS, default=DEFAULT_READER, help=READER_HELP)
    p.add_argument("--backend", default="auto", choices=["auto", *BACKENDS],
                   help="the encoder's runtime (auto: TensorRT on a GPU, else ONNX Runtime)")
    p.add_argument("--render-slots", type=int, default=1, help="sessions that track and "
                   "render at the same time (1 keeps latency low on CPU renderers)")
    p.add_argument("--avatar-store", default=None, help="the avatar store folder (default: "
                   "$VN3D_AVATARS or ~/.local/share/vn3d/avatars)")
    p.add_argument(
        "--stamp-frames",
        action="store_true",
        help="benchmarks: stamp each source frame's index into the avatar video",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("doctor", help="check assets, renderer, MediaPipe, CUDA/TensorRT")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (AssetMissingError, ValueError, KeyError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"vn3d {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
