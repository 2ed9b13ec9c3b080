"""One dataset subject on FLAME, the paper's way (``vn3d dataset build --model flame``):
MICA's identity per subject (the mean over its photos; DECA's shape without ``mica.tar``),
DECA's expression and head pose per photo, the ERM for the expressions without a photo.

The files are those of an ICT subject (see :mod:`engines.dataset.build`), so the loader,
``vn3d eval`` and the servers read both alike: ψ is stored in ARKit weights (53,), the
space the ERM and the tracker speak — a photo's DECA reading is brought there by
:meth:`~engines.face.flame_arkit.FlameArkitModel.arkit_from_flame` — and θ (6,) is the
head rotation (DECA's global pose) with a still gaze. DECA's own reading is kept beside it
in the photo's ``EXPRESSION.npz`` (``deca_expression`` (50,), ``deca_pose`` (6,: global,
jaw), ``map_error``: how much of its face ARKit ψ leaves out), and the OBJ and render
are the model's face for the stored ψ and θ, as for ICT.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from avatars.exposure import exposed
from avatars.eye_colour import iris_colour
from avatars.flame_avatar import FlameAvatarBuilder, photo_camera
from avatars.flame_photo_texture import flame_texture
from engines.dataset.expression_files import (
    erm_expression,
    photo_arrays,
    subject_photos,
    write_expression,
)
from engines.emotion.facs import LABELS
from engines.face.model import FaceModel
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer


def build_flame_subject(files: dict[str, Path], folder: Path, model: FaceModel, erm,
                        builder: FlameAvatarBuilder, renderer: MeshRenderer) -> dict:
    """Write one subject (``files``: expression -> photo) into ``folder``; its manifest
    entry. ``model``: FLAME driven by ARKit ψ; ``builder``: its photo tracker and DECA."""
    reader = builder.reader
    images, landmarks = subject_photos(files, builder)
    fits = {e: reader(images[e], landmarks[e]) for e in files}
    shape = np.zeros(model.n_shape, np.float32)  # MICA's (or DECA's), mean over the photos
    mean = np.mean([f.shape for f in fits.values()], axis=0)
    shape[:min(len(mean), model.n_shape)] = mean[:model.n_shape]
    with torch.no_grad():
        identity = model.prepare_identity(torch.from_numpy(shape[None]))
    folder.mkdir(parents=True, exist_ok=True)
    source = "neutral" if "neutral" in fits else next(iter(fits))
    # as for avatars: a dim photo restored (avatars.exposure)
    source_photo, _ = exposed(images[source], landmarks[source])
    texture, _ = flame_texture(builder.texture, fits[source], source_photo, landmarks[source],
                               reader.flame)
    assert texture is not None  # the builder checked that FLAME has its UVs
    cv2.imwrite(str(folder / "texture.png"), texture[:, :, ::-1])
    iris = iris_colour(source_photo, landmarks[source])
    if iris is not None:
        np.savez(folder / "eyes.npz", rgb=np.array(iris, np.float32))
    np.savez(folder / "identity.npz", shape=shape,
             shape_from=np.array(next(iter(fits.values())).shape_from))
    renderer.set_texture(texture)
    camera = PerspectiveCamera.portrait(model.units_in_metres, centre=model.view_centre)
    synthesised = []
    for expr in LABELS:
        extra: dict[str, np.ndarray] = {}
        if expr in fits:
            fit = fits[expr]
            psi, error = model.arkit_from_flame(fit.expression, fit.pose[6:9])
            pose = np.zeros(model.n_pose, np.float32)
            pose[:3] = fit.pose[:3]  # DECA's global rotation: the head's
            photo = photo_camera(fit, reader, images[expr].shape[:2], landmarks[expr],
                                 shape, model.n_expression)
            extra = {"deca_expression": fit.expression.astype(np.float32),
                     "deca_pose": np.r_[fit.pose[:3], fit.pose[6:9]].astype(np.float32),
                     "map_error": np.float64(error), **photo_arrays(photo)}
        else:
            psi, pose = erm_expression(erm, expr)
            synthesised.append(expr)
        write_expression(folder, expr, model, identity, psi, pose, expr in synthesised,
                         renderer, camera, **extra)
    return {"status": "done", "photos": {e: str(p) for e, p in files.items()},
            "synthesised": synthesised}
