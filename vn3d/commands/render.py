"""``vn3d render``, ``vn3d demo`` and ``vn3d retarget-clip``: the head in stills and clips."""

from __future__ import annotations

import argparse

from engines.face.by_name import FACE_MODEL_HELP, FACE_MODELS
from engines.retarget.demo import DemoConfig
from engines.tracking.tracker import DEFAULT_READER, READERS, TrackerConfig
from server.config import READER_HELP
from vn3d.commands.common import add_landmarker_flag, load_model, output_path, parse_floats


def cmd_render(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    import torch

    from engines.face.expressions import parse_weights
    from engines.render.renderer import RenderConfig
    from engines.retarget.retargeter import Retargeter
    from engines.retarget.target import Target

    model = load_model(args.model)
    if len(args.identity) > model.n_shape:
        raise ValueError(
            f"--identity has {len(args.identity)} values; {model.name} takes <= {model.n_shape}"
        )
    shape = torch.zeros(1, model.n_shape)
    shape[0, : len(args.identity)] = torch.tensor(args.identity, dtype=torch.float32)
    psi = model.expression_vector(parse_weights(args.expression))[0].numpy()
    emotion_models, emotion = None, None
    if args.emotion:
        from engines.emotion.models import default_emotion_models

        emotion_models = default_emotion_models(model.expression_names)
        emotion = parse_weights(args.emotion if "=" in args.emotion else f"{args.emotion}=1")
    # head rotation: pitch about x, yaw about y, roll about z (degrees), composed as one
    # axis-angle for ICT's head joint / FLAME's global joint
    rotation = np.radians([args.pitch, args.yaw, args.roll])
    cfg = RenderConfig(
        width=args.size, height=args.size, samples=args.samples, transparent=args.transparent
    )
    with Retargeter(model, Target("cli", shape), cfg, emotion_models=emotion_models) as rt:
        img = rt.render_parameters(psi, rotation, emotion=emotion).image
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
    from avatars.catalogue import load_target
    from engines.retarget.clip import ClipConfig, ClipError, retarget_clip

    model = load_model(args.model)
    target = load_target(args.target, model)
    cfg = ClipConfig(
        size=args.size,
        side_by_side=args.side_by_side,
        samples=args.samples,
        calibrate_frames=args.calibrate_neutral,
    )
    out = output_path(args.out)
    try:
        report = retarget_clip(model, args.source, out, target, cfg,
                               TrackerConfig(reader=args.reader, landmarker=args.landmarker))
    except ClipError as exc:
        raise ValueError(str(exc)) from exc
    print(
        f"wrote {out}: {report.frames} frames, face found in {report.frames_with_face}, "
        f"{report.frames / report.seconds:.1f} frames/s"
    )
    for stage, t in report.stages.items():
        print(f"  {stage:<7} median {t['median_ms']:6.1f} ms   p95 {t['p95_ms']:6.1f} ms")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--model", choices=FACE_MODELS, default="ict", help=FACE_MODEL_HELP)
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
    p.add_argument("--model", choices=FACE_MODELS, default="ict", help=FACE_MODEL_HELP)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("retarget-clip", help="put a video's expressions onto a target's head")
    p.add_argument("source", help="input video (any format FFmpeg reads)")
    p.add_argument("--target", default="default",
                   help="a target id ('default', DATASET:SUBJECT such as sample:london_001, "
                   "an avatar id), an avatar folder or zip, or a target .npz")
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
    p.add_argument("--model", choices=FACE_MODELS, default="ict",
                   help=f"{FACE_MODEL_HELP}; flame takes the targets 'default' or a .npz from "
                   "`vn3d flame reconstruct --target`")
    p.add_argument("--reader", choices=READERS, default=DEFAULT_READER, help=READER_HELP)
    add_landmarker_flag(p)
    p.set_defaults(func=cmd_retarget_clip)
