"""Automatic hair choice against hand labels: for every photo in
tests/data/photo_hair_labels.csv, the builder's own steps (landmarks, fit, hair colour and
mask, texture for the bald-scalp test, choose_hair) pick a style; the style's traits
(``STYLE_TRAITS``; no hair = bald) are compared with the labels. Per attribute (length
class, tied, fringe, bald vs not): agreement on the tuning photos (London Set ids <= 061)
and on the held-out rest, before (``--before``: this script's JSON from the code before the
change) and now, with two trivial baselines (always the set's most common label; a style
drawn at random, the exact expectation over the 13 styles) and the ceiling (per photo the
style its labels fit best). Also the mean IoU of the chosen style's rendered hair (over
the fitted head, the photo's camera) with the photo's hair mask, each run with its own
mask; and the hair's colour: ΔE (CIELAB) between the median colour of the photo's hair and
of the avatar's drawn hair, where both are, against two baselines drawn the same way (the
renderer's default hair colour, and the median colour found on the tuning photos, the same
for everyone). Tables + JSON + a contact sheet (photo | avatar with the chosen hair).
``--pad K`` puts each photo in a canvas K times its size (a head filling less of it).

    python scripts/bench_hair_choice.py [--out out/bench_hair_choice] [--limit N] [--pad 3]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from avatars.builder import AvatarBuilder, AvatarConfig, AvatarError, decode_photo
from avatars.exposure import exposed
from avatars.hair.photo import hair_colour, mask_iou
from avatars.hair.styles import STYLE_TRAITS, list_styles
from engines.evaluation.over_photo import render_over_photo
from engines.evaluation.tables import fmt
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.render.hair import DEFAULT_COLOUR

ROOT = Path(__file__).resolve().parent.parent
LABELS = ROOT / "tests" / "data" / "photo_hair_labels.csv"
BEFORE = ROOT / "tests" / "data" / "hair_choice_before.json"
ATTRIBUTES = ("length", "tied", "fringe", "bald")
TUNED_MAX_ID = 61  # London Set ids up to this one tune the thresholds; the rest is held out


def read_labels(path: Path = LABELS) -> list[dict[str, str]]:
    """The label rows: photo (relative to the faces folder), length, tied, fringe, texture."""
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def is_tuning(photo: str) -> bool:
    """Whether a labelled photo is one the thresholds were set on."""
    name = Path(photo).name
    return name.startswith("london_") and int(name.split("_")[1]) <= TUNED_MAX_ID


def style_attributes(style: str | None) -> dict[str, str]:
    """A chosen style's attributes in the labels' terms (no style: bald)."""
    if style is None:
        return {"length": "bald", "tied": "no", "fringe": "no", "bald": "yes"}
    t = STYLE_TRAITS[style]
    return {"length": t.length, "tied": "yes" if t.tied else "no",
            "fringe": "yes" if t.fringe else "no", "bald": "no"}


def label_attributes(row: dict[str, str]) -> dict[str, str]:
    return {"length": row["length"], "tied": row["tied"], "fringe": row["fringe"],
            "bald": "yes" if row["length"] == "bald" else "no"}


def choose(model: ICTFaceModel, builder: AvatarBuilder, image: np.ndarray):
    """The builder's steps up to the hair: (the photo as the builder takes it (a dim one
    brightened), fit, texture, hair or None, sRGB, hair mask)."""
    lms, _ = builder.landmarks(image)
    image, _ = exposed(image, lms)
    h, w = image.shape[:2]
    fit = builder.fitter.fit([(lms, w, h)])[0]
    with torch.no_grad():
        identity = model.prepare_identity(torch.from_numpy(fit.shape[None].copy()))
        posed = model.forward_prepared(
            identity, torch.from_numpy(fit.expression[None].copy()), torch.zeros(1, 6)
        )[0].numpy()
    texture, hair, rgb = builder.appearance(image, lms, fit, identity[0].numpy(), posed)
    return image, fit, texture, hair, rgb, hair_colour(image, lms)[1]


def read_photo(photo: str, pad: float = 1.0) -> np.ndarray:
    """A labelled photo (RGB), or with ``pad`` > 1 the photo in the middle of a canvas
    ``pad`` times its size: the same head filling less of the picture, as in a photo taken
    from farther away. The canvas is filled with pixels drawn at random (seed 0) from the
    photo's 5-pixel rim, so more of the same background's colours surround it."""
    image = decode_photo((asset_root() / "faces" / photo).read_bytes())
    if pad <= 1.0:
        return image
    h, w = image.shape[:2]
    dy, dx = round(h * (pad - 1) / 2), round(w * (pad - 1) / 2)
    rim = np.concatenate([image[:5].reshape(-1, 3), image[-5:].reshape(-1, 3),
                          image[:, :5].reshape(-1, 3), image[:, -5:].reshape(-1, 3)])
    pick = np.random.default_rng(0).integers(0, len(rim), (h + 2 * dy, w + 2 * dx))
    canvas = rim[pick]
    canvas[dy : dy + h, dx : dx + w] = image
    return canvas


def evaluate_photo(model: ICTFaceModel, builder: AvatarBuilder, row: dict[str, str],
                   typical: tuple[float, float, float], pad: float = 1.0
                   ) -> tuple[dict, np.ndarray]:
    """One labelled photo's choice, agreement, IoU and colour errors (the colour found,
    :data:`DEFAULT_COLOUR` and ``typical``); and its contact-sheet pair."""
    image = read_photo(row["photo"], pad)
    image, fit, texture, hair, rgb, mask = choose(model, builder, image)
    strands = None if hair is None else hair.positions
    bare = render_over_photo(model, fit, texture, image)
    drawn = render_over_photo(model, fit, texture, image, strands, rgb or DEFAULT_COLOUR)
    shown = (np.abs(drawn.astype(int) - bare).sum(2) > 0) if strands is not None else None
    chosen = style_attributes(None if hair is None else hair.name)
    truth = label_attributes(row)
    errors = {}
    if shown is not None:
        for name, colour in (("found", rgb), ("default", DEFAULT_COLOUR), ("typical", typical)):
            other = drawn if name == "found" else render_over_photo(
                model, fit, texture, image, strands, colour)
            errors[name] = colour_error(image, other, shown & mask) if colour else None
    out = {
        "photo": row["photo"], "tuning": is_tuning(row["photo"]),
        "style": None if hair is None else hair.name,
        "label": truth, "chosen": chosen,
        **{f"{a}_ok": chosen[a] == truth[a] for a in ATTRIBUTES},
        "iou": None if shown is None else mask_iou(mask, shown),
        "colour": rgb, "colour_error": errors,
    }
    return out, sheet_pair(image, drawn, out)


MIN_COLOUR_PIXELS = 50  # fewer pixels of hair in both: no colour error for the photo


def colour_error(photo: np.ndarray, drawn: np.ndarray, region: np.ndarray) -> float | None:
    """ΔE (CIE76) between the median CIELAB colours of two RGB images (H, W, 3) uint8 over
    a region (H, W) bool; None when it has too few pixels."""
    if region.sum() < MIN_COLOUR_PIXELS:
        return None
    medians = []
    for image in (photo, drawn):
        lab = cv2.cvtColor(image[region][None], cv2.COLOR_RGB2LAB)[0].astype(float)
        medians.append(np.median(lab * [100 / 255, 1, 1], 0))
    return float(np.linalg.norm(medians[0] - medians[1]))


def typical_colour(builder: AvatarBuilder, labels: list[dict[str, str]], pad: float = 1.0
                   ) -> tuple[float, float, float]:
    """The median hair colour found on the tuning photos (a colour baseline)."""
    found = []
    for row in labels:
        if is_tuning(row["photo"]):
            image = read_photo(row["photo"], pad)
            try:
                lms = builder.landmarks(image)[0]
            except AvatarError:
                continue
            rgb = hair_colour(exposed(image, lms)[0], lms)[0]
            found += [rgb] if rgb else []
    return tuple(float(c) for c in np.median(found, 0))


def sheet_pair(image: np.ndarray, drawn: np.ndarray, row: dict) -> np.ndarray:
    """(200, 400, 3) the photo and the avatar with its hair, captioned."""
    tiles = []
    for x in (image, drawn):
        s = 200 / max(x.shape[:2])
        t = cv2.resize(x, (round(x.shape[1] * s), round(x.shape[0] * s)),
                       interpolation=cv2.INTER_AREA)
        tile = np.full((200, 200, 3), 255, np.uint8)
        tile[: t.shape[0], : t.shape[1]] = t
        tiles.append(tile)
    pair = np.concatenate(tiles, 1)
    lab = row["label"]
    bad = [a for a in ATTRIBUTES if not row[f"{a}_ok"]]
    lines = [Path(row["photo"]).stem[-22:],
             f"label {lab['length']} tied={lab['tied']} fringe={lab['fringe']}",
             f"-> {row['style']}" + (f"  x {','.join(bad)}" if bad else "  ok")]
    for i, text in enumerate(lines):
        cv2.putText(pair, text, (4, 14 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (255, 255, 255), 3)
        cv2.putText(pair, text, (4, 14 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (200, 0, 0) if bad else (0, 110, 0), 1)
    return pair


def baselines(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Agreement of reference choices: the set's most common label per attribute, a
    uniformly random style (exact expectation over the styles), and the best a choice
    among these styles could do (per photo the style, or none, agreeing most with the
    labels: some labels, e.g. medium tied hair, no style has)."""
    styles = [style_attributes(s) for s in list_styles()]
    options = [*styles, style_attributes(None)]
    majority, random, best = {}, {}, {}
    for a in ATTRIBUTES:
        values = [r["label"][a] for r in rows]
        common = max(set(values), key=values.count)
        majority[a] = values.count(common) / len(values)
        random[a] = float(np.mean([[s[a] == v for s in styles] for v in values]))
    ceiling = [max(options, key=lambda o, r=r: agreement(o, r["label"])) for r in rows]
    for a in ATTRIBUTES:
        best[a] = float(np.mean([o[a] == r["label"][a] for o, r in zip(ceiling, rows,
                                                                        strict=True)]))
    return {"majority": majority, "random_style": random, "best_style": best}


