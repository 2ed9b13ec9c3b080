"""Shut eyes on photo avatars: does a blink show skin, or a ghost of the photo's open eye?

The head's lids cover the eye with texels from round the photo's eye opening; when those
hold the photo's lash line and lid rims, a shut eye shows a dark painted eye mid-lid. Per
London Set neutral photo, the avatar is built with each band over the eyes left out of
the texture (``avatars.builder.EYE_MARGIN``, a fraction of the eye's width; 0: the eye
openings only) and rendered facing the camera with its eyes open and shut (eyeBlink 1,
no hair). The lids are where the two renders differ; the skin round them is a ring 5-15
px outside.

- contrast: median CIELAB L* of the ring minus that of the shut lids;
- structure: the lids' L* spread (10th-90th percentile), which a painted eye raises;
- open change: what the band costs the open eyes, the mean CIELAB ΔE of the eye region
  of the open-eye render against the one with margin 0 (the photo's own look round the
  eyes is kept where this stays small).

Trivial baseline, the same avatar with its texture replaced by its median skin (only
the renderer's shading and the lash cards remain): what a blank lid scores. Thresholds
are chosen on London ids <= 061, reported on the rest too. Table + JSON + a sheet of the
shut eyes (rows: photos; columns: the margins, then the flat skin).

    python scripts/bench_lids.py [--margins 0.0,0.2,0.3,0.4] [--out out/bench_lids]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

import avatars.builder as builder_module
from avatars.builder import AvatarBuilder, AvatarConfig, decode_photo
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer, RenderConfig

TUNED_MAX_ID = 61  # London ids up to this one choose the margin; the rest is held out
CAMERA = PerspectiveCamera(fov_y_deg=12, eye=(0, 3.0, 80), target=(0, 3.0, 0))


def shut_and_open(model: ICTFaceModel, shape: torch.Tensor, texture: np.ndarray,
                  iris: tuple[float, float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 renders of the head with its eyes shut, then open."""
    out = []
    with MeshRenderer(model.topology, RenderConfig(512, 512, samples=4),
                      texture=texture) as r, torch.no_grad():
        r.set_iris_colour(iris)
        for w in (1.0, 0.0):
            psi = model.expression_vector({"eyeBlink_L": w, "eyeBlink_R": w})
            out.append(r.render(model(shape, psi, torch.zeros(1, model.n_pose))[0], CAMERA))
    return out[0], out[1]


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """Mean CIELAB ΔE of two (H, W, 3) uint8 RGB images."""
    lab = [cv2.cvtColor(x.astype(np.float32) / 255, cv2.COLOR_RGB2LAB) for x in (a, b)]
    return float(np.linalg.norm(lab[0] - lab[1], axis=2).mean())


def lid_scores(shut: np.ndarray, opened: np.ndarray) -> dict[str, float]:
    """Contrast and structure of the shut lids (see the module docstring)."""
    lids = (np.abs(shut.astype(int) - opened.astype(int)).sum(2) > 30).astype(np.uint8)
    lids = cv2.morphologyEx(lids, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    near = cv2.dilate(lids, np.ones((11, 11), np.uint8))
    ring = cv2.dilate(lids, np.ones((31, 31), np.uint8)) & ~near
    lightness = cv2.cvtColor(shut, cv2.COLOR_RGB2LAB)[..., 0].astype(float) * 100 / 255
    lid, skin = lightness[lids.astype(bool)], lightness[ring.astype(bool)]
    return {"contrast": round(float(np.median(skin) - np.median(lid)), 2),
            "structure": round(float(np.percentile(lid, 90) - np.percentile(lid, 10)), 2),
            "lid_px": int(lids.sum())}


def eye_strip(image: np.ndarray) -> np.ndarray:
    """The band of a 512² frontal render that holds both eyes."""
    return image[170:310, 56:456]


def summary(rows: list[dict], key: str) -> dict[str, float]:
    out = {}
    for part, sel in (("tuning", [r for r in rows if r["tuning"]]),
                      ("held out", [r for r in rows if not r["tuning"]])):
        for measure in ("contrast", "structure", "open_change"):
            out[f"{part} {measure}"] = round(float(np.mean([r[key][measure] for r in sel])), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--margins", default="0.0,0.2,0.3,0.4",
                    help="bands over the eyes left out, in fractions of the eye's width")
    ap.add_argument("--out", default="out/bench_lids")
    args = ap.parse_args()
    margins = [float(m) for m in args.margins.split(",")]
    model = ICTFaceModel()
    builder = AvatarBuilder(model, AvatarConfig(hair="none"))
    photos = sorted((asset_root() / "faces" / "london_set").glob("london_*_neutral.jpg"))
    rows, strips = [], []
    for path in tqdm(photos, desc="photos", unit="photo"):
        person = int(path.stem.split("_")[1])
        image = decode_photo(path.read_bytes())
        row: dict = {"photo": path.name, "tuning": person <= TUNED_MAX_ID}
        tiles, first = [], None
        for margin in margins:
            builder_module.EYE_MARGIN = margin
            avatar = builder.build(image, path.stem, "bench")
            shape = torch.from_numpy(avatar.shape[None].copy())
            shut, opened = shut_and_open(model, shape, avatar.texture, avatar.iris_rgb)
            first = eye_strip(opened) if first is None else first
            row[f"margin {margin}"] = {**lid_scores(shut, opened),
                                       "open_change": round(delta_e(eye_strip(opened), first), 2)}
            tiles.append(eye_strip(shut))
        flat = np.empty_like(avatar.texture)
        flat[:] = np.median(avatar.texture.reshape(-1, 3), axis=0)
        shut, opened = shut_and_open(model, shape, flat, avatar.iris_rgb)
        row["flat skin"] = {**lid_scores(shut, opened),
                            "open_change": round(delta_e(eye_strip(opened), first), 2)}
        tiles.append(eye_strip(shut))
        rows.append(row)
        strips.append(np.concatenate(tiles, 1))
    builder.close()
    keys = [f"margin {m}" for m in margins] + ["flat skin"]
    table = {k: summary(rows, k) for k in keys}
    cols = list(next(iter(table.values())))
    print("\n| texture | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for k, v in table.items():
        print(f"| {k} | " + " | ".join(str(v[c]) for c in cols) + " |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_lids.json").write_text(json.dumps({"summary": table, "rows": rows}, indent=2))
    sheet = np.concatenate(strips, 0)
    cv2.imwrite(str(out / "shut_eyes.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"wrote {out}/bench_lids.json and {out}/shut_eyes.png")


if __name__ == "__main__":
    main()
