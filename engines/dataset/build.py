"""VN3DFace-style datasets: subjects × 7 expressions, each a pair T(I, M) of a photo (when
there is one) and a 3D model, built from a folder of 2D photos.

Input: ``photos.py``. Layout written (format 1)::

    DATASET/manifest.json            expressions, and per subject: status (done/failed),
                                     its photos, which expressions were synthesised, error
    DATASET/subjects/SUBJECT/
        identity.npz                 shape (n_shape,), fit residual per photo
        texture.png                  the UV texture (from the neutral photo, else the first)
        hair.npz                     optional: style, rgb, positions (32, 32, 100, 3) float16
                                     cm, chosen and aligned as for avatars (live target only)
        eyes.npz                     optional: rgb (3,), the iris colour of the source photo
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
subject finishes. On FLAME (``model.name == "flame"``) a subject is built by
:mod:`engines.dataset.flame_subject` (MICA, DECA) into the same files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from avatars.builder import (
    AvatarBuilder,
    AvatarConfig,
    AvatarError,
)
from avatars.exposure import exposed
from avatars.eye_colour import iris_colour
from avatars.flame_avatar import FlameAvatarBuilder
from engines.dataset.expression_files import (
    erm_expression,
    photo_arrays,
    subject_photos,
    write_expression,
)
from engines.dataset.flame_subject import build_flame_subject
from engines.dataset.loader import FORMAT_VERSION
from engines.dataset.photos import SAMPLE_PATTERN, find_photos
from engines.emotion.facs import LABELS
from engines.face.by_name import load_face_model
from engines.face.model import FaceModel
from engines.files.assets import AssetMissingError, asset_root
from engines.files.disk_cache import cache_root, write_atomic
from engines.flame_encoders.photo_to_flame import load_photo_to_flame
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.tracking.landmarkers import DEFAULT_LANDMARKER

RENDER_SIZE = 256


def write_json_atomic(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2).encode())


def build_dataset(photos: Path | None, out: Path, model: FaceModel, erm, *,
                  pattern: str | None = None, csv: Path | None = None,
                  workers: int = 1, limit: int | None = None,
                  landmarker: str = DEFAULT_LANDMARKER) -> dict:
    """Build (or resume) a dataset; returns the manifest. ``erm``: a trained ERM.
    ``workers`` > 1 builds subjects in that many processes; ``limit``: only the first so
    many subjects (by name); ``landmarker``: which runtime reads the photos' landmarks."""
    out = Path(out)
    (out / "subjects").mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text()) if manifest_path.is_file()
        else {"format_version": FORMAT_VERSION, "model": model.name, "expressions": LABELS,
              "subjects": {}}
    )
    if manifest.get("model", "ict") != model.name:
        raise ValueError(f"{out} holds a {manifest.get('model', 'ict')} dataset; resume it "
                         f"with --model {manifest.get('model', 'ict')} or build into another "
                         "folder")
    index = find_photos(photos, pattern, csv)
    if limit is not None:
        index.subjects = dict(list(index.subjects.items())[:limit])
    manifest["skipped_inputs"] = index.skipped
    todo = {name: files for name, files in index.subjects.items()
            if manifest["subjects"].get(name, {}).get("status") != "done"}
    write_json_atomic(manifest_path, manifest)
    bar = tqdm(total=len(index.subjects), initial=len(index.subjects) - len(todo),
               desc="subjects", unit="subject")
    for name, entry in subject_builds(todo, out, model, erm, workers, landmarker):
        manifest["subjects"][name] = entry
        manifest["subjects"] = dict(sorted(manifest["subjects"].items()))  # not finish order
        write_json_atomic(manifest_path, manifest)  # resumable after each subject
        bar.update()
    bar.close()
    return manifest


