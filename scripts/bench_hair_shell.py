"""Hair as strands against hair as one textured shell: what each costs a 512² frame on
this renderer, and how alike they look.

For each style (aligned to the default head): the render-only cost of the same animated
frames with no hair, the strands drawn every frame and the shell (median wall ms and the
process's CPU ms per frame); and, at four head poses, how the shell's hair covers the
strands' hair: hair pixels are those that differ from the bare head's frame; IoU of the
two hair masks; "holes" = the strands' hair pixels where the shell shows the background;
the mean brightness (L*) of the hair pixels both show. Baselines for the IoU: the scalp
cap alone (the strand renderer's cap without strands: the crudest hair there is) and
another style's strands (the next in the list). A contact sheet per style group (strands
above, shell below) goes to ``--sheet``.

    python scripts/bench_hair_shell.py [--styles long_wavy,curly_afro] [--frames 60]
        [--out out/bench_hair_shell.json] [--sheet out/hair_shell_sheet.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from pathlib import Path

import cv2
import numpy as np
import torch
from bench_render import animated_params, timed_frames
from PIL import Image

from avatars.hair.photo import mask_iou
from avatars.hair.styles import list_styles
from avatars.restyle import styled_hair
from engines.face.ict import ICTFaceModel
from engines.render.hair import DEFAULT_COLOUR, HairLook, hair_mesh, head_transform
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture

POSES = [(0.0, 0.0), (0.0, 0.5), (0.15, -0.35), (-0.1, 1.0)]  # (pitch, yaw) radians
HAIR_DIFF = 12  # a pixel is hair where some channel differs from the bare head's by more


def pose_frames(model: ICTFaceModel) -> list[tuple[torch.Tensor, np.ndarray]]:
    """The neutral head's vertices and hair motion at each of :data:`POSES`."""
    out = []
    for pitch, yaw in POSES:
        pose = torch.zeros(1, model.n_pose)
        pose[0, 0], pose[0, 1] = pitch, yaw
        v = model(torch.zeros(1, model.n_shape), torch.zeros(1, model.n_expression), pose)[0]
        out.append((v, head_transform(pose[0, :3].numpy())))
    return out


def hair_masks(frames: list[np.ndarray], bare: list[np.ndarray]) -> np.ndarray:
    """(P, H, W) bool: where each frame differs from the bare head's."""
    return np.stack([np.abs(f.astype(int) - b.astype(int)).max(-1) > HAIR_DIFF
                     for f, b in zip(frames, bare, strict=True)])


def lightness(frames: list[np.ndarray], mask: np.ndarray) -> float:
    """Mean L* (0-100) of the masked pixels."""
    lab = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2LAB) for f in frames])
    return round(float(lab[..., 0][mask].mean()) * 100 / 255, 1) if mask.any() else 0.0


def render_poses(renderer: MeshRenderer, poses) -> list[np.ndarray]:
    return [renderer.render(v, hair_transform=m) for v, m in poses]


def quality(strands_r: MeshRenderer, shell_r: MeshRenderer, style: str, other: str,
            model: ICTFaceModel, poses, bare: list[np.ndarray]) -> tuple[dict, np.ndarray]:
    """The shell against the strands at each pose, with the baselines; and the sheet rows."""
    shape = np.zeros(model.n_shape)
    strands = styled_hair(style, shape, model).positions
    strands_r.set_hair(strands)
    shell_r.set_hair(strands)
    exact, shell = render_poses(strands_r, poses), render_poses(shell_r, poses)
    truth, mask = hair_masks(exact, bare), hair_masks(shell, bare)
    background = np.asarray(shell_r.config.background) * 255
    holes = truth & (np.abs(np.stack(shell) - background).max(-1) < 3)
    strands_r.set_hair(styled_hair(other, shape, model).positions)
    other_mask = hair_masks(render_poses(strands_r, poses), bare)
    cap_only = dataclasses.replace(hair_mesh(np.asarray(strands), HairLook()),
                                   lines=np.zeros((0, 2), np.int32))
    with strands_r.ctx:
        strands_r.hair.set(cap_only, DEFAULT_COLOUR)
    cap_mask = hair_masks(render_poses(strands_r, poses), bare)
    both = truth & mask
    row = {"style": style, "iou": round(mask_iou(truth, mask), 3),
           "iou_cap_only": round(mask_iou(truth, cap_mask), 3),
           "iou_other_style": round(mask_iou(truth, other_mask), 3),
           "holes_pct": round(100 * holes.sum() / max(truth.sum(), 1), 2),
           "lightness_strands": lightness(exact, both), "lightness_shell": lightness(shell, both)}
    sheet = np.concatenate([np.concatenate(exact, 1), np.concatenate(shell, 1)], 0)
    return row, sheet


