"""``vn3d camera``: the avatar as a system camera for Zoom, Meet or Teams (pyvirtualcam:
v4l2loopback on Linux, OBS Virtual Camera on Windows and macOS), rendered here or by a
``vn3d serve`` (``--server``)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from vn3d.commands.common import add_landmarker_flag


def cmd_camera(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vn3d.camera.remote import RemoteError
    from vn3d.camera.sink import SIZES, VirtualCameraUnavailableError, open_camera, parse_colour
    from vn3d.camera.sources import SourceError, open_source

    width, height = SIZES[args.size]
    background = parse_colour(args.background)
    try:
        source = open_source(args.source, loop=args.loop)
        try:
            camera = open_camera(width, height, args.fps, args.device, args.backend)
            try:
                print(f"virtual camera {camera.device}: {width}x{height} at {args.fps:g} fps "
                      f"(Ctrl-C stops)")  # fmt: skip
                with tqdm(total=args.frames, desc="camera", unit="frame") as bar:
                    report = run(args, source, camera, background, lambda n: bar.update(1))
            finally:
                camera.close()
        finally:
            source.close()
    except (VirtualCameraUnavailableError, SourceError, RemoteError) as exc:
        print(f"vn3d camera: error: {exc}", file=sys.stderr)
        return 2
    face = ("" if report.frames_with_face is None
            else f", face found in {report.frames_with_face}")  # fmt: skip
    print(f"sent {report.frames_sent} frames in {report.seconds:.1f} s "
          f"({report.fps:.1f} fps){face}")
    return 0


def run(args: argparse.Namespace, source, camera, background, progress):
    """The local or the remote loop, by ``--server``."""
    if args.server:
        from vn3d.camera.remote import run_remote

        return asyncio.run(run_remote(args.server, source, camera, background, args.frames,
                                      loopback=args.ice_loopback, progress=progress))
    from avatars.catalogue import load_target
    from engines.render.renderer import RenderConfig
    from engines.retarget.retargeter import Retargeter
    from engines.tracking.tracker import TrackerConfig
    from vn3d.camera.local import run_local
    from vn3d.commands.common import load_model

    model = load_model("ict")
    side = min(camera.width, camera.height)
    # the render's own background is the frame's, so a chroma key takes the whole of it
    render = RenderConfig(side, side, background=tuple(c / 255 for c in background),
                          hair_reuse_deg=args.hair_reuse_deg,
                          vertex_lighting=not args.pixel_lighting,
                          hair_shell=not args.hair_strands)
    retargeter = Retargeter(model, load_target(args.target, model), render,
                            TrackerConfig(reader=args.reader, landmarker=args.landmarker))
    try:
        return run_local(source, retargeter, camera, background, args.frames, progress)
    finally:
        retargeter.close()


def register(sub: argparse._SubParsersAction) -> None:
    from engines.tracking.tracker import DEFAULT_READER, READERS
    from server.config import (
        HAIR_REUSE_HELP,
        HAIR_STRANDS_HELP,
        PIXEL_LIGHTING_HELP,
        READER_HELP,
    )
    from vn3d.camera.sink import SIZES

    p = sub.add_parser("camera", help="the avatar as a system camera (Zoom, Meet, Teams)")
    p.add_argument("source", nargs="?", default="0",
                   help="a webcam index (default 0) or a video file")
    p.add_argument("--target", default="default",
                   help="the avatar: a target id (vn3d avatar list, sample:london_001, ...)")
    p.add_argument("--size", choices=list(SIZES), default="640x480")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--background", default="green",
                   help="around the square avatar: green (chroma key), black, white, #RRGGBB")
    p.add_argument("--device", default=None,
                   help="the virtual camera device (Linux: /dev/videoN; default: the first)")
    p.add_argument("--backend", default=None, choices=["v4l2loopback", "obs", "unitycapture"],
                   help="pyvirtualcam's backend (default: the first that works)")
    p.add_argument("--server", default=None, metavar="URL",
                   help="remote mode: ws://HOST:PORT/ws (?token=... when the server needs "
                   "one) of a vn3d serve that tracks and renders; this machine only sends "
                   "the camera and shows the avatar")
    p.add_argument("--ice-loopback", action="store_true",
                   help="remote mode on one machine: ICE on 127.0.0.1 only")
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--loop", action="store_true", help="loop a video file source")
    p.add_argument("--reader", choices=READERS, default=DEFAULT_READER, help=READER_HELP)
    p.add_argument("--hair-strands", action="store_true", help=HAIR_STRANDS_HELP)
    p.add_argument("--hair-reuse-deg", type=float, default=0.3, help=HAIR_REUSE_HELP)
    p.add_argument("--pixel-lighting", action="store_true", help=PIXEL_LIGHTING_HELP)
    add_landmarker_flag(p)
    p.set_defaults(func=cmd_camera)
