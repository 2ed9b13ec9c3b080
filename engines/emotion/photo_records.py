"""ERM training records from a labelled photo folder (the paper's way).

Layouts: ``PHOTOS/SUBJECT/EMOTION.ext`` (e.g. ``v001/happy.jpg``), or a CSV with
``path,label`` rows (paths relative to the CSV; an optional third column names the
subject, else the parent folder does). Labels: neutral, happy, sad, afraid, angry,
surprised, disgusted (also accepted: fear/fearful, anger, surprise, disgust, smiling,
happiness, sadness). Each photo goes through the tracker (IMAGE mode); the record's
intensities are one-hot at 1.0 for its label (all zero for neutral). β stays zero until
avatars fit identities from photos.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from engines.emotion.facs import EMOTIONS, LABELS, Records
from engines.tracking.tracker import FaceTracker, TrackerConfig

ALIASES = {
    "fear": "afraid",
    "fearful": "afraid",
    "scared": "afraid",
    "anger": "angry",
    "mad": "angry",
    "surprise": "surprised",
    "disgust": "disgusted",
    "smiling": "happy",
    "smile": "happy",
    "happiness": "happy",
    "sadness": "sad",
}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def normalise_label(text: str) -> str:
    label = ALIASES.get(text.strip().lower(), text.strip().lower())
    if label not in LABELS:
        raise ValueError(f"unknown emotion label {text!r}; use one of {', '.join(LABELS)}")
    return label


def list_photos(source: str | Path) -> list[tuple[Path, str, str]]:
    """(path, subject, label) for a folder (SUBJECT/EMOTION.ext) or a CSV."""
    source = Path(source)
    items = []
    if source.is_file() and source.suffix.lower() == ".csv":
        with open(source, newline="") as fh:
            for row in csv.reader(fh):
                if not row or row[0].strip().lower() == "path":
                    continue
                path = (source.parent / row[0].strip()).resolve()
                subject = row[2].strip() if len(row) > 2 else path.parent.name
                items.append((path, subject, normalise_label(row[1])))
    elif source.is_dir():
        for path in sorted(source.glob("*/*")):
            if path.suffix.lower() in IMAGE_EXTS:
                items.append((path, path.parent.name, normalise_label(path.stem)))
    else:
        raise ValueError(f"{source} is neither a photo folder nor a .csv file")
    if not items:
        raise ValueError(f"no labelled photos found in {source} (SUBJECT/EMOTION.jpg or CSV)")
    return items


def records_from_photos(
    source: str | Path, expression_names: tuple[str, ...], n_shape: int = 100
) -> tuple[Records, list[str]]:
    """Track every photo; returns the records and the photos skipped (no face, unreadable)."""
    rows, skipped = [], []
    cfg = TrackerConfig(smoothing=None, video=False)
    with FaceTracker(expression_names, cfg) as tracker:
        for path, subject, label in tqdm(list_photos(source), desc="photos", unit="photo"):
            image = cv2.imread(str(path))
            if image is None:
                skipped.append(f"{path}: unreadable")
                continue
            result = tracker.process(image, 0.0, "bgr")
            if not result.found:
                skipped.append(f"{path}: no face")
                continue
            inten = np.zeros(6, np.float32)
            if label != "neutral":
                inten[EMOTIONS.index(label)] = 1.0
            pose = np.concatenate([result.rotation, np.zeros(3)]).astype(np.float32)
            rows.append((subject, label, inten, result.expression, pose))
    if not rows:
        raise ValueError(f"no face found in any photo of {source}")
    subject, label, inten, psi, pose = zip(*rows, strict=True)
    records = Records(
        np.array(subject),
        np.array(label),
        np.array(inten),
        np.array(psi, np.float32),
        np.array(pose),
        np.zeros((len(rows), n_shape), np.float32),
        tuple(expression_names),
    )
    return records, skipped
