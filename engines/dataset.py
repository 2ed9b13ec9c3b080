"""VN3DFace-style datasets: subjects × 7 expressions, each a pair T(I, M) of a photo (when
there is one) and a 3D model, built from a folder of 2D photos.

Input: ``PHOTOS/SUBJECT/EXPRESSION.jpg`` (EXPRESSION one of :data:`LABELS`; .jpg, .jpeg,
.png or .webp). Layout written (format 1)::

    DATASET/manifest.json            expressions, and per subject: status (done/failed),
                                     its photos, which expressions were synthesised, error
    DATASET/subjects/SUBJECT/
        identity.npz                 shape (n_shape,), fit residual per photo
        texture.png                  the UV texture (from the neutral photo, else the first)
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
goes on.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from engines.avatar import AvatarBuilder, AvatarConfig, AvatarError, decode_photo
from engines.face_model import FaceModel
from engines.facs import EMOTIONS, LABELS
from engines.renderer import MeshRenderer, RenderConfig
from engines.retargeter import Target
from engines.texture_unwrap import unwrap_texture

FORMAT_VERSION = 1
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RENDER_SIZE = 256


class DatasetError(ValueError):
    """A dataset folder, file or name is missing, corrupt or not allowed; says which."""


def find_photos(folder: Path) -> dict[str, dict[str, Path]]:
    """subject -> {expression: photo} from SUBJECT/EXPRESSION.ext (other files ignored)."""
    out: dict[str, dict[str, Path]] = {}
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        if not SUBJECT_PATTERN.match(sub.name):
            continue
        photos = {
            p.stem.lower(): p for p in sorted(sub.iterdir())
            if p.suffix.lower() in PHOTO_SUFFIXES and p.stem.lower() in LABELS
        }
        if photos:
            out[sub.name] = photos
    return out


def write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


def build_dataset(photos: Path, out: Path, model: FaceModel, erm) -> dict:
    """Build (or resume) a dataset; returns the manifest. ``erm``: a trained ERM."""
    out = Path(out)
    (out / "subjects").mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text()) if manifest_path.is_file()
        else {"format_version": FORMAT_VERSION, "model": model.name, "expressions": LABELS,
              "subjects": {}}
    )
    subjects = find_photos(photos)
    builder = AvatarBuilder(model, AvatarConfig(texture_size=512, hair="none"))
    try:
        with MeshRenderer(model.topology, RenderConfig(RENDER_SIZE, RENDER_SIZE)) as renderer:
            for name, files in tqdm(subjects.items(), desc="subjects", unit="subject"):
                if manifest["subjects"].get(name, {}).get("status") == "done":
                    continue
                try:
                    entry = build_subject(files, out / "subjects" / name, model, erm, builder,
                                          renderer)
                except (AvatarError, OSError) as exc:
                    entry = {"status": "failed", "error": str(exc)}
                manifest["subjects"][name] = entry
                write_json_atomic(manifest_path, manifest)  # resumable after each subject
    finally:
        builder.close()
    return manifest


def build_subject(files: dict[str, Path], folder: Path, model: FaceModel, erm,
                  builder: AvatarBuilder, renderer: MeshRenderer) -> dict:
    images, photos = {}, []
    for expr, path in files.items():
        image = decode_photo(path.read_bytes())
        lms, n_faces = builder.landmarks(image)
        if n_faces > 1:
            raise AvatarError(f"{path.name}: {n_faces} faces in the photo")
        images[expr] = image
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
    rot = cv2.Rodrigues(fit.rotation)[0]
    texture = unwrap_texture(images[source], posed @ rot.T + fit.translation, fit.focal_px,
                             model.topology, model.neutral.numpy(), 512).texture
    cv2.imwrite(str(folder / "texture.png"), texture[:, :, ::-1])
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

    def target(self, subject: str, model: FaceModel) -> Target:
        """A retargeting target with this subject's identity and texture."""
        folder = self.folder(subject)
        shape = load_checked(folder / "identity.npz", {"shape": (model.n_shape,)})["shape"]
        texture = cv2.imread(str(folder / "texture.png"), cv2.IMREAD_COLOR)
        if texture is None or texture.shape[1] % texture.shape[0]:
            raise DatasetError(f"{folder / 'texture.png'} is missing or not a UV texture")
        return Target(f"{subject}", torch.from_numpy(shape[None].astype(np.float32)),
                      texture[:, :, ::-1].copy())


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
