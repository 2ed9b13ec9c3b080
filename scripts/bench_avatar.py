"""Avatar quality: build an avatar for every portrait in ../shared/assets/faces, render it
with the photo's fitted camera and expression, and compare with the photo over the face
region: PSNR, SSIM, LPIPS (SqueezeNet backbone) and dlib identity distance; plus build
time per stage. A photo the builder brightened (its eyes say it is under-exposed,
:mod:`avatars.exposure`) is compared as brightened, as the avatar is meant to show it.
Table + JSON + a contact sheet (photo | render | render with hair).

    python scripts/bench_avatar.py [--out out/bench_avatar] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from avatars.builder import STAGES, AvatarBuilder, decode_photo
from avatars.exposure import exposed
from engines.evaluation.image_metrics import (
    SAME_PERSON_THRESHOLD,
    FaceIdentity,
    Lpips,
    LpipsUnavailable,
    face_region_mask,
    psnr,
    ssim,
)
from engines.evaluation.over_photo import render_over_photo
from engines.evaluation.tables import fmt
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root, sha256_bytes

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def portraits() -> list[Path]:
    root = asset_root() / "faces"
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def load_lpips() -> Lpips | None:
    """The LPIPS metric, loaded; None (with a note) when it is unavailable."""
    lpips = Lpips()
    try:
        lpips.load()
    except LpipsUnavailable as exc:
        print(f"LPIPS unavailable: {exc}")
        return None
    return lpips


def evaluate_photo(model: ICTFaceModel, builder: AvatarBuilder, lpips: Lpips | None,
                   identity: FaceIdentity, path: Path) -> tuple[dict, np.ndarray] | None:
    """Build one photo's avatar and score its render; the row and its contact-sheet strip."""
    data = path.read_bytes()
    image = decode_photo(data)
    t0 = time.perf_counter()
    try:
        avatar = builder.build(image, path.stem, sha256_bytes(data))
    except ValueError as exc:
        print(f"{path.name}: skipped ({exc})")
        return None
    total = time.perf_counter() - t0
    # compared with the photo as the avatar takes it: a dim one brightened (avatars.exposure)
    image, exposure = exposed(image, builder.landmarks(image)[0])
    mask = face_region_mask(avatar.photo.landmarks_px, image.shape)
    render = render_over_photo(model, avatar.photo, avatar.texture, image)
    with_hair = render_over_photo(
        model, avatar.photo, avatar.texture, image,
        None if avatar.hair is None else avatar.hair.positions, avatar.hair_rgb,
    )
    row = {
        "photo": str(path.relative_to(asset_root())),
        "psnr": psnr(image, render, mask),
        "ssim": ssim(image, render, mask),
        "lpips": lpips(image, render, mask) if lpips else None,
        "identity": identity.distance(image, render),
        "hair": avatar.hair.name if avatar.hair else "none",
        "fit_px": avatar.photo.residual_px,
        "exposure_gain": exposure.gain,
        "total_s": total,
        **{f"{s}_ms": avatar.timings_ms[s] for s in STAGES},
    }
    small = [cv2.resize(x, (240, round(240 * x.shape[0] / x.shape[1])))
             for x in (image, render, with_hair)]
    return row, cv2.resize(np.concatenate(small, 1), (720, 240))  # [240, 720, 3]


def print_row(name: str, row: dict) -> None:
    print(f"{name:<28} PSNR {row['psnr']:5.2f}  SSIM {row['ssim']:.3f}  "
          f"LPIPS {row['lpips'] if row['lpips'] is None else round(row['lpips'], 3)}  "
          f"ID {row['identity'] if row['identity'] is None else round(row['identity'], 3)}"
          f"  {row['total_s']:.2f} s  hair {row['hair']}", flush=True)


def mean_of(rows: list[dict], key: str) -> float | None:
    """Mean of ``key`` over the rows that have it; None if none do."""
    vals = [r[key] for r in rows if r[key] is not None]
    return float(np.mean(vals)) if vals else None


def summarize(rows: list[dict]) -> dict:
    """Means of the metrics and stage timings, the same-person rate, and what measured them."""
    ids = [r["identity"] for r in rows if r["identity"] is not None]
    return {
        "photos": len(rows),
        **{k: mean_of(rows, k)
           for k in ("psnr", "ssim", "lpips", "identity", "fit_px", "total_s")},
        **{f"{s}_ms": mean_of(rows, f"{s}_ms") for s in STAGES},
        "identity_same_person_rate": float(np.mean(np.array(ids) < SAME_PERSON_THRESHOLD))
        if ids else None,
        "identity_found": len(ids),
        "lpips_backbone": "squeezenet1_1 (lpips v0.1, net='squeeze')",
        "identity_model": f"dlib ResNet (face-recognition-models), threshold "
                          f"{SAME_PERSON_THRESHOLD}",
    }


def write_outputs(out: Path, summary: dict, rows: list[dict], sheet: list[np.ndarray]) -> None:
    """The JSON, and contact sheets of 24 strips each."""
    (out / "bench_avatar.json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                      indent=2))
    for i in range(0, len(sheet), 24):
        cv2.imwrite(str(out / f"contact_sheet_{i // 24}.png"),
                    np.concatenate(sheet[i : i + 24], 0)[:, :, ::-1])


def print_summary(s: dict) -> None:
    print("\n| photos | PSNR dB | SSIM | LPIPS (squeeze) | identity distance | same person "
          "(< 0.6) | fit px | build s | " + " | ".join(f"{st} ms" for st in STAGES) + " |")
    print("|" + "---|" * (8 + len(STAGES)))
    print(f"| {s['photos']} | {fmt(s['psnr'], 2)} | {fmt(s['ssim'])} | {fmt(s['lpips'])} | "
          f"{fmt(s['identity'])} | {fmt(s['identity_same_person_rate'], 2)} "
          f"({s['identity_found']} found) | {fmt(s['fit_px'], 2)} | {fmt(s['total_s'], 2)} | "
          + " | ".join(fmt(s[f'{st}_ms'], 0) for st in STAGES) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/bench_avatar")
    ap.add_argument("--limit", type=int, default=0, help="at most N photos (0 = all)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ICTFaceModel()
    builder = AvatarBuilder(model)
    lpips, identity = load_lpips(), FaceIdentity()
    rows, sheet = [], []
    for path in portraits()[: args.limit or None]:
        result = evaluate_photo(model, builder, lpips, identity, path)
        if result is None:
            continue
        row, strip = result
        rows.append(row)
        print_row(path.name, row)
        sheet.append(strip)
    builder.close()
    summary = summarize(rows)
    write_outputs(out, summary, rows, sheet)
    print_summary(summary)
    print(f"\nwrote {out / 'bench_avatar.json'} and {out}/contact_sheet_*.png")


if __name__ == "__main__":
    main()
