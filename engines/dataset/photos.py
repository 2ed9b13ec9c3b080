r"""The photos a dataset is built from (:func:`find_photos`), three ways:

- folders: ``PHOTOS/SUBJECT/EXPRESSION.jpg`` (the default);
- a pattern: a regular expression with the named groups ``subject`` and ``expression``,
  matched against each photo's path relative to PHOTOS (``/`` separators), for flat or
  V-Face-style folders, e.g. ``london_(?P<subject>\d+)_(?P<expression>[a-z]+)\.jpg``;
- a CSV with the columns ``subject,expression,path`` (paths relative to the CSV's folder).

Expressions are one of :data:`LABELS` or a common alias (``smiling``, ``fear``, KDEF's
``HA``/``AF``/..., see :data:`EXPRESSION_ALIASES`); photos of other expressions are
ignored, and doubles, bad names and CSV rows that point nowhere are listed under
``skipped_inputs`` in the manifest. Formats: .jpg, .jpeg, .png, .webp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engines.dataset.loader import SUBJECT_PATTERN, DatasetError
from engines.emotion.facs import LABELS

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")




EXPRESSION_ALIASES = {
    **{label: label for label in LABELS},
    "smile": "happy", "smiling": "happy", "happiness": "happy", "joy": "happy",
    "sadness": "sad", "fear": "afraid", "fearful": "afraid", "scared": "afraid",
    "anger": "angry", "surprise": "surprised", "disgust": "disgusted",
    # KDEF / AKDEF codes
    "ne": "neutral", "ha": "happy", "sa": "sad", "af": "afraid", "an": "angry",
    "su": "surprised", "di": "disgusted",
}


NESTED_PATTERN = r"(?P<subject>[^/]+)/(?P<expression>[^/]+)\.[^./]+"


SAMPLE_PATTERN = r"(?P<subject>london_\d+)_(?P<expression>neutral|smiling)\.jpg"


def expression_label(text: str) -> str | None:
    """One of :data:`LABELS` for an expression name or alias, else None."""
    return EXPRESSION_ALIASES.get(text.strip().lower())


@dataclass
class PhotoIndex:
    """subject -> {expression: photo}, and what was left out of it (with why)."""

    subjects: dict[str, dict[str, Path]]
    skipped: list[str]

    def add(self, subject: str, expression: str, path: Path, where: str) -> None:
        label = expression_label(expression)
        if label is None:
            return  # another expression than the seven: not part of the dataset
        if not SUBJECT_PATTERN.match(subject):
            self.skipped.append(f"{where}: subject name {subject[:64]!r} is not allowed "
                                "(letters, digits, _ . -; at most 64)")
        elif label in self.subjects.get(subject, {}):
            self.skipped.append(f"{where}: a second {label} photo of {subject} "
                                f"(kept {self.subjects[subject][label].name})")
        else:
            self.subjects.setdefault(subject, {})[label] = path


def find_photos(folder: Path, pattern: str | None = None, csv: Path | None = None) -> PhotoIndex:
    """The photos of each subject, from folders (default), a ``pattern`` or a ``csv``."""
    index = PhotoIndex({}, [])
    if csv is not None:
        import csv as csvlib

        csv = Path(csv)
        with open(csv, newline="", encoding="utf-8") as f:
            reader = csvlib.DictReader(f)
            if not {"subject", "expression", "path"} <= set(reader.fieldnames or ()):
                raise DatasetError(f"{csv}: needs the columns subject,expression,path")
            for n, row in enumerate(reader, start=2):
                path = (csv.parent / (row["path"] or "")).resolve()
                if path.suffix.lower() not in PHOTO_SUFFIXES or not path.is_file():
                    index.skipped.append(f"{csv.name}:{n}: no photo at {row['path']!r}")
                else:
                    index.add(row["subject"] or "", row["expression"] or "", path,
                              f"{csv.name}:{n}")
    else:
        regex = re.compile(pattern or NESTED_PATTERN)
        if not {"subject", "expression"} <= set(regex.groupindex):
            raise DatasetError("the pattern needs the named groups subject and expression")
        folder = Path(folder)
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            m = regex.fullmatch(rel)
            if m and path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES:
                index.add(m["subject"], m["expression"], path, rel)
    index.subjects = {k: index.subjects[k] for k in sorted(index.subjects)}
    return index
