"""Texture quality sheets (issue #21): per photo, build the avatar, unwrap its texture with
this tree's ``avatars/texture_unwrap.py`` (after) and with the one at a git revision
(before, default HEAD) on the same inputs, print the texture measures of
:mod:`engines.evaluation.texture_quality` for both, and save a PNG sheet:

    photo | UV texture before | UV texture after
    render before (front, three-quarter) | render after (front, three-quarter, with hair)

    python scripts/texture_sheet.py [PHOTO ...] [--before HEAD] [--out out/texture_sheets]

Without photos: every portrait under the assets' faces/ folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

import avatars.builder as builder_module
from avatars.builder import Avatar, AvatarBuilder, decode_photo
from avatars.texture_unwrap import UnwrapResult, UVLayout, unwrap_texture, uv_layout
from engines.evaluation.texture_quality import (
    TextureRegions,
    background_leak,
    detail_energy,
    seam_step,
    texture_regions,
)
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root, sha256_bytes
from engines.render.renderer import RenderConfig
from engines.retarget.retargeter import Retargeter

ROOT = Path(__file__).resolve().parent.parent
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
SIDE = 384  # px: each panel's height
THREE_QUARTER = np.array([0.0, 0.75, 0.0])  # head rotation (axis-angle) of the side view
LABELS = ("photo", "UV before", "UV after", "before", "before", "after", "after",
          "after, hair")


def module_at_revision(rev: str, path: str = "avatars/texture_unwrap.py") -> types.ModuleType:
    """The module at ``path`` as it was at git revision ``rev`` (imported under a new name)."""
    src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    mod = types.ModuleType(f"texture_unwrap_at_{rev}")
    sys.modules[mod.__name__] = mod  # dataclasses look their module up
    exec(compile(src, f"{rev}:{path}", "exec"), mod.__dict__)
    return mod


def build_recording_unwrap(builder: AvatarBuilder, image: np.ndarray, name: str,
                           data: bytes) -> tuple[Avatar, tuple, dict, UnwrapResult, float]:
    """Build the avatar while recording the unwrap's arguments, result and time."""
    seen: dict = {}

    def recording(*args, **kwargs) -> UnwrapResult:
        t0 = time.perf_counter()
        seen["result"] = unwrap_texture(*args, **kwargs)
        seen["seconds"] = time.perf_counter() - t0
        seen["args"], seen["kwargs"] = args, kwargs
        return seen["result"]

    builder_module.unwrap_texture = recording
    try:
        avatar = builder.build(image, name, sha256_bytes(data))
    finally:
        builder_module.unwrap_texture = unwrap_texture
    return avatar, seen["args"], seen["kwargs"], seen["result"], seen["seconds"]


def timed_pair(before: Callable[..., UnwrapResult], after: Callable[..., UnwrapResult],
               args: tuple, kwargs: dict,
               repeat: int) -> tuple[UnwrapResult, UnwrapResult, float, float]:
    """Both unwraps' results and fastest times over ``repeat`` interleaved calls each (the
    machine is shared: interleaving spreads other loads over both)."""
    best = [np.inf, np.inf]
    out: list = [None, None]
    for _ in range(repeat):
        for k, fn in enumerate((before, after)):
            t0 = time.perf_counter()
            out[k] = fn(*args, **kwargs)
            best[k] = min(best[k], time.perf_counter() - t0)
    return out[0], out[1], best[0], best[1]


def measures(result: UnwrapResult, lay: UVLayout, regions: TextureRegions) -> dict[str, float]:
    """Leaks (ears, sides, lighter than skin over both) and the seam step of an unwrap."""
    leak = background_leak(result.texture, lay, regions)
    return {**{f"leak_{k}": v for k, v in leak.items()},
            "seam": seam_step(result.texture, result.seen, lay)}


def renders(rt: Retargeter, avatar: Avatar, texture: np.ndarray, hair: bool) -> list[np.ndarray]:
    """Front and three-quarter renders with ``texture`` (and with hair when asked)."""
    target = avatar.target()
    target.texture = texture
    bare = avatar.target()
    bare.texture, bare.hair = texture, None
    out = []
    rt.set_target(bare)
    zero = np.zeros(rt.model.n_expression)
    out += [rt.render_parameters(zero, np.zeros(3)).image,
            rt.render_parameters(zero, THREE_QUARTER).image]
    if hair:
        rt.set_target(target)
        out.append(rt.render_parameters(zero, THREE_QUARTER).image)
    return out