def cost(model: ICTFaceModel, params, styles: list[str], shell: bool) -> dict[str, list]:
    """Per style (and none): [median wall ms, CPU ms per frame] over the animated frames."""
    vertices = model(*params)
    moves = [head_transform(p[:3].numpy()) for p in params[2]]
    cfg = RenderConfig(512, 512, vertex_lighting=True, hair_shell=shell)
    out = {}
    with MeshRenderer(model.topology, cfg, texture=plain_skin_texture(model)) as r:
        for style in ["none", *styles]:
            r.set_hair(None if style == "none" else styled_hair(
                style, params[0][0].numpy(), model).positions)
            times, cpu = timed_frames(r, vertices, moves)
            out[style] = [round(1000 * statistics.median(times), 1), round(1000 * cpu, 1)]
            print(f"  {'shell' if shell else 'strands'} {style}: {out[style]}", flush=True)
    return out


def print_table(rows: list[dict], strands: dict, shell: dict) -> None:
    print("\n| style | strands ms (wall / CPU) | shell ms (wall / CPU) | hair's share, strands → "
          "shell | IoU shell | IoU cap only | IoU other style | holes % | L* strands / shell "
          "|\n|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        s, a, b = row["style"], strands[row["style"]], shell[row["style"]]
        print(f"| {s} | {a[0]} / {a[1]} | {b[0]} / {b[1]} | "
              f"{round(a[0] - strands['none'][0], 1)} → {round(b[0] - shell['none'][0], 1)} | "
              f"{row['iou']} | {row['iou_cap_only']} | {row['iou_other_style']} | "
              f"{row['holes_pct']} | {row['lightness_strands']} / {row['lightness_shell']} |")
    med = {k: round(statistics.median(r[k] for r in rows), 3)
           for k in ("iou", "iou_cap_only", "iou_other_style", "holes_pct")}
    shares = [(strands[r["style"]][0] - strands["none"][0], shell[r["style"]][0] - shell["none"][0])
              for r in rows]
    print(f"| median of {len(rows)} | | | {round(statistics.median(a for a, _ in shares), 1)} → "
          f"{round(statistics.median(b for _, b in shares), 1)} | {med['iou']} | "
          f"{med['iou_cap_only']} | {med['iou_other_style']} | {med['holes_pct']} | |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--styles", default="", help="comma-separated styles (default: all)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--out", default="out/bench_hair_shell.json")
    ap.add_argument("--sheet", default="out/hair_shell_sheet.png")
    args = ap.parse_args()
    styles = args.styles.split(",") if args.styles else list_styles()
    model = ICTFaceModel()
    params = animated_params(model, args.frames)
    rows, sheets = [], []
    with torch.no_grad():
        strands_ms = cost(model, params, styles, shell=False)
        shell_ms = cost(model, params, styles, shell=True)
        poses = pose_frames(model)
        texture = plain_skin_texture(model)
        configs = [RenderConfig(256, 256, vertex_lighting=True, hair_shell=shell)
                   for shell in (False, True)]
        with MeshRenderer(model.topology, configs[0], texture=texture) as strands_r, \
                MeshRenderer(model.topology, configs[1], texture=texture) as shell_r:
            bare = render_poses(strands_r, poses)
            for i, style in enumerate(styles):
                other = styles[(i + 1) % len(styles)] if len(styles) > 1 else "buzz"
                row, sheet = quality(strands_r, shell_r, style, other, model, poses, bare)
                rows.append(row)
                sheets.append(sheet)
                print(f"  {row}", flush=True)
    print_table(rows, strands_ms, shell_ms)
    sheet_path = Path(args.sheet)
    sheet_path.parent.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(sheets), 6):  # six styles a sheet
        name = sheet_path.with_name(f"{sheet_path.stem}_{k // 6}{sheet_path.suffix}")
        Image.fromarray(np.concatenate(sheets[k:k + 6], 0)).save(name)
        print(f"wrote {name} ({', '.join(styles[k:k + 6])})")
    out = Path(args.out)
    out.write_text(json.dumps({"rows": rows, "strands_ms": strands_ms, "shell_ms": shell_ms,
                               "poses": POSES, "frames": args.frames}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
