"""ICT-FaceKit light head (MIT): the project's open default face model.

Parameters
----------
shape       (B, <=100)  identity PCA coefficients (about unit variance each).
expression  (B, 53)     ARKit-named blendshape weights in [0, 1] (``expression_names``).
pose        (B, 6)      [0:3] head rotation, axis-angle in radians, about the neck pivot;
                        [3:6] extra gaze rotation of both eyeballs, axis-angle in radians.

Axes: x to the subject's left, y up, z out of the face; units are centimetres.

Head rotation is linear blend skinning with two bones (a static root and the head): each
vertex's head weight is a smoothstep of its height between ``NECK_BASE_Y`` (0, the neck
stays put) and ``NECK_TOP_Y`` (1, the skull, face, eyes and teeth move rigidly).

Gaze: ICT's ``eyeLook*`` blendshapes only move the eyelids, so the eyeballs (iris and
sclera meshes) are rotated rigidly about their fitted sphere centres:
``yaw = GAZE_HORIZONTAL_DEG * (lookOut - lookIn)`` (outwards for each eye) and
``pitch = GAZE_UP_DEG * lookUp - GAZE_DOWN_DEG * lookDown``, then the pose's gaze rotation.
The transparent helper shells (eye occlusion, eye blend, lacrimal fluid) follow the lids.

Lashes: ICT's ``M_EyeLashes`` is six cards per eye, three layers above the eye and three
below it. The lower cards stand about 1 cm tall under the lid, so drawn at any opacity
they read as a grey smudge under each open eye and a dark band under a shut one; they get
a material of their own, ``M_EyeLashesLower`` (not drawn: ``engines/render/materials.py``),
and the upper lashes stay.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from engines.face.lbs import batch_rodrigues, blend_shapes, neck_skinning, rotate_about
from engines.face.model import FaceModel, MeshTopology
from engines.files.assets import asset_path
from engines.geometry.triangulate import triangulate

NECK_PIVOT = (0.0, -6.0, -1.5)  # cm, roughly the top of the cervical spine
NECK_BASE_Y = -16.0  # cm: below this the head weight is 0
NECK_TOP_Y = -9.0  # cm: above this the head weight is 1 (just under the chin)
GAZE_HORIZONTAL_DEG = 30.0
GAZE_UP_DEG = 25.0
GAZE_DOWN_DEG = 30.0

EYE_MATERIALS = {"left": ("M_IrisLeft", "M_ScleraLeft"), "right": ("M_IrisRight", "M_ScleraRight")}
LASHES, LOWER_LASHES = "M_EyeLashes", "M_EyeLashesLower"


def split_lower_lashes(
    faces: np.ndarray, face_material: np.ndarray, material_names: tuple[str, ...],
    vertices: np.ndarray,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Triangles (F, 3), their material (F,) into ``material_names`` and the rest mesh
    (V, 3) -> the materials with the lash cards under the eyes (connected cards whose
    mean height is below the mean of all lash vertices) moved to ``LOWER_LASHES``. A
    mesh without lashes comes back as it was."""
    if LASHES not in material_names:
        return face_material, material_names
    lash = np.flatnonzero(face_material == material_names.index(LASHES))
    tri = faces[lash]  # (K, 3)
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])  # (3K, 2)
    n = len(vertices)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, card = connected_components(graph, directed=False)  # (V,) a card per lash vertex
    used = np.unique(tri)
    ids, inverse = np.unique(card[used], return_inverse=True)
    heights = np.bincount(inverse, vertices[used, 1]) / np.bincount(inverse)  # (cards,)
    lower_cards = ids[heights < vertices[used, 1].mean()]
    names = (*material_names, LOWER_LASHES)
    out = face_material.copy()
    out[lash[np.isin(card[tri[:, 0]], lower_cards)]] = len(names) - 1
    return out, names


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """0 below ``lo``, 1 above ``hi``, a C1 cubic between."""
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points (N, 3): centre (3,), radius."""
    a = np.c_[2.0 * points, np.ones(len(points))]
    b = (points**2).sum(1)
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    centre = sol[:3]
    return centre, float(np.sqrt(sol[3] + centre @ centre))


def neck_weights(vertices: np.ndarray) -> np.ndarray:
    """Head-bone skinning weight per vertex (V,) from its height."""
    return smoothstep(vertices[:, 1], NECK_BASE_Y, NECK_TOP_Y).astype(np.float32)


def yaw_pitch_matrices(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """R_y(yaw) @ R_x(pitch), in closed form: yaw, pitch (...,) radians -> (..., 3, 3)."""
    cy, sy, cp, sp = torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch)
    zeros = torch.zeros_like(yaw)
    return torch.stack([cy, sy * sp, sy * cp,
                        zeros, cp, -sp,
                        -sy, cy * sp, cy * cp], -1).reshape(*yaw.shape, 3, 3)


def eye_rotations(
    expression: torch.Tensor, gaze: torch.Tensor, idx: dict[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eyeball rotation matrices (left, right), each (B, 3, 3).

    expression: (B, 53) ARKit weights; gaze: (B, 3) axis-angle; idx: name -> column.
    """
    h, up, down = (math.radians(a) for a in (GAZE_HORIZONTAL_DEG, GAZE_UP_DEG, GAZE_DOWN_DEG))

    def look(k: str) -> torch.Tensor:  # (B, 2) the left and the right eye's weight
        return expression[:, [idx[f"eyeLook{k}_L"], idx[f"eyeLook{k}_R"]]]

    sign = torch.tensor([1.0, -1.0], dtype=expression.dtype)
    yaw = sign * h * (look("Out") - look("In"))  # about +y; +x is the subject's left
    pitch = -(up * look("Up") - down * look("Down"))  # about +x; negative looks up
    rot = yaw_pitch_matrices(yaw, pitch)  # (B, 2, 3, 3)
    if gaze.requires_grad or gaze.any():  # no gaze: the identity (its gradient kept)
        rot = batch_rodrigues(gaze)[:, None] @ rot
    return rot[:, 0], rot[:, 1]