def agreement(chosen: dict[str, str], label: dict[str, str]) -> int:
    """The builder's weighing of traits: 2 length, 2 tied, 1 fringe; bald decides first."""
    if (chosen["bald"] == "yes") != (label["bald"] == "yes"):
        return -1
    return (2 * (chosen["length"] == label["length"]) + 2 * (chosen["tied"] == label["tied"])
            + (chosen["fringe"] == label["fringe"]))


def summarize(rows: list[dict]) -> dict:
    """Agreement per attribute, mean IoU and the baselines of a set of photo rows."""
    if not rows:
        return {}
    ious = [r["iou"] for r in rows if r["iou"] is not None]
    errors = {}
    for name in ("found", "default", "typical"):
        e = [r["colour_error"].get(name) for r in rows]
        e = [x for x in e if x is not None]
        errors[name] = {"median": float(np.median(e)), "mean": float(np.mean(e)),
                        "photos": len(e)} if e else None
    return {
        "photos": len(rows),
        "agreement": {a: float(np.mean([r[f"{a}_ok"] for r in rows])) for a in ATTRIBUTES},
        "iou": float(np.mean(ious)) if ious else None,
        "colour_error": errors,
        **baselines(rows),
    }


def groups(rows: list[dict]) -> dict[str, dict]:
    return {"tuning": summarize([r for r in rows if r["tuning"]]),
            "held_out": summarize([r for r in rows if not r["tuning"]]),
            "all": summarize(rows)}


