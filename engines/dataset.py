r"""VN3DFace-style datasets: subjects × 7 expressions, each a pair T(I, M) of a photo (when
there is one) and a 3D model, built from a folder of 2D photos.

Input (:func:`find_photos`), three ways:

- folders: ``PHOTOS/SUBJECT/EXPRESSION.jpg`` (the default);
- a pattern: a regular expression with the named groups ``subject`` and ``expression``,
  matched against each photo's path relative to PHOTOS (``/`` separators), for flat or
  V-Face-style folders, e.g. ``london_(?P<subject>\d+)_(?P<expression>[a-z]+)\.jpg``;
- a CSV with the columns ``subject,expression,path`` (paths relative to the CSV's folder).

Expressions are one of :data:`LABELS` or a common alias (``smiling``, ``fear``, KDEF's
``HA``/``AF``/..., see :data:`EXPRESSION_ALIASES`); photos of other expressions are
ignored, and doubles, bad names and CSV rows that point nowhere are listed under
``skipped_inputs`` in the manifest. Formats: .jpg, .jpeg, .png, .webp.

Layout written (format 1)::

    DATASET/manifest.json            expressions, and per subject: status (done/failed),
                                     its photos, which expressions were synthesised, error
    DATASET/subjects/SUBJECT/
        identity.npz                 shape (n_shape,), fit residual per photo
        texture.png                  the UV texture (from the neutral photo, else the first)
        hair.npz                     optional: style, rgb, positions (32, 32, 100, 3) float16
                                     cm, chosen and aligned as for avatars (live target only)
        EXPRESSION.npz               expression (53,), pose (6,), synthesised (bool); with a
                                     photo also its fitted camera (photo_rotation,
                                     photo_translation, photo_focal, photo_size) and
                                     photo_landmarks (468, 2)
        EXPRESSION.obj               the model with that expression (cm, no UVs)
        EXPRESSION.png               its render I_r (256x256, portrait camera)

Per subject one identity is fitted jointly over all its photos (shared β, own ψ and
camera each); an expression without a photo is synthesised by the ERM from that emotion
at full intensity and marked so. Subjects already done are skipped (resumable); a
subject that fails (no face, unreadable photo) is recorded with its error and the run
goes on. Subjects build in parallel worker processes (``workers``; each loads its own
face model, MediaPipe and renderer), the manifest is written by the parent as each
subject finishes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from engines.assets import AssetMissingError, asset_root
from engines.avatar import (
    DEFAULT_HAIR_RGB,
    AvatarBuilder,
    AvatarConfig,
    AvatarError,
    decode_photo,
)
from engines.disk_cache import cache_root, write_atomic
from engines.face_model import FaceModel
from engines.facs import EMOTIONS, LABELS
from engines.hair import GRID, POINTS
from engines.renderer import MeshRenderer, RenderConfig
from engines.retargeter import Target

FORMAT_VERSION = 1
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RENDER_SIZE = 256


class DatasetError(ValueError):
    """A dataset folder, file or name is missing, corrupt or not allowed; says which."""


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


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2).encode())


def build_dataset(photos: Path | None, out: Path, model: FaceModel, erm, *,
                  pattern: str | None = None, csv: Path | None = None,
                  workers: int = 1, limit: int | None = None) -> dict:
    """Build (or resume) a dataset; returns the manifest. ``erm``: a trained ERM.
    ``workers`` > 1 builds subjects in that many processes; ``limit``: only the first so
    many subjects (by name)."""
    out = Path(out)
    (out / "subjects").mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text()) if manifest_path.is_file()
        else {"format_version": FORMAT_VERSION, "model": model.name, "expressions": LABELS,
              "subjects": {}}
    )
    index = find_photos(photos, pattern, csv)
    if limit is not None:
        index.subjects = dict(list(index.subjects.items())[:limit])
    manifest["skipped_inputs"] = index.skipped
    todo = {name: files for name, files in index.subjects.items()
            if manifest["subjects"].get(name, {}).get("status") != "done"}
    write_json_atomic(manifest_path, manifest)
    bar = tqdm(total=len(index.subjects), initial=len(index.subjects) - len(todo),
               desc="subjects", unit="subject")
    for name, entry in subject_builds(todo, out, model, erm, workers):
        manifest["subjects"][name] = entry
        manifest["subjects"] = dict(sorted(manifest["subjects"].items()))  # not finish order
        write_json_atomic(manifest_path, manifest)  # resumable after each subject
        bar.update()
    bar.close()
    return manifest


def subject_builds(todo: dict[str, dict[str, Path]], out: Path, model: FaceModel, erm,
                   workers: int):
    """(subject, manifest entry) as each subject finishes, in this process or in workers."""
    if workers <= 1 or len(todo) <= 1:
        _start_worker(model, erm)
        try:
            for name, files in todo.items():
                yield name, _build_in_worker(name, files, out)
        finally:
            _stop_worker()
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: MediaPipe, EGL and torch threads do not survive a fork
    with ProcessPoolExecutor(min(workers, len(todo)), multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(type(model), erm)) as pool:
        jobs = {pool.submit(_build_in_worker, name, files, out): name
                for name, files in todo.items()}
        for job in as_completed(jobs):
            yield jobs[job], job.result()


SAMPLE_ENV = "VN3D_SAMPLE_DATASET"


def sample_dataset_dir() -> Path:
    """Where the out-of-the-box gallery is built: ``$VN3D_SAMPLE_DATASET``, else
    ``$VN3D_CACHE/datasets/london-sample``."""
    return Path(os.environ.get(SAMPLE_ENV) or cache_root() / "datasets" / "london-sample")


def build_sample_dataset(model: FaceModel, erm, out: Path | None = None, workers: int = 1,
                         limit: int | None = None) -> dict:
    """The sample gallery: the London Set's neutral and smiling photos (the other five
    expressions by the ERM). ``limit``: only the first so many people."""
    london = (asset_root() / "faces" / "london_set").resolve()
    if not london.is_dir():
        raise AssetMissingError(
            f"the sample gallery is made from the London Set (faces/london_set, CC BY 4.0), "
            f"not found at {london.resolve()}; set $VN3D_ASSETS to the asset folder")
    return build_dataset(london, Path(out) if out else sample_dataset_dir(), model, erm,
                         pattern=SAMPLE_PATTERN, workers=workers, limit=limit)


_worker: dict = {}  # one process's model, ERM, builder and renderer


def _start_worker(model: FaceModel | type, erm) -> None:
    if isinstance(model, type):  # in a worker process: load our own copy, one thread
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        model = model()
    _worker.update(
        model=model, erm=erm,
        builder=AvatarBuilder(model, AvatarConfig(texture_size=512, hair="auto")),
        renderer=MeshRenderer(model.topology, RenderConfig(RENDER_SIZE, RENDER_SIZE)),
    )


def _stop_worker() -> None:
    if _worker:
        _worker["builder"].close()
        _worker["renderer"].close()
        _worker.clear()


def _build_in_worker(name: str, files: dict[str, Path], out: Path) -> dict:
    w = _worker
    try:
        return build_subject(files, out / "subjects" / name, w["model"], w["erm"],
                             w["builder"], w["renderer"])
    except (AvatarError, OSError) as exc:
        return {"status": "failed", "error": str(exc)}


def build_subject(files: dict[str, Path], folder: Path, model: FaceModel, erm,
                  builder: AvatarBuilder, renderer: MeshRenderer) -> dict:
    images, landmarks, photos = {}, {}, []
    for expr, path in files.items():
        image = decode_photo(path.read_bytes())
        lms, n_faces = builder.landmarks(image)
        if n_faces > 1:
            raise AvatarError(f"{path.name}: {n_faces} faces in the photo")
        images[expr], landmarks[expr] = image, lms
        photos.append((lms, image.shape[1], image.shape[0]))
    fits = dict(zip(files, builder.fitter.fit(photos), strict=True))
    shape = torch.from_numpy(next(iter(fits.values())).shape[None].copy())
    with torch.no_grad():
        identity = model.prepare_identity(shape)
    folder.mkdir(parents=True, exist_ok=True)
    source = "neutral" if "neutral" in fits else next(iter(fits))
    fit = fits[source]
    with torch.no_grad():
        posed = model.forward_prepared(
            identity, torch.from_numpy(fit.expression[None].copy()), torch.zeros(1, model.n_pose)
        )[0].numpy()
    # as for avatars: hair and mouth/eye openings out of the texture, hair for the target
    texture, hair, hair_rgb = builder.appearance(images[source], landmarks[source], fit,
                                                 identity[0].numpy(), posed)
    cv2.imwrite(str(folder / "texture.png"), texture[:, :, ::-1])
    if hair is not None:
        np.savez(folder / "hair.npz", style=hair.name, rgb=np.array(hair_rgb, np.float32),
                 positions=hair.positions.astype(np.float16))
    np.savez(folder / "identity.npz", shape=shape[0].numpy(),
             residual_px=np.array([f.residual_px for f in fits.values()]))
    renderer.set_texture(texture)
    synthesised = []
    for expr in LABELS:
        if expr in fits:
            psi = fits[expr].expression
            pose = np.zeros(model.n_pose, np.float32)
            pose[:3] = head_rotation(fits[expr].rotation)
        else:
            intensities = np.array([[1.0 if e == expr else 0.0 for e in EMOTIONS]], np.float32)
            psi, pose = (x[0] for x in erm.predict(intensities))
            synthesised.append(expr)
        with torch.no_grad():
            v = model.forward_prepared(identity, torch.as_tensor(psi[None], dtype=torch.float32),
                                       torch.as_tensor(pose[None], dtype=torch.float32))[0]
        camera = {}
        if expr in fits:  # the photo's camera and landmarks, to re-render it for evaluation
            f = fits[expr]
            camera = {"photo_rotation": f.rotation, "photo_translation": f.translation,
                      "photo_focal": np.float64(f.focal_px),
                      "photo_size": np.array([f.width, f.height]),
                      "photo_landmarks": f.landmarks_px.astype(np.float32)}
        np.savez(folder / f"{expr}.npz", expression=np.asarray(psi, np.float32),
                 pose=np.asarray(pose, np.float32), synthesised=expr in synthesised, **camera)
        write_obj(folder / f"{expr}.obj", v.numpy(), model.topology.faces)
        cv2.imwrite(str(folder / f"{expr}.png"), renderer.render(v)[:, :, ::-1])
    return {"status": "done", "photos": {e: str(p) for e, p in files.items()},
            "synthesised": synthesised}


def head_rotation(rotation_cv: np.ndarray) -> np.ndarray:
    """The head's axis-angle in the model's frame from a fit's model->OpenCV-camera
    rotation (a frontal face is the identity)."""
    rot = np.diag([1.0, -1.0, -1.0]) @ cv2.Rodrigues(np.asarray(rotation_cv, np.float64))[0]
    return cv2.Rodrigues(rot)[0].ravel().astype(np.float32)


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    with open(path, "w") as f:
        np.savetxt(f, vertices, fmt="v %.5f %.5f %.5f")
        np.savetxt(f, faces + 1, fmt="f %d %d %d")


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
        hair, rgb = None, DEFAULT_HAIR_RGB
        if (folder / "hair.npz").is_file():  # optional: subjects with no hair have none
            arrays = load_checked(folder / "hair.npz",
                                  {"positions": (GRID, GRID, POINTS, 3), "rgb": (3,)})
            hair, rgb = arrays["positions"].astype(np.float32), tuple(map(float, arrays["rgb"]))
        return Target(f"{subject}", torch.from_numpy(shape[None].astype(np.float32)),
                      texture[:, :, ::-1].copy(), hair, rgb)


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