class ICTFaceModel(FaceModel):
    """ICT-FaceKit light: loads buffers from the packed npz and calls the pure functions."""

    name = "ict"
    units_in_metres = 0.01

    def __init__(self, path: str | Path | None = None, n_shape: int = 100) -> None:
        super().__init__()
        data = np.load(path if path is not None else asset_path("ict_facekit"))
        neutral = data["neutral"].astype(np.float32)  # (V, 3)
        self.n_shape = min(n_shape, data["identity_deltas"].shape[0])
        self.expression_names = tuple(str(n) for n in data["expression_names"])
        self.n_expression = len(self.expression_names)
        self.pose_names = ("head_rx", "head_ry", "head_rz", "gaze_rx", "gaze_ry", "gaze_rz")
        self.n_pose = 6
        self._idx = {n: i for i, n in enumerate(self.expression_names)}

        tris, src = triangulate(data["faces"])
        uv_tris, _ = triangulate(data["face_uv"])
        face_material, material_names = split_lower_lashes(
            tris, data["face_material"][src].astype(np.int16),
            tuple(str(n) for n in data["material_names"]), neutral)
        indices = json.loads(str(data["vertex_indices_json"]))
        eye_ids, eye_offsets = [], []
        eye_directions = np.zeros_like(neutral)
        for side in ("left", "right"):
            mats = [material_names.index(m) for m in EYE_MATERIALS[side]]
            ids = np.unique(tris[np.isin(face_material, mats)])
            centre, _ = fit_sphere(neutral[ids])
            eye_ids.append(torch.as_tensor(ids, dtype=torch.long))
            # centre = mean of the (shaped) eye vertices + this rest offset
            eye_offsets.append(centre - neutral[ids].mean(0))
            d = neutral[ids] - centre
            eye_directions[ids] = d / np.linalg.norm(d, axis=1, keepdims=True)
        self.topology = MeshTopology(
            faces=tris,
            face_material=face_material,
            material_names=material_names,
            landmark_vertex_ids=np.asarray(indices["idx_to_landmark_verts"], dtype=np.int64),
            uvs=data["uv"].astype(np.float32),
            face_uvs=uv_tris,
            eye_directions=eye_directions,
        )
        self.register_buffer("neutral", torch.from_numpy(neutral))
        self.register_buffer(
            "identity_dirs", torch.from_numpy(data["identity_deltas"][: self.n_shape].copy())
        )
        self.register_buffer("expression_dirs", torch.from_numpy(data["expression_deltas"]))
        self.register_buffer("head_weights", torch.from_numpy(neck_weights(neutral)))
        self.register_buffer("neck_pivot", torch.tensor(NECK_PIVOT))
        self.register_buffer("left_eye_ids", eye_ids[0])
        self.register_buffer("right_eye_ids", eye_ids[1])
        self.register_buffer(
            "eye_offsets", torch.tensor(np.stack(eye_offsets), dtype=torch.float32)
        )

    @property
    def n_vertices(self) -> int:
        return int(self.neutral.shape[0])

    def eye_centres(self, vertices: torch.Tensor) -> torch.Tensor:
        """Eyeball centres (B, 2, 3) [left, right] of unposed vertices (B, V, 3)."""
        left = vertices[:, self.left_eye_ids].mean(1) + self.eye_offsets[0]
        right = vertices[:, self.right_eye_ids].mean(1) + self.eye_offsets[1]
        return torch.stack([left, right], 1)

    def prepare_identity(self, shape: torch.Tensor) -> torch.Tensor:  # (B, V, 3)
        """The identity's neutral vertices: template + identity blendshapes."""
        shape = torch.nn.functional.pad(shape, [0, self.n_shape - shape.shape[1]])
        return self.neutral[None] + blend_shapes(shape, self.identity_dirs)

    def forward_prepared(  # (B, V, 3)
        self, prepared: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> torch.Tensor:
        """Expression blendshapes, eye rotations and neck skinning on identity vertices."""
        expression = torch.nn.functional.pad(
            expression, [0, self.n_expression - expression.shape[1]]
        )
        v = prepared + blend_shapes(expression, self.expression_dirs)  # (B, V, 3)
        centres = self.eye_centres(v)  # (B, 2, 3)
        rot_l, rot_r = eye_rotations(expression, pose[:, 3:6], self._idx)
        v = v.clone()
        v[:, self.left_eye_ids] = rotate_about(v[:, self.left_eye_ids], rot_l, centres[:, 0])
        v[:, self.right_eye_ids] = rotate_about(v[:, self.right_eye_ids], rot_r, centres[:, 1])
        return neck_skinning(v, batch_rodrigues(pose[:, :3]), self.neck_pivot,
                             self.head_weights)