def print_table(now: dict, before: dict | None) -> None:
    """One markdown table per photo set: before, now, and the two baselines."""
    for name, s in now.items():
        if not s:
            continue
        b = (before or {}).get(name) or {}
        print(f"\n{name} ({s['photos']} photos)\n")
        print("| attribute | before | now | most common label | random style | best style |")
        print("|---|---|---|---|---|---|")
        for a in ATTRIBUTES:
            old = b.get("agreement", {}).get(a)
            print(f"| {a} | {'n/a' if old is None else f'{old:.0%}'} | "
                  f"{s['agreement'][a]:.0%} | {s['majority'][a]:.0%} | "
                  f"{s['random_style'][a]:.0%} | {s['best_style'][a]:.0%} |")
        print(f"| mean IoU (hair vs mask) | {fmt(b.get('iou'))} | {fmt(s['iou'])} | | | |")
    print("\nHair colour, ΔE (CIELAB) of the avatar's hair against the photo's, median / mean "
          "(photos)\n")
    print("| photos | colour found | default colour | tuning photos' median colour |")
    print("|---|---|---|---|")
    for name, s in now.items():
        cells = [(s.get("colour_error") or {}).get(k) for k in ("found", "default", "typical")]
        print(f"| {name} | " + " | ".join(
            "–" if c is None else f"{c['median']:.1f} / {c['mean']:.1f} ({c['photos']})"
            for c in cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/bench_hair_choice")
    ap.add_argument("--before", default=str(BEFORE), help="JSON of a run before the change")
    ap.add_argument("--sheet", default="out/hair_choice_sheet.png")
    ap.add_argument("--limit", type=int, default=0, help="at most N photos (0 = all)")
    ap.add_argument("--pad", type=float, default=1.0,
                    help="each photo in a canvas this many times its size (pixels of its "
                         "rim round it): the head filling less of the picture")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ICTFaceModel()
    builder = AvatarBuilder(model, AvatarConfig(texture_size=256))  # texture: bald test only
    rows, pairs = [], []
    labels = read_labels()
    typical = typical_colour(builder, labels, args.pad)
    missed = []  # photos in which no face was found: no avatar
    for label in labels[: args.limit or None]:
        try:
            row, pair = evaluate_photo(model, builder, label, typical, args.pad)
        except AvatarError as exc:
            print(f"{label['photo']:<52} {exc}", flush=True)
            missed.append(label["photo"])
            continue
        print(f"{row['photo']:<52} {row['style']!s:<20} "
              + " ".join(f"{a}={'ok' if row[f'{a}_ok'] else 'x'}" for a in ATTRIBUTES), flush=True)
        rows.append(row)
        pairs.append(pair)
    builder.close()
    before_path = Path(args.before)
    before = json.loads(before_path.read_text())["summary"] if before_path.exists() else None
    summary = groups(rows)
    (out / "bench_hair_choice.json").write_text(json.dumps(
        {"summary": summary, "before": before, "typical_colour": typical, "rows": rows,
         "no_face": missed}, indent=2))
    pairs += [np.full_like(pairs[0], 255)] * (-len(pairs) % 4)
    sheet = np.concatenate([np.concatenate(pairs[i : i + 4], 1)
                            for i in range(0, len(pairs), 4)], 0)
    Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.sheet, sheet[:, :, ::-1])
    print_table(summary, before)
    print(f"\nno face found (no avatar): {len(missed)} photos {missed}")
    print(f"\nwrote {out / 'bench_hair_choice.json'} and {args.sheet}")


if __name__ == "__main__":
    main()