def sheet(photo: np.ndarray, before: np.ndarray, after: np.ndarray,
          shots: list[np.ndarray]) -> np.ndarray:
    """The contact sheet (2 * SIDE, 5 * SIDE, 3) of one photo, panels labelled."""
    def fit(x: np.ndarray, height: int) -> np.ndarray:
        return cv2.resize(x, (round(height * x.shape[1] / x.shape[0]), height),
                          interpolation=cv2.INTER_AREA)

    panels = [fit(photo, SIDE), fit(before, SIDE), fit(after, SIDE)]
    renders = [fit(s, SIDE) for s in shots]
    for panel, label in zip(panels + renders, LABELS, strict=True):
        cv2.putText(panel, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    top, bottom = np.concatenate(panels, 1), np.concatenate(renders, 1)
    width = max(top.shape[1], bottom.shape[1])
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in (top, bottom)]
    return np.concatenate(rows, 0)


def one_photo(path: Path, model: ICTFaceModel, builder: AvatarBuilder, rt: Retargeter,
              before_mod: types.ModuleType, out: Path, repeat: int) -> dict:
    """Build, measure both unwraps, save the sheet; the row of the table."""
    data = path.read_bytes()
    image = decode_photo(data)
    avatar, args, kwargs, _, _ = build_recording_unwrap(builder, image, path.stem, data)
    before, after, t_before, t_after = timed_pair(before_mod.unwrap_texture, unwrap_texture,
                                                  args, kwargs, repeat)
    size = after.texture.shape[0]
    lay = uv_layout(model.topology, model.neutral.numpy(), size)
    regions = texture_regions(lay, model.topology, model.neutral.numpy())
    face = np.zeros(after.seen.shape, bool)
    face.reshape(-1)[lay.texel[regions.skin | regions.side]] = True
    common = face & (before.seen > 0.9) & (after.seen > 0.9)
    detail = detail_energy(after.texture, common) / max(detail_energy(before.texture, common),
                                                       1e-9)
    flat = np.empty_like(after.texture)
    flat[:] = np.round(after.skin_rgb).astype(np.uint8)
    row = {"photo": path.stem, "before": measures(before, lay, regions),
           "after": measures(after, lay, regions),
           "flat": measures(UnwrapResult(flat, after.seen, after.skin_rgb), lay, regions),
           "detail": detail, "t_before": t_before, "t_after": t_after}
    shots = renders(rt, avatar, before.texture, False) + renders(rt, avatar, after.texture, True)
    png = sheet(image, before.texture, after.texture, shots)
    cv2.imwrite(str(out / f"{path.stem}.png"), png[:, :, ::-1])
    return row


HEADER = ("| photo | ear leak % | side leak % | light leak % | seam ΔE | flat skin "
          "(ear/side/light/seam) | detail kept | unwrap s (Δ) |\n|---|---|---|---|---|---|---|---|")


def print_row(r: dict) -> None:
    """One table row: before → after for each measure."""
    b, a, f = r["before"], r["after"], r["flat"]
    pct = " | ".join(f"{100 * b[k]:.2f} → {100 * a[k]:.2f}"
                     for k in ("leak_ears", "leak_side", "leak_light"))
    flat = "/".join(f"{f[k]:.0f}" for k in ("leak_ears", "leak_side", "leak_light", "seam"))
    print(f"| {r['photo']} | {pct} | {b['seam']:.1f} → {a['seam']:.1f} | {flat} | "
          f"{100 * r['detail']:.0f}% | {r['t_before']:.2f} → {r['t_after']:.2f} "
          f"({r['t_after'] - r['t_before']:+.2f}) |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="*", type=Path)
    ap.add_argument("--before", default="HEAD", help="git revision of the 'before' unwrap")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "texture_sheets")
    ap.add_argument("--repeat", type=int, default=3, help="timed unwraps per version")
    args = ap.parse_args()
    photos = args.photos or sorted(p for p in (asset_root() / "faces").rglob("*")
                                   if p.suffix.lower() in PHOTO_SUFFIXES)
    args.out.mkdir(parents=True, exist_ok=True)
    before_mod = module_at_revision(args.before)
    model = ICTFaceModel()
    builder = AvatarBuilder(model)
    print(HEADER)
    rows = []
    with Retargeter(model, render_config=RenderConfig(SIDE, SIDE, samples=4)) as rt:
        for path in photos:
            try:
                rows.append(one_photo(path, model, builder, rt, before_mod, args.out,
                                      args.repeat))
            except ValueError as exc:
                print(f"| {path.stem} | skipped: {exc} |")
                continue
            print_row(rows[-1])
            (args.out / "texture_sheet.json").write_text(json.dumps(rows, indent=1))
    builder.close()


if __name__ == "__main__":
    main()
