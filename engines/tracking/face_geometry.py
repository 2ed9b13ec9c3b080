"""MediaPipe's facial transformation matrix from the 478 landmarks, in numpy.

A port of MediaPipe's face geometry pipeline (``face_geometry/libs/geometry_pipeline.cc``
and ``procrustes_solver.cc``) as FaceLandmarker runs it: a perspective camera with a 63°
vertical field of view (another can be assumed: ``scripts/measure_head_rotation.py``
compares them), near plane 1, origin at the image's top-left corner. The screen
landmarks are lifted to metric 3D in two passes (each estimates the face's scale with a
weighted Procrustes fit of the canonical face and rescales depth), then a last weighted
Procrustes fit of the canonical face onto the metric landmarks is the pose matrix.

The canonical face (468 vertices) and the Procrustes weights come from the
``geometry_pipeline_metadata_landmarks.binarypb`` inside ``face_landmarker.task``, read
with a small protobuf wire-format reader (no generated protobuf classes needed).
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METADATA_FILE = "geometry_pipeline_metadata_landmarks.binarypb"
VERTICAL_FOV_DEG = 63.0
NEAR = 1.0
VERTEX_FLOATS = 5  # VERTEX_PT: x, y, z, u, v


def _wire_fields(buf: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of one protobuf message: varints as int, fixed32
    as 4 bytes, length-delimited as bytes."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        value, shift = 0, 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(buf):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, wire, varint()))
        elif wire == 5:
            out.append((number, wire, buf[i : i + 4]))
            i += 4
        elif wire == 1:
            out.append((number, wire, buf[i : i + 8]))
            i += 8
        elif wire == 2:
            n = varint()
            out.append((number, wire, buf[i : i + n]))
            i += n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return out


def _floats(fields: list, number: int) -> np.ndarray:
    """A repeated float field, packed or not."""
    vals: list[float] = []
    for n, wire, v in fields:
        if n != number:
            continue
        if wire == 5:
            vals.append(struct.unpack("<f", v)[0])
        else:  # packed
            vals.extend(np.frombuffer(v, "<f4").tolist())
    return np.array(vals, np.float64)


@dataclass(frozen=True)
class GeometryMetadata:
    canonical: np.ndarray  # (468, 3) canonical face, metric units (cm)
    weights: np.ndarray  # (468,) Procrustes weight per landmark (most are 0)

    @classmethod
    def parse(cls, data: bytes) -> GeometryMetadata:
        """GeometryPipelineMetadata: canonical_mesh = 1 (Mesh3d: vertex_type = 1,
        vertex_buffer = 3), procrustes_landmark_basis = 2 (landmark_id = 1, weight = 2)."""
        top = _wire_fields(data)
        mesh = next(v for n, w, v in top if n == 1 and w == 2)
        mesh_fields = _wire_fields(mesh)
        if any(n == 1 and v != 0 for n, _, v in mesh_fields):
            raise ValueError("the canonical mesh is not VERTEX_PT (x, y, z, u, v)")
        vertices = _floats(mesh_fields, 3).reshape(-1, VERTEX_FLOATS)[:, :3]
        weights = np.zeros(len(vertices))
        for n, w, v in top:
            if n == 2 and w == 2:
                ref = {fn: fv for fn, _, fv in _wire_fields(v)}
                weights[int(ref.get(1, 0))] = struct.unpack("<f", ref[2])[0] if 2 in ref else 0.0
        if not weights.any():
            raise ValueError("the geometry metadata has no Procrustes weights")
        return cls(vertices, weights)

    @classmethod
    def from_task(cls, task_path: Path | str) -> GeometryMetadata:
        with zipfile.ZipFile(task_path) as z:
            return cls.parse(z.read(METADATA_FILE))


def weighted_procrustes(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """(4, 4) similarity transform (scale · rotation, translation) taking source (N, 3)
    onto target (N, 3), minimising the weighted squared error (procrustes_solver.cc)."""
    sw = np.sqrt(weights)  # (N,)
    ws, wt = source.T * sw, target.T * sw  # (3, N)
    total = (sw * sw).sum()
    centre = (ws * sw).sum(1) / total  # (3,)
    centred = ws - centre[:, None] * sw  # (3, N)
    u, _, vt = np.linalg.svd(wt @ centred.T)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        u[:, 2] *= -1
    rotation = u @ vt  # (3, 3)
    scale = ((rotation @ centred) * wt).sum() / (centred * ws).sum()
    linear = scale * rotation
    translation = ((wt - linear @ ws) * sw).sum(1) / total
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = linear, translation
    return out


def metric_landmarks(
    landmarks: np.ndarray, width: int, height: int, metadata: GeometryMetadata,
    vertical_fov_deg: float = VERTICAL_FOV_DEG,
) -> np.ndarray:
    """The face's 468 landmarks (≥468, 3: normalised x, y in the image and z scaled like
    x, FaceLandmarker's output) lifted to metric 3D (468, 3) as MediaPipe's geometry
    pipeline lifts them for a camera with ``vertical_fov_deg`` (MediaPipe assumes 63°):
    the face's scale is estimated twice by weighted Procrustes fits of the canonical face
    on the weighted points, and depth rescaled by it."""
    pts = np.asarray(landmarks, np.float64)[: len(metadata.canonical)].T.copy()  # (3, N)
    h_near = 2 * NEAR * np.tan(0.5 * np.radians(vertical_fov_deg))
    w_near = width * h_near / height
    left, bottom = -0.5 * w_near, -0.5 * h_near
    # project XY: origin top-left, to the near plane; z scaled like x
    pts[1] = 1.0 - pts[1]
    pts *= np.array([w_near, h_near, w_near])[:, None]
    pts[0] += left
    pts[1] += bottom
    depth_offset = pts[2].mean()
    used = metadata.weights > 0  # the others add nothing to any weighted sum
    canonical, weights = metadata.canonical[used], metadata.weights[used]

    def lift(scale: float) -> np.ndarray:  # (3, N)
        out = pts.copy()
        out[2] = (out[2] - depth_offset + NEAR) / scale  # move and rescale z
        out[0] *= out[2] / NEAR  # unproject
        out[1] *= out[2] / NEAR
        out[2] *= -1  # change handedness
        return out

    def scale_of(metric: np.ndarray) -> float:
        fit = weighted_procrustes(canonical, metric[:, used].T, weights)
        return float(np.linalg.norm(fit[:3, 0]))

    first = pts.copy()
    first[2] *= -1
    s1 = scale_of(first)
    s2 = scale_of(lift(s1))
    return lift(s1 * s2).T


def pose_matrix(
    landmarks: np.ndarray, width: int, height: int, metadata: GeometryMetadata,
    vertical_fov_deg: float = VERTICAL_FOV_DEG,
) -> np.ndarray:
    """(4, 4) facial transformation matrix of one face: landmarks (≥468, 3) normalised
    x, y in the image and z scaled like x (FaceLandmarker's output); the first 468 are
    used (the canonical face has no iris points). ``vertical_fov_deg``: the camera's
    assumed field of view (MediaPipe's 63° by default)."""
    metric = metric_landmarks(landmarks, width, height, metadata, vertical_fov_deg)
    used = metadata.weights > 0  # the others add nothing to the weighted fit
    return weighted_procrustes(metadata.canonical[used], metric[used], metadata.weights[used])
