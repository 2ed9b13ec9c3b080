"""A photo's exposure and the avatar's skin: does the same person get the same skin from a
dim webcam photo and a well-lit one, while every well-exposed photo is left alone?

Per portrait under the assets' faces/: MediaPipe's landmarks, then each way of restoring
the exposure gives a gain (linear light, :func:`avatars.exposure.apply_gain`), and the
face's median colour (CIELAB, inside the face oval) is read from the photo so brightened:

- none: the photo as taken (what avatars were made from before);
- whites: auto-levels, the photo's brightest 1 % (mean of three channels) to white;
- skin: the face's median lightness to the London Set's median face (every face the same
  lightness: the unfair baseline, which makes dark skin light);
- sclera: :mod:`avatars.exposure` (when the eyes' whites are dark: the whites' gain,
  bounded by what lifts the sclera to the floor and to the typical reading).

Measures, per method:
- one person (lisa_cc0: four dim webcam photos; zoom_cc0: four well-lit ones, the
  reference): CIELAB ΔE and ΔL of each lisa photo's face from the zoom photos' mean face
  as taken (lower is better; the person's skin should not depend on the room's light);
- the London Set and the NASA portrait (studio photos, every skin tone): how far the face
  moves from the photo as taken, mean and largest |ΔL| (0 is right: they are exposed well);
- the London Set darkened three stops on purpose (``DARKER``, a truth known exactly): how
  far each method leaves the face from the photo before darkening, mean |ΔL|, and on the
  lightest and the darkest third of the faces.

Then the avatars themselves for the one person: built with the exposure restored
(as `vn3d avatar build` does now) and without it, rendered as the live page shows them
(front, at rest, no hair), the rendered face's colour against the same reference. Table +
JSON + a sheet (photo | avatar before | avatar after).

    python scripts/bench_exposure.py [--out out/bench_exposure]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

import avatars.builder as builder_module
from avatars.builder import AvatarBuilder, AvatarConfig, decode_photo
from avatars.exposure import (
    apply_gain,
    face_lab,
    luminance_of_l,
    read_exposure,
    whites_gain,
)
from engines.evaluation.tables import fmt
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root, sha256_bytes
from engines.retarget.retargeter import Retargeter

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
DIM, REFERENCE = "lisa_cc0", "zoom_cc0"  # the same woman: dim webcam photos, well-lit ones
DARKER = 0.125  # three stops, in linear light
Methods = dict[str, Callable[[np.ndarray, np.ndarray], float]]  # name -> (photo, landmarks) -> gain


def method_gains(skin_l: float) -> Methods:
    """Each method as (photo, landmarks) -> gain."""
    return {
        "none": lambda image, lms: 1.0,
        "whites": lambda image, lms: whites_gain(image),
        "skin": lambda image, lms: luminance_of_l(skin_l)
        / max(luminance_of_l(float(face_lab(image, lms)[0])), 1e-4),
        "sclera": lambda image, lms: read_exposure(image, lms).gain,
    }


def render_face(model: ICTFaceModel, builder: AvatarBuilder, image: np.ndarray,
                name: str) -> tuple[np.ndarray, np.ndarray]:
    """The avatar of a photo rendered as the live page shows it (front, at rest), and its
    face's median CIELAB read the same way as the photo's."""
    avatar = builder.build(image, name, sha256_bytes(image.tobytes()))
    with Retargeter(model, avatar.target()) as r:
        frame = np.ascontiguousarray(
            r.render_parameters(np.zeros(model.n_expression), np.zeros(3)).image)
    return frame, face_lab(frame, builder.landmarks(frame)[0])


def photo_rows(read: dict[Path, tuple[np.ndarray, np.ndarray]], methods: Methods) -> dict:
    """Per photo: its set, its face as taken, the exposure reading, and per method the gain
    and the face brightened by it."""
    rows: dict[str, dict] = {}
    for path, (image, lms) in read.items():
        row = {"set": path.parent.name, "face_lab": face_lab(image, lms).tolist(),
               "exposure": read_exposure(image, lms).__dict__}
        for name, gain_of in methods.items():
            gain = gain_of(image, lms)
            row[name] = {"gain": gain, "face_lab": face_lab(apply_gain(image, gain), lms).tolist()}
        rows[path.name] = row
    return rows


def darkened_errors(read: dict[Path, tuple[np.ndarray, np.ndarray]], london: list[Path],
                    methods: Methods) -> dict[str, dict[str, float]]:
    """Per method, on the London photos darkened ``DARKER``: how far the restored face's L
    is from the photo's before darkening (all, its bias, darkest and lightest third)."""
    out = {}
    for name, gain_of in methods.items():
        truth, restored = np.array([
            (face_lab(image, lms)[0],
             face_lab(apply_gain(dark, gain_of(dark, lms)), lms)[0])
            for image, lms in (read[p] for p in london)
            for dark in [apply_gain(image, DARKER)]
        ]).T
        error, order, third = np.abs(restored - truth), np.argsort(truth), len(truth) // 3
        out[name] = {
            "darkened_error_l": float(error.mean()),
            "darkened_bias_l": float((restored - truth).mean()),
            "darkened_error_l_darkest": float(error[order[:third]].mean()),
            "darkened_error_l_lightest": float(error[order[-third:]].mean()),
        }
    return out


