"""Reading a built dataset (:class:`Dataset`): subjects, pairs T(I, M), parameters and live
targets; names are checked against the manifest and must resolve inside the folder,
corrupt arrays and missing files raise :class:`DatasetError`. Layout: ``build.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from avatars.hair.strands import GRID, POINTS
from engines.emotion.facs import LABELS
from engines.face.model import FaceModel
from engines.render.hair import DEFAULT_COLOUR
from engines.retarget.target import Target

SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FORMAT_VERSION = 1


class DatasetError(ValueError):
    """A dataset folder, file or name is missing, corrupt or not allowed; says which."""


@dataclass(frozen=True)
class Pair:
    """T(I, M): the photo (None when the expression was synthesised) and the model."""

    subject: str
    expression: str
    image: Path | None
    mesh: Path
    render: Path
    synthesised: bool


class Dataset:
    """A built dataset folder, checked on opening; names never leave the folder."""

    def __init__(self, path: Path | str) -> None:
        self.root = Path(path).resolve()
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise DatasetError(f"{self.root} has no manifest.json: not a dataset")
        try:
            self.manifest = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{manifest} is not valid JSON: {exc}") from exc
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"{manifest}: format_version must be {FORMAT_VERSION}")

    @property
    def subjects(self) -> list[str]:
        return sorted(k for k, v in self.manifest.get("subjects", {}).items()
                      if isinstance(v, dict) and v.get("status") == "done")

    @property
    def model(self) -> str:
        """The face model its subjects are built on (ICT for datasets from before the
        field)."""
        return str(self.manifest.get("model", "ict"))

    @property
    def expressions(self) -> tuple[str, ...]:
        return LABELS

    def folder(self, subject: str) -> Path:
        if not isinstance(subject, str) or not SUBJECT_PATTERN.match(subject) \
                or subject not in self.subjects:
            raise DatasetError(f"no subject {str(subject)[:64]!r} in {self.root}")
        path = (self.root / "subjects" / subject).resolve()
        if path.parent != self.root / "subjects" or not path.is_dir():
            raise DatasetError(f"subject {subject!r} lies outside {self.root}")
        return path

    def pair(self, subject: str, expression: str) -> Pair:
        if expression not in LABELS:
            raise DatasetError(f"unknown expression {expression!r}; one of {', '.join(LABELS)}")
        folder = self.folder(subject)
        entry = self.manifest["subjects"][subject]
        photo = entry.get("photos", {}).get(expression)
        return Pair(subject, expression, Path(photo) if photo else None,
                    folder / f"{expression}.obj", folder / f"{expression}.png",
                    expression in entry.get("synthesised", []))

    def parameters(self, subject: str, expression: str) -> tuple[np.ndarray, np.ndarray]:
        """(ψ (53,), θ (6,)) of a subject's expression, checked."""
        if expression not in LABELS:
            raise DatasetError(f"unknown expression {expression!r}")
        data = load_checked(self.folder(subject) / f"{expression}.npz",
                            {"expression": (53,), "pose": (6,)})
        return data["expression"], data["pose"]

    def shape(self, subject: str, model: FaceModel) -> np.ndarray:
        """The subject's identity β (n_shape,), checked."""
        path = self.folder(subject) / "identity.npz"
        return load_checked(path, {"shape": (model.n_shape,)})["shape"]

    def target(self, subject: str, model: FaceModel) -> Target:
        """A retargeting target with this subject's identity, texture and hair."""
        folder = self.folder(subject)
        shape = self.shape(subject, model)
        texture = cv2.imread(str(folder / "texture.png"), cv2.IMREAD_COLOR)
        if texture is None or texture.shape[1] % texture.shape[0]:
            raise DatasetError(f"{folder / 'texture.png'} is missing or not a UV texture")
        hair, rgb = None, DEFAULT_COLOUR
        if (folder / "hair.npz").is_file():  # optional: subjects with no hair have none
            arrays = load_checked(folder / "hair.npz",
                                  {"positions": (GRID, GRID, POINTS, 3), "rgb": (3,)})
            hair, rgb = arrays["positions"].astype(np.float32), tuple(map(float, arrays["rgb"]))
        iris = None
        if (folder / "eyes.npz").is_file():  # optional: from the source photo's irises
            iris = tuple(map(float, np.clip(load_checked(folder / "eyes.npz",
                                                         {"rgb": (3,)})["rgb"], 0.0, 1.0)))
        return Target(f"{subject}", torch.from_numpy(shape[None].astype(np.float32)),
                      texture[:, :, ::-1].copy(), hair, rgb, iris)


def load_checked(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in shapes}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DatasetError(f"{path} is missing or corrupt: {exc}") from exc
    for k, shape in shapes.items():
        if out[k].shape != shape or not np.isfinite(out[k]).all():
            raise DatasetError(f"{path}: {k} must be {shape} finite values")
    return out
