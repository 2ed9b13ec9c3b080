"""ERM and emotion detector figures: the default ERM's validation MAE per output group, and
the detector on the London Set (neutral photos should read neutral, smiling ones happy),
without and with each person's neutral face as calibration (read then by the detector for
calibrated ψ). The calibration reads a shifted, rescaled crop of the neutral photo, not the
scored photo itself, so "neutral reads neutral" is not true by construction. The detectors'
resting offsets were measured on the tuning photos (London ids ≤ 061); the others are held
out, and each row is also given for the two apart. Then speech, which is no emotion: the
live emotion mode (VIDEO mode, the tracker's filter, the detector for ψ as read, the
label's hysteresis) on the GRID clips, and the share of frames whose label is not neutral
(clips 0-3, where the jaw's resting level was measured, and 4-7 apart). Table + JSON.

    python scripts/bench_emotion.py [--reader mediapipe] [--out out/bench_emotion.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import cv2
import numpy as np

from engines.emotion.erm import evaluate, split_by_subject
from engines.emotion.facs import LABELS, facs_records
from engines.emotion.models import EmotionMode, EmotionModels, default_emotion_models
from engines.face.ict import ICTFaceModel
from engines.files.assets import asset_root
from engines.tracking.tracker import (
    DEFAULT_READER,
    READERS,
    FaceTracker,
    TrackerConfig,
    from_neutral,
)

TUNING_LAST = 61  # London ids up to this one were looked at while tuning (the rest held out)


def calibration_view(bgr: np.ndarray) -> np.ndarray:
    """Another view of the same face: a crop of 90 % of the photo, shifted by 5 % right and
    down, scaled back to the photo's size."""
    h, w = bgr.shape[:2]
    crop = bgr[h // 20 : h // 20 + h * 9 // 10, w // 20 : w // 20 + w * 9 // 10]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)


def london_readings(model: ICTFaceModel, reader: str) -> dict[str, dict[str, np.ndarray]]:
    """person -> {"neutral": ψ, "smiling": ψ, "rest": ψ of the neutral photo's other view}."""
    out: dict[str, dict[str, np.ndarray]] = {}
    cfg = TrackerConfig(smoothing=None, video=False, reader=reader)
    with FaceTracker(model.expression_names, cfg) as tracker:
        for path in sorted((asset_root() / "faces" / "london_set").glob("london_*_*.jpg")):
            _, person, kind = path.stem.split("_")
            image = cv2.imread(str(path))
            result = tracker.process(image, 0.0, "bgr")
            if result.found:
                out.setdefault(person, {})[kind] = result.expression
            if kind == "neutral":
                rest = tracker.process(calibration_view(image), 0.0, "bgr")
                if rest.found:
                    out.setdefault(person, {})["rest"] = rest.expression
    return out


def speech_labels(model: ICTFaceModel, models: EmotionModels, reader: str) -> list[str]:
    """Per GRID clip, the live emotion mode's steady label per frame (first letters)."""
    out = []
    for clip in sorted((asset_root() / "video" / "grid_corpus").glob("*.mpg")):
        mode = EmotionMode(models, model.expression_names)
        labels = []
        with FaceTracker(model.expression_names, TrackerConfig(reader=reader)) as tracker, \
                av.open(str(clip)) as container:
            rate = float(container.streams.video[0].average_rate or 25)
            for i, frame in enumerate(container.decode(video=0)):
                result = tracker.process(frame, i / rate)
                if result.found:
                    labels.append(mode.step(result.expression, tracker.calibrated)[0][0])
        out.append("".join(labels))
    return out


def not_neutral(labels: list[str]) -> float:
    return round(float(np.mean([c != "n" for clip in labels for c in clip])), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reader", choices=READERS, default=DEFAULT_READER)
    ap.add_argument("--out", default="out/bench_emotion.json")
    args = ap.parse_args()
    model = ICTFaceModel()
    models = default_emotion_models(model.expression_names)
    records = facs_records(model.expression_names)
    val = split_by_subject(records, models.erm.config.val_fraction, models.erm.config.seed)[1]
    erm_val = evaluate(models.erm, val)

    readings = london_readings(model, args.reader)
    truth = {"neutral": "neutral", "smiling": "happy"}
    rows = []
    for person, kinds in readings.items():
        base = kinds.pop("rest", None)
        for kind, psi in kinds.items():
            raw = LABELS[int(models.detector.probabilities(psi).argmax())]
            cal = None
            if base is not None:
                calibrated = from_neutral(psi, base)
                cal = LABELS[int(models.calibrated_detector.probabilities(calibrated).argmax())]
            rows.append(
                {
                    "person": person,
                    "photo": kind,
                    "truth": truth[kind],
                    "raw": raw,
                    "calibrated": cal,
                }
            )

    def accuracy(key: str, kind: str | None = None, part: str | None = None) -> float:
        sel = [r for r in rows if (kind is None or r["photo"] == kind)
               and (part is None or (int(r["person"]) <= TUNING_LAST) == (part == "tuning"))]
        return round(float(np.mean([r[key] == r["truth"] for r in sel])), 3)

    acc = {
        k: {
            "all": accuracy(k),
            **{kind: accuracy(k, kind) for kind in truth},
            **{f"{kind} {part}": accuracy(k, kind, part) for kind in truth
               for part in ("tuning", "held out")},
        }
        for k in ("raw", "calibrated")
    }
    print(f"\nDefault ERM, validation subjects ({len(val)} records):")
    print("| ψ MAE | θ head MAE (deg) | θ gaze MAE (deg) |\n|---|---|---|")
    print(
        f"| {erm_val['psi_mae']:.4f} | {erm_val['theta1_mae_deg']:.2f} | "
        f"{erm_val['theta2_mae_deg']:.2f} |"
    )
    print(f"\nDetector on the London Set ({len(rows)} photos with a face, reader "
          f"{args.reader}):")
    print("| reading | all | neutral → neutral | smiling → happy | neutral, tuning / held out "
          "| smiling, tuning / held out |\n|---|---|---|---|---|---|")
    for k, label in (("raw", "raw ψ"), ("calibrated", "ψ minus the person's neutral")):
        a = acc[k]
        print(f"| {label} | {a['all']} | {a['neutral']} | {a['smiling']} | "
              f"{a['neutral tuning']} / {a['neutral held out']} | "
              f"{a['smiling tuning']} / {a['smiling held out']} |")
    confusions = sorted({r["raw"] for r in rows if r["raw"] != r["truth"]})
    print(f"\nraw mistakes read as: {', '.join(confusions) or 'none'}")
    speech = speech_labels(model, models, args.reader)
    shares = {"all": not_neutral(speech), "clips 0-3": not_neutral(speech[:4]),
              "clips 4-7": not_neutral(speech[4:])}
    print(f"\nSpeech, the live emotion mode on the {len(speech)} GRID clips: share of frames "
          "whose label is not neutral (lower is better)")
    print("| all | clips 0-3 | clips 4-7 | labels other than neutral (frames) |\n|---|---|---|---|")
    others = sorted(set("".join(speech)) - {"n"})
    counts = {c: sum(clip.count(c) for clip in speech) for c in others}
    print(f"| {shares['all']} | {shares['clips 0-3']} | {shares['clips 4-7']} | "
          f"{', '.join(f'{c}: {k}' for c, k in counts.items()) or 'none'} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"erm_val": erm_val, "london": acc, "rows": rows,
                               "speech": {"not_neutral": shares, "labels": speech}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
