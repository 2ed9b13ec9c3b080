"""FLAME's 68 iBUG landmarks: barycentric points on the mesh, the jaw contour chosen by yaw.

The embedding file is DECA's ``data/landmark_embedding.npy``: a 0-d object array holding a
dict (read as in DECA's ``decalib/models/FLAME.py``, ``np.load(...)[()]``):

- ``static_lmk_faces_idx`` (51,) / ``static_lmk_bary_coords`` (51, 3): iBUG 17-67, fixed
  points on the brows, nose, eyes and lips;
- ``dynamic_lmk_faces_idx`` (79, 17) / ``dynamic_lmk_bary_coords`` (79, 17, 3): iBUG 0-16,
  the jaw line, one row per whole degree of head yaw (row ``y`` for yaw ``y`` in 0..39,
  row ``39 - y`` for -39..-1, row 78 below -39), because the jaw line is a silhouette;
- ``full_lmk_faces_idx`` (1, 68) / ``full_lmk_bary_coords`` (1, 68, 3): all 68 as fixed
  points (DECA repeats them per batch; a file without the leading 1 reads the same).

In DECA's file the dynamic entries are torch tensors pickled inside the numpy object
array, so :func:`load_landmark_embedding` unpickles with a whitelist (numpy arrays, torch
tensors) instead of ``allow_pickle=True``, which would run any code the file names.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engines.face.flame import numpy_pickle_global
from engines.face.lbs import batch_rodrigues
from engines.files.registered import FLAME_LANDMARKS

N_DYNAMIC_ROWS = 79  # yaw 0..39, -1..-39, and one row for beyond -39
N_CONTOUR = 17
MAX_YAW_DEG = 39
NECK, GLOBAL = 1, 0  # FLAME joints whose rotations turn the face against the neck


@dataclass(frozen=True)
class LandmarkEmbedding:
    """FLAME landmarks as triangles and barycentric weights (see the module docstring)."""

    static_faces: torch.Tensor  # (51,) int64
    static_bary: torch.Tensor  # (51, 3)
    dynamic_faces: torch.Tensor  # (79, 17) int64
    dynamic_bary: torch.Tensor  # (79, 17, 3)
    full_faces: torch.Tensor  # (68,) int64
    full_bary: torch.Tensor  # (68, 3)


_EXPECTED = {  # key: shape, None = any
    "static_lmk_faces_idx": (51,),
    "static_lmk_bary_coords": (51, 3),
    "dynamic_lmk_faces_idx": (N_DYNAMIC_ROWS, N_CONTOUR),
    "dynamic_lmk_bary_coords": (N_DYNAMIC_ROWS, N_CONTOUR, 3),
    "full_lmk_faces_idx": (68,),  # (1, 68) in DECA's file: the leading 1 is dropped
    "full_lmk_bary_coords": (68, 3),
}


def _load_tensor_bytes(data: bytes) -> Any:
    """What a pickled torch storage calls; read without running code."""
    return torch.load(io.BytesIO(data), weights_only=True)


_TORCH_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): _load_tensor_bytes,
}


class _EmbeddingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (numpy_global := numpy_pickle_global(module, name)) is not None:
            return numpy_global
        if (module, name) in _TORCH_GLOBALS:
            return _TORCH_GLOBALS[(module, name)]
        if module == "torch" and name.endswith("Storage"):  # e.g. torch.FloatStorage
            return getattr(torch, name)
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: a landmark embedding holds only numpy "
            "arrays and torch tensors"
        )


def read_embedding_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The dict inside a ``landmark_embedding.npy`` (numpy arrays), whitelisted unpickling."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(fh)
        if dtype != np.dtype(object) or shape != ():
            raise ValueError(f"{path}: expected a pickled dict (a 0-d object array)")
        obj = _EmbeddingUnpickler(fh, encoding="latin1").load()
    value = obj[()] if isinstance(obj, np.ndarray) else obj
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a dict inside, got {type(value).__name__}")
    return {str(k): np.asarray(v.numpy() if torch.is_tensor(v) else v) for k, v in value.items()}


def load_landmark_embedding(path: str | os.PathLike[str] | None = None) -> LandmarkEmbedding:
    """DECA's FLAME landmark embedding (found as :data:`FLAME_LANDMARKS` says), checked."""
    file = FLAME_LANDMARKS.find(path)
    try:
        data = read_embedding_dict(file)
    except (pickle.UnpicklingError, ValueError, EOFError) as exc:
        raise ValueError(
            f"{file}: not a FLAME landmark embedding ({exc}); {FLAME_LANDMARKS.how_to_get}"
        ) from exc
    for key, shape in _EXPECTED.items():
        if key.startswith("full_") and key in data and data[key].shape[:1] == (1,):
            data[key] = data[key][0]
        got = data[key].shape if key in data else None
        if got != shape:
            raise ValueError(
                f"{file}: not a FLAME landmark embedding: {key!r} should have shape {shape}, "
                f"got {got}; {FLAME_LANDMARKS.how_to_get}"
            )

    def ids(key: str) -> torch.Tensor:
        return torch.as_tensor(data[key].astype(np.int64))

    def bary(key: str) -> torch.Tensor:
        return torch.as_tensor(data[key].astype(np.float32))

    return LandmarkEmbedding(
        ids("static_lmk_faces_idx"), bary("static_lmk_bary_coords"),
        ids("dynamic_lmk_faces_idx"), bary("dynamic_lmk_bary_coords"),
        ids("full_lmk_faces_idx"), bary("full_lmk_bary_coords"),
    )


