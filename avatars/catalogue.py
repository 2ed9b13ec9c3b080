"""One target catalogue: every head a user can pick, under one id scheme that the CLI,
clips and the server share.

    default           the face model's mean head (on ICT with a plain skin texture)
    DATASET:SUBJECT   a subject of a built dataset: ``sample`` is the sample gallery
                      (``vn3d dataset sample``); otherwise the dataset's folder name (served
                      with ``vn3d serve --dataset DIR``) or, on the command line, its path
    <16 hex digits>   an avatar in the store (an upload: its owner's, unless made public)
    file:NAME         a target ``.npz`` a server was given (``vn3d serve --target-file``)
    FILE              command line only: a target ``.npz`` (``shape`` [, ``texture``]), an
                      avatar folder or ``.zip``

:class:`TargetCatalogue` is what a server offers (built-in and dataset targets for
everyone, store avatars by visibility); :func:`load_target` is the command line's, which
also takes files on this machine.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from avatars.files import read_avatar
from avatars.store import ID_PATTERN, AvatarStore, Entry, StoreError
from engines.dataset.build import sample_dataset_dir
from engines.dataset.loader import Dataset, DatasetError
from engines.face.model import FaceModel
from engines.retarget.target import Target, default_target

log = logging.getLogger("vn3d.targets")

SAMPLE = "sample"  # the sample gallery's dataset name in ids
FORMS = ("'default', DATASET:SUBJECT (e.g. sample:london_001), an avatar id, "
         "an avatar folder or .zip, or a target .npz")


class UnknownTargetError(ValueError):
    """No such target, or not one this user may see."""


class TargetCatalogue:
    """The targets one server offers: the default head, dataset subjects (everyone's) and
    the store's avatars of its face model (each visible to its owner, or to everyone when
    public)."""

    def __init__(self, model: FaceModel, store: AvatarStore | None = None) -> None:
        self.model = model
        # the sample gallery and strand hair are ICT's
        self.ict_head = model.name == "ict"
        self.store = store or AvatarStore()
        self.shared: dict[str, Target] = {"default": default_target(model)}
        self.names = {"default": "Default head"}
        self._avatars: dict[str, Target] = {}  # loaded store avatars, by id

    def add_dataset(self, dataset: Dataset, name: str | None = None) -> list[str]:
        """Every subject of ``dataset`` as ``NAME:SUBJECT`` (NAME: its folder's name)."""
        name = name or dataset.root.name
        if dataset.model != self.model.name:
            raise ValueError(f"dataset {name}: its subjects are {dataset.model} heads; serve "
                             f"it with --model {dataset.model}")
        ids = []
        for subject in dataset.subjects:
            tid = f"{name}:{subject}"
            self.shared[tid] = dataset.target(subject, self.model)
            self.names[tid] = f"{name}: {subject}"
            ids.append(tid)
        return ids

    def add_sample_gallery(self) -> list[str]:
        """The out-of-the-box gallery, when the set-up step built it. Without it (a hint in
        the log) or with a damaged one (a warning), the catalogue goes on without it."""
        folder = sample_dataset_dir()
        if not self.ict_head:
            log.info("no sample gallery on a %s head (its subjects are ICT heads)",
                     self.model.name)
            return []
        if not (folder / "manifest.json").is_file():
            log.info("no sample gallery at %s (build it: vn3d dataset sample)", folder)
            return []
        try:
            return self.add_dataset(Dataset(folder), SAMPLE)
        except DatasetError as exc:
            log.warning("sample gallery left out: %s (rebuild: vn3d dataset sample)", exc)
            return []

    def add_target_file(self, path: Path) -> str:
        """A target ``.npz`` as ``file:NAME`` (NAME: the file's stem), for everyone."""
        tid = f"file:{path.stem}"
        if tid in self.shared:
            raise ValueError(f"two target files are named {path.stem!r}: rename one")
        self.shared[tid] = read_target_file(path, self.model)
        self.names[tid] = path.stem
        return tid

    def avatars(self, user: str | None) -> list[Entry]:
        """The store's avatars of this face model that ``user`` may use, newest first."""
        return [e for e in self.store.entries(user) if e.model == self.model.name]

    def visible_avatar(self, avatar_id: object, user: str | None) -> bool:
        """Whether ``avatar_id`` names a store avatar of this face model that ``user`` may
        use."""
        if not (isinstance(avatar_id, str) and ID_PATTERN.match(avatar_id)):
            return False
        try:
            entry = self.store.entry(avatar_id)
        except (StoreError, OSError, ValueError):
            return False
        return entry.model == self.model.name and entry.visible_to(user)

    def get(self, target_id: object, user: str | None = None) -> Target:
        """The target ``target_id`` names, if ``user`` may use it; avatars are loaded
        (checked) once and kept. ``UnknownTargetError`` otherwise."""
        if isinstance(target_id, str) and target_id in self.shared:
            return self.shared[target_id]
        if not self.visible_avatar(target_id, user):
            raise UnknownTargetError(f"unknown target {str(target_id)[:64]!r}")
        assert isinstance(target_id, str)
        if target_id not in self._avatars:
            try:
                self._avatars[target_id] = self.store.load(target_id, self.model).target()
            except (StoreError, ValueError) as exc:
                raise UnknownTargetError(f"avatar {target_id}: {exc}") from exc
        return self._avatars[target_id]


def load_target(spec: str, model: FaceModel, store: AvatarStore | None = None) -> Target:
    """A target by any of the catalogue's ids, or a file on this machine (command line)."""
    path = Path(spec)
    if spec == "default":
        return default_target(model)
    if ID_PATTERN.match(spec) and not path.exists():
        return (store or AvatarStore()).load(spec, model).target()
    if path.is_dir() or (path.suffix == ".zip" and path.is_file()):
        return read_avatar(path, model).target()
    if ":" in spec and not path.exists():
        folder, subject = spec.rsplit(":", 1)
        if folder == SAMPLE and model.name != "ict":  # the sample gallery is ICT's
            raise UnknownTargetError(other_head(spec, "ict", model))
        dataset = Dataset(sample_dataset_dir() if folder == SAMPLE else folder)
        if dataset.model != model.name:
            raise UnknownTargetError(other_head(spec, dataset.model, model))
        return dataset.target(subject, model)
    if path.suffix == ".npz" and path.is_file():
        return read_target_file(path, model)
    raise UnknownTargetError(f"unknown target {spec!r}: use {FORMS}")


def other_head(spec: str, made_for: str, model: FaceModel) -> str:
    """The error for a dataset subject built on another face model than ``model``."""
    return (f"target {spec!r} is built on the {made_for} head; a {model.name} head takes "
            f"'default', its own avatars (vn3d avatar build PHOTO --model {model.name}), its "
            f"own datasets (vn3d dataset build PHOTOS --model {model.name}) or a target .npz "
            "(vn3d flame reconstruct PHOTO --target OUT.npz)")


def read_target_file(path: Path, model: FaceModel) -> Target:
    """A target ``.npz``: ``shape`` (n,), optionally ``texture`` (H, k*H, 3) uint8 and
    ``model`` (the face model it is for: ``vn3d flame reconstruct`` writes ``flame``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            shape = np.asarray(data["shape"], np.float32).reshape(1, -1)
            texture = data["texture"] if "texture" in data.files else None
            made_for = str(data["model"]) if "model" in data.files else None
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"target file {path} is not a valid target: {exc}") from exc
    made_for = made_for or "ict"  # files from before the field are ICT identities
    if made_for != model.name:
        raise ValueError(f"target file {path} is a {made_for} head; use --model {made_for}"
                         + (" (a FLAME target comes from vn3d flame reconstruct --target)"
                            if made_for == "ict" else ""))
    if shape.shape[1] > model.n_shape or not np.isfinite(shape).all():
        raise ValueError(f"target file {path}: shape must be <= {model.n_shape} finite values")
    if texture is not None and (texture.dtype != np.uint8 or texture.ndim != 3):
        raise ValueError(f"target file {path}: texture must be (H, k*H, 3) uint8")
    return Target(path.stem, torch.from_numpy(shape), texture)
