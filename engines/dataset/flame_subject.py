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

from avatars.builder import AvatarError, decode_photo
from avatars.eye_colour import iris_colour
from avatars.flame_avatar import FlameAvatarBuilder, photo_camera
from avatars.flame_photo_texture import flame_texture
from engines.emotion.facs import EMOTIONS, LABELS
from engines.face.model import FaceModel
from engines.files.mesh_obj import write_obj
from engines.render.camera import PerspectiveCamera
from engines.render.renderer import MeshRenderer


def build_flame_subject(files: dict[str, Path], folder: Path, model: FaceModel, erm,
                        builder: FlameAvatarBuilder, renderer: MeshRenderer) -> dict:
    """Write one subject (``files``: expression -> photo) into ``folder``; its manifest
    entry. ``model``: FLAME driven by ARKit ψ; ``builder``: its photo tracker and DECA."""
    reader = builder.reader
    images, landmarks, fits = {}, {}, {}
    for expr, path in files.items():
        image = decode_photo(path.read_bytes())
        lms, n_faces = builder.landmarks(image)
        if n_faces > 1:
            raise AvatarError(f"{path.name}: {n_faces} faces in the photo")
        images[expr], landmarks[expr] = image, lms
        fits[expr] = reader(image, lms)
    shape = np.zeros(model.n_shape, np.float32)  # MICA's (or DECA's), mean over the photos
    mean = np.mean([f.shape for f in fits.values()], axis=0)
    shape[:min(len(mean), model.n_shape)] = mean[:model.n_shape]
    with torch.no_grad():
        identity = model.prepare_identity(torch.from_numpy(shape[None]))
    folder.mkdir(parents=True, exist_ok=True)
    source = "neutral" if "neutral" in fits else next(iter(fits))
    texture, _ = flame_texture(builder.texture, fits[source], images[source],
                               landmarks[source], reader.flame)
    assert texture is not None  # the builder checked that FLAME has its UVs
    cv2.imwrite(str(folder / "texture.png"), texture[:, :, ::-1])
    iris = iris_colour(images[source], landmarks[source])
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
                     "map_error": np.float64(error),
                     "photo_rotation": photo.rotation, "photo_translation": photo.translation,
                     "photo_focal": np.float64(photo.focal_px),
                     "photo_size": np.array([photo.width, photo.height]),
                     "photo_landmarks": photo.landmarks_px.astype(np.float32)}
        else:
            intensities = np.array([[1.0 if e == expr else 0.0 for e in EMOTIONS]], np.float32)
            psi, pose = (x[0] for x in erm.predict(intensities))
            synthesised.append(expr)
        with torch.no_grad():
            v = model.forward_prepared(identity, torch.as_tensor(psi[None], dtype=torch.float32),
                                       torch.as_tensor(pose[None], dtype=torch.float32))[0]
        np.savez(folder / f"{expr}.npz", expression=np.asarray(psi, np.float32),
                 pose=np.asarray(pose, np.float32), synthesised=expr in synthesised, **extra)
        write_obj(folder / f"{expr}.obj", v.numpy(), model.topology.faces)
        cv2.imwrite(str(folder / f"{expr}.png"), renderer.render(v, camera)[:, :, ::-1])
    return {"status": "done", "photos": {e: str(p) for e, p in files.items()},
            "synthesised": synthesised}
