"""``vn3d flame``: the paper's FLAME path for users who have the registered files (FLAME,
DECA, MICA; ``vn3d doctor`` lists where each is looked for)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vn3d.commands.common import add_landmarker_flag, output_path


def cmd_flame_reconstruct(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from avatars.builder import decode_photo
    from avatars.flame_photo_texture import flame_texture
    from engines.face.correspondence import MEDIAPIPE_IBUG68
    from engines.files.mesh_obj import write_obj
    from engines.flame_encoders.photo_to_flame import load_photo_to_flame
    from engines.flame_encoders.sheet import reconstruction_sheet
    from engines.tracking.arkit_mapping import arkit_names
    from engines.tracking.tracker import FaceTracker, TrackerConfig

    image = decode_photo(Path(args.photo).read_bytes())
    reader, notes = load_photo_to_flame(args.flame, args.deca, args.mica, args.landmarks,
                                        args.uvs, args.albedo)
    for note in notes:
        print(f"note: {note}")
    tracker = FaceTracker(arkit_names(), TrackerConfig(
        video=False, smoothing=None, landmarker=args.landmarker))
    try:
        found = tracker.process(image, 0.0).landmarks
    finally:
        tracker.close()
    if found is None:
        raise ValueError(f"{args.photo}: no face found: use a photo with one visible face")
    h, w = image.shape[:2]
    landmarks = found[:, :2] * [w, h]  # (478, 2) pixels
    fit = reader(image, landmarks)

    out = output_path(args.out)
    sheet = reconstruction_sheet(fit, image, landmarks[MEDIAPIPE_IBUG68], reader.flame)
    if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"could not write {out}: use a .png or .jpg name")
    print(f"wrote {out} (photo + landmarks | mesh over the photo | mesh from the front)")
    report = {"shape_from": fit.shape_from, "shape": fit.shape.tolist(),
              "expression": fit.expression.tolist(), "pose": fit.pose.tolist(),
              "cam": fit.cam.tolist(), "tex": fit.tex.tolist(), "light": fit.light.tolist()}
    if fit.landmarks68 is not None:
        # DECA's landmark error, as a share of the eye-corner distance (NME)
        err = np.linalg.norm(fit.project(fit.landmarks68) - landmarks[MEDIAPIPE_IBUG68], axis=1)
        eyes = np.linalg.norm(landmarks[MEDIAPIPE_IBUG68[36]] - landmarks[MEDIAPIPE_IBUG68[45]])
        report["landmark_nme"] = float(err[17:].mean() / eyes)
        print(f"FLAME's 51 inner landmarks vs MediaPipe's: {100 * report['landmark_nme']:.1f}% "
              "of the eye-corner distance")
    params = output_path(args.params or str(out.with_suffix(".json")))
    params.write_text(json.dumps(report, indent=1))
    print(f"wrote {params} (shape from {fit.shape_from}, DECA's expression, pose, camera)")
    if args.target:
        texture, how = flame_texture(args.texture, fit, image, landmarks, reader.flame)
        print(f"texture: {how}")
        extra = {} if texture is None else {"texture": texture}
        np.savez(output_path(args.target), shape=fit.shape.astype(np.float32), model="flame",
                 **extra)
        print(f"wrote {args.target}: this identity as a target for --model flame (e.g. "
              f"vn3d retarget-clip CLIP --model flame --target {args.target})")
    if args.obj:
        write_obj(output_path(args.obj), fit.vertices, reader.flame.topology.faces)
        print(f"wrote {args.obj} (the posed FLAME mesh, metres)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    flame = sub.add_parser("flame", help="FLAME with DECA and MICA (registered files)")
    flame_sub = flame.add_subparsers(dest="flame_command", required=True)
    p = flame_sub.add_parser(
        "reconstruct", help="one photo -> FLAME: MICA's shape, DECA's expression and pose")
    p.add_argument("photo", help="a photo with one face (JPEG, PNG, WebP)")
    p.add_argument("--out", default="out/flame_reconstruction.png", help="the contact sheet")
    p.add_argument("--params", default=None, help="the parameters as JSON (default: beside "
                   "--out)")
    p.add_argument("--obj", default=None, help="also write the posed mesh as OBJ")
    p.add_argument("--target", default=None, metavar="OUT.npz",
                   help="also write the identity (shape) as a target for --model flame")
    p.add_argument("--texture", choices=["auto", "albedo", "photo", "none"], default="auto",
                   help="the --target's texture: DECA's albedo, the photo unwrapped onto "
                   "FLAME's UVs, or none (auto: the albedo if its model is there, else the "
                   "photo)")
    p.add_argument("--flame", default=None, help="generic_model.pkl (default: as doctor says)")
    p.add_argument("--deca", default=None, help="deca_model.tar")
    p.add_argument("--mica", default=None, help="mica.tar (absent: DECA's shape is used)")
    p.add_argument("--landmarks", default=None, help="DECA's landmark_embedding.npy")
    p.add_argument("--uvs", default=None, help="DECA's head_template.obj (FLAME's UVs)")
    p.add_argument("--albedo", default=None,
                   help="FLAME_albedo_from_BFM.npz or FLAME_texture.npz (with --uvs: texture)")
    add_landmarker_flag(p)
    p.set_defaults(func=cmd_flame_reconstruct)