def subject_builds(todo: dict[str, dict[str, Path]], out: Path, model: FaceModel, erm,
                   workers: int, landmarker: str = DEFAULT_LANDMARKER):
    """(subject, manifest entry) as each subject finishes, in this process or in workers."""
    if workers <= 1 or len(todo) <= 1:
        _start_worker(model, erm, landmarker)
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
                             initializer=_start_worker,
                             initargs=(model.name, erm, landmarker)) as pool:
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
                         limit: int | None = None,
                         landmarker: str = DEFAULT_LANDMARKER) -> dict:
    """The sample gallery: the London Set's neutral and smiling photos (the other five
    expressions by the ERM). ``limit``: only the first so many people."""
    london = (asset_root() / "faces" / "london_set").resolve()
    if not london.is_dir():
        raise AssetMissingError(
            f"the sample gallery is made from the London Set (faces/london_set, CC BY 4.0), "
            f"not found at {london.resolve()}; set $VN3D_ASSETS to the asset folder")
    return build_dataset(london, Path(out) if out else sample_dataset_dir(), model, erm,
                         pattern=SAMPLE_PATTERN, workers=workers, limit=limit,
                         landmarker=landmarker)


_worker: dict = {}  # one process's model, ERM, builder and renderer


def _start_worker(model: FaceModel | str, erm, landmarker: str = DEFAULT_LANDMARKER) -> None:
    if isinstance(model, str):  # in a worker process: load our own copy, one thread
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        model = load_face_model(model)
    if model.name == "flame":  # DECA and MICA read the photos (registered files)
        reader, _ = load_photo_to_flame()
        builder = FlameAvatarBuilder(model, reader, landmarker=landmarker)
    else:
        builder = AvatarBuilder(model, AvatarConfig(texture_size=512, hair="auto",
                                                    landmarker=landmarker))
    _worker.update(model=model, erm=erm, builder=builder,
                   renderer=MeshRenderer(model.topology, RenderConfig(RENDER_SIZE, RENDER_SIZE)))


def _stop_worker() -> None:
    if _worker:
        _worker["builder"].close()
        _worker["renderer"].close()
        _worker.clear()


def _build_in_worker(name: str, files: dict[str, Path], out: Path) -> dict:
    w = _worker
    build = build_flame_subject if w["model"].name == "flame" else build_subject
    try:
        return build(files, out / "subjects" / name, w["model"], w["erm"], w["builder"],
                     w["renderer"])
    except (AvatarError, OSError) as exc:
        return {"status": "failed", "error": str(exc)}


def build_subject(files: dict[str, Path], folder: Path, model: FaceModel, erm,
                  builder: AvatarBuilder, renderer: MeshRenderer) -> dict:
    images, landmarks = subject_photos(files, builder)
    photos = [(landmarks[e], images[e].shape[1], images[e].shape[0]) for e in files]
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
    # as for avatars: a dim photo restored, hair and mouth/eye openings out of the
    # texture, hair for the target
    source_photo, _ = exposed(images[source], landmarks[source])
    texture, hair, hair_rgb = builder.appearance(source_photo, landmarks[source], fit,
                                                 identity[0].numpy(), posed)
    cv2.imwrite(str(folder / "texture.png"), texture[:, :, ::-1])
    if hair is not None:
        np.savez(folder / "hair.npz", style=hair.name, rgb=np.array(hair_rgb, np.float32),
                 positions=hair.positions.astype(np.float16))
    iris = iris_colour(source_photo, landmarks[source])
    if iris is not None:  # optional too: closed eyes in the source photo give none
        np.savez(folder / "eyes.npz", rgb=np.array(iris, np.float32))
    np.savez(folder / "identity.npz", shape=shape[0].numpy(),
             residual_px=np.array([f.residual_px for f in fits.values()]))
    renderer.set_texture(texture)
    synthesised = []
    for expr in LABELS:
        camera = {}
        if expr in fits:
            psi = fits[expr].expression
            pose = np.zeros(model.n_pose, np.float32)
            pose[:3] = head_rotation(fits[expr].rotation)
            camera = photo_arrays(fits[expr])
        else:
            psi, pose = erm_expression(erm, expr)
            synthesised.append(expr)
        write_expression(folder, expr, model, identity, psi, pose, expr in synthesised,
                         renderer, **camera)
    return {"status": "done", "photos": {e: str(p) for e, p in files.items()},
            "synthesised": synthesised}


def head_rotation(rotation_cv: np.ndarray) -> np.ndarray:
    """The head's axis-angle in the model's frame from a fit's model->OpenCV-camera
    rotation (a frontal face is the identity)."""
    rot = np.diag([1.0, -1.0, -1.0]) @ cv2.Rodrigues(np.asarray(rotation_cv, np.float64))[0]
    return cv2.Rodrigues(rot)[0].ravel().astype(np.float32)