def points_on_faces(  # (B, L, 3)
    vertices: torch.Tensor, faces: torch.Tensor, face_ids: torch.Tensor, bary: torch.Tensor
) -> torch.Tensor:
    """Barycentric points: vertices (B, V, 3), faces (F, 3), face_ids (B, L), bary (B, L, 3)."""
    corners = faces[face_ids]  # (B, L, 3) vertex ids
    batch = torch.arange(vertices.shape[0], device=vertices.device)[:, None, None]
    return (vertices[batch, corners] * bary[..., None]).sum(2)  # (B, L, 3)


def contour_rows(pose: torch.Tensor) -> torch.Tensor:  # (B,) int64
    """The dynamic-contour row for FLAME poses (B, 15): the yaw of global @ neck in whole
    degrees, mapped as DECA's ``_find_dynamic_lmk_idx_and_bcoords`` does."""
    aa = pose.view(pose.shape[0], -1, 3)[:, [NECK, GLOBAL]]  # (B, 2, 3)
    rots = batch_rodrigues(aa.reshape(-1, 3)).view(-1, 2, 3, 3)  # (B, 2, 3, 3)
    rel = rots[:, 1] @ rots[:, 0]  # (B, 3, 3) global after neck
    sy = torch.sqrt(rel[:, 0, 0] ** 2 + rel[:, 1, 0] ** 2)
    yaw = torch.round(torch.rad2deg(torch.atan2(-rel[:, 2, 0], sy))).long()  # (B,)
    yaw = yaw.clamp(max=MAX_YAW_DEG)
    negative = torch.where(yaw < -MAX_YAW_DEG, 2 * MAX_YAW_DEG, MAX_YAW_DEG - yaw)
    return torch.where(yaw < 0, negative, yaw)


def flame_landmarks68(  # (B, 68, 3)
    vertices: torch.Tensor, faces: torch.Tensor, pose: torch.Tensor, emb: LandmarkEmbedding
) -> torch.Tensor:
    """iBUG-68 points of posed FLAME meshes (B, V, 3): the jaw contour picked by the head's
    yaw (from ``pose`` (B, 15)), the other 51 fixed."""
    batch = vertices.shape[0]
    rows = contour_rows(pose)  # (B,)
    face_ids = torch.cat([emb.dynamic_faces[rows], emb.static_faces.expand(batch, -1)], 1)
    bary = torch.cat([emb.dynamic_bary[rows], emb.static_bary.expand(batch, -1, -1)], 1)
    return points_on_faces(vertices, faces, face_ids, bary.to(vertices.dtype))