def summarize(rows: dict, reference: np.ndarray, methods: Methods) -> dict[str, dict]:
    """Per method: the lisa faces against the reference, how far the studio photos moved."""
    summary = {}
    kept = [r for r in rows.values() if r["set"] in ("london_set", "public_domain")]
    for name in methods:
        dim = np.array([r[name]["face_lab"] for r in rows.values() if r["set"] == DIM])
        moved = np.array([abs(r[name]["face_lab"][0] - r["face_lab"][0]) for r in kept])
        summary[name] = {
            "dim_delta_e": float(np.linalg.norm(dim - reference, axis=1).mean()),
            "dim_delta_l": float((dim[:, 0] - reference[0]).mean()),
            "studio_moved_l_mean": float(moved.mean()), "studio_moved_l_max": float(moved.max()),
            "studio_changed": int((moved > 0.5).sum()), "studio_photos": len(kept),
        }
    return summary


def print_methods(summary: dict[str, dict]) -> None:
    print("\n| method | lisa faces ΔE to the same person well lit | ΔL | studio photos moved, "
          "mean / max \\|ΔL\\| | studio photos changed (> 0.5 L) | London darkened 3 stops: "
          "\\|ΔL\\| from before, all (bias) / darkest third / lightest third |")
    print("|---|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {fmt(s['dim_delta_e'], 1)} | {s['dim_delta_l']:+.1f} | "
              f"{fmt(s['studio_moved_l_mean'], 1)} / {fmt(s['studio_moved_l_max'], 1)} | "
              f"{s['studio_changed']} of {s['studio_photos']} | "
              f"{fmt(s['darkened_error_l'], 1)} ({s['darkened_bias_l']:+.1f}) / "
              f"{fmt(s['darkened_error_l_darkest'], 1)} / "
              f"{fmt(s['darkened_error_l_lightest'], 1)} |")


def one_persons_avatars(model: ICTFaceModel, builder: AvatarBuilder,
                        read: dict[Path, tuple[np.ndarray, np.ndarray]]
                        ) -> tuple[dict[str, dict], list[np.ndarray]]:
    """The one person's avatars built from the photo as taken (before) and as the builder
    takes it now (after): their rendered faces' CIELAB, and sheet strips."""
    renders, strips = {}, []
    for path in tqdm([p for p in read if p.parent.name in (DIM, REFERENCE)],
                     desc="avatars", unit="avatar"):
        image, _ = read[path]
        now = builder_module.exposed
        builder_module.exposed = lambda img, lms: (img, None)
        try:
            before, lab_before = render_face(model, builder, image, path.stem)
        finally:
            builder_module.exposed = now
        after, lab_after = render_face(model, builder, image, path.stem)
        renders[path.name] = {"set": path.parent.name, "before": lab_before.tolist(),
                              "after": lab_after.tolist()}
        h = 300
        photo = cv2.resize(image, (round(h * image.shape[1] / image.shape[0]), h))
        strips.append(np.concatenate([photo, cv2.resize(before, (h, h)),
                                      cv2.resize(after, (h, h))], 1))
    return renders, strips


def print_avatars(renders: dict[str, dict], rows: dict) -> np.ndarray:
    """The lisa avatars' table; returns the well-lit avatars' mean rendered face."""
    ref = np.mean([r["after"] for r in renders.values() if r["set"] == REFERENCE], 0)
    print("\n| lisa avatar | face L before | after | ΔE to the person's well-lit avatars, "
          "before | after |")
    print("|---|---|---|---|---|")
    for name, r in renders.items():
        if r["set"] == DIM:
            b, a = np.array(r["before"]), np.array(r["after"])
            print(f"| {Path(name).stem} (gain {rows[name]['sclera']['gain']:.2f}) | "
                  f"{b[0]:.1f} | {a[0]:.1f} | {np.linalg.norm(b - ref):.1f} | "
                  f"{np.linalg.norm(a - ref):.1f} |")
    print(f"(the well-lit avatars' mean rendered face: {np.round(ref, 1).tolist()})")
    return ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/bench_exposure")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = ICTFaceModel()
    builder = AvatarBuilder(model, AvatarConfig(hair="none"))
    read = {}
    for path in tqdm(sorted(p for p in (asset_root() / "faces").rglob("*")
                            if p.suffix.lower() in PHOTO_SUFFIXES), desc="photos", unit="photo"):
        image = decode_photo(path.read_bytes())
        read[path] = (image, builder.landmarks(image)[0])
    london = [p for p in read if p.parent.name == "london_set"]
    skin_l = float(np.median([face_lab(*read[p])[0] for p in london]))
    methods = method_gains(skin_l)
    rows = photo_rows(read, methods)
    reference = np.mean([r["face_lab"] for r in rows.values() if r["set"] == REFERENCE], 0)
    summary = summarize(rows, reference, methods)
    for name, errors in darkened_errors(read, london, methods).items():
        summary[name].update(errors)
    print(f"\nreference (zoom_cc0 as taken, mean face CIELAB): {np.round(reference, 1).tolist()}; "
          f"London median face L {skin_l:.1f}")
    print_methods(summary)
    renders, strips = one_persons_avatars(model, builder, read)
    ref_render = print_avatars(renders, rows)
    cv2.imwrite(str(out / "exposure_sheet.png"), np.concatenate(strips, 0)[:, :, ::-1])
    (out / "bench_exposure.json").write_text(json.dumps(
        {"summary": summary, "reference": reference.tolist(), "london_median_face_l": skin_l,
         "photos": rows, "avatars": renders, "avatar_reference": ref_render.tolist()},
        indent=2))


if __name__ == "__main__":
    main()
