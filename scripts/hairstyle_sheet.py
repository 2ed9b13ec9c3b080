"""Every hairstyle of the database on a head, to look at: front, three-quarter and back
views, one row per style, labelled with the style's name and traits.

    python scripts/hairstyle_sheet.py [--identity 0] [--out out/hairstyle_sheet.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from avatars.hair.styles import STYLE_TRAITS, list_styles
from avatars.restyle import styled_hair
from engines.face.ict import ICTFaceModel
from engines.render.hair import head_transform
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.render.skin_texture import plain_skin_texture

VIEWS = (0.0, 0.75, 3.0)  # yaw, radians: front, three-quarter, back
SIDE = 200


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identity", type=int, default=0, help="0: the mean head; else a seed")
    ap.add_argument("--columns", type=int, default=3, help="styles side by side")
    ap.add_argument("--styles", default="", help="comma-separated (default: every style)")
    ap.add_argument("--out", default="out/hairstyle_sheet.png")
    args = ap.parse_args()
    model = ICTFaceModel()
    shape = torch.zeros(1, model.n_shape)
    if args.identity:
        shape = 0.8 * torch.randn(1, model.n_shape, generator=torch.Generator().manual_seed(
            args.identity))
    tiles = []
    cfg = RenderConfig(SIDE, SIDE, samples=4)
    with MeshRenderer(model.topology, cfg, texture=plain_skin_texture(model)) as r, \
            torch.no_grad():  # fmt: skip
        names = args.styles.split(",") if args.styles else list_styles()
        for name in tqdm(names, desc="styles", unit="style"):
            r.set_hair(styled_hair(name, shape[0].numpy(), model).positions)
            row = []
            for yaw in VIEWS:
                pose = torch.zeros(1, 6)
                pose[0, 1] = yaw
                v = model(shape, torch.zeros(1, model.n_expression), pose)[0]
                row.append(r.render(v, hair_transform=head_transform(pose[0, :3].numpy())))
            tile = np.concatenate(row, 1)[..., ::-1].copy()
            t = STYLE_TRAITS[name]
            extra = (", tied" if t.tied else "") + (", fringe" if t.fringe else "")
            label = f"{name}: {t.length}{extra}"
            cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 255, 255), 1)
            tiles.append(tile)
    while len(tiles) % args.columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i : i + args.columns], 1)
            for i in range(0, len(tiles), args.columns)]  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.concatenate(rows, 0))
    print(f"{len(names)} styles; wrote {out}")


if __name__ == "__main__":
    main()
