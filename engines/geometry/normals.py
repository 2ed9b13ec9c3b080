"""Smooth, area-weighted vertex normals of a triangle mesh (torch, as the renderer needs them)."""

from __future__ import annotations

import numpy as np
import scipy.sparse
import torch


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted smooth normals.

    vertices: (V, 3); faces: (F, 3) long  ->  (V, 3) unit normals
    """
    tri = vertices[faces]  # (F, 3, 3)
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)  # (F, 3)
    vn = torch.zeros_like(vertices)
    for k in range(3):
        vn.index_add_(0, faces[:, k], fn)
    return torch.nn.functional.normalize(vn, dim=1, eps=1e-12)


class NormalsOperator:
    """The same normals for one fixed triangle list, as a sparse sum (scipy): each output
    row adds the face normals around one vertex. ``rows`` picks which vertices come out,
    in that order (the renderer's split vertices: a seam vertex once per side), so no
    gather follows. About 3x faster than :func:`vertex_normals` on the ICT head."""

    def __init__(self, faces: np.ndarray, n_vertices: int, rows: np.ndarray | None = None
                 ) -> None:
        faces = np.asarray(faces, np.int64)  # (F, 3)
        rows = np.arange(n_vertices) if rows is None else np.asarray(rows, np.int64)  # (R,)
        n_faces = len(faces)
        incidence = scipy.sparse.csr_matrix(  # (V, F): 1 where a vertex is a face's corner
            (np.ones(3 * n_faces, np.float32), (faces.ravel(), np.repeat(np.arange(n_faces), 3))),
            shape=(n_vertices, n_faces))
        self._sum = incidence[rows].tocsr()  # (R, F)
        # each corner's ids contiguous: ndarray.take gathers ~6x faster than fancy indexing
        self._corners = [np.ascontiguousarray(faces[:, k]) for k in range(3)]  # 3 x (F,)

    def __call__(self, vertices: np.ndarray) -> np.ndarray:
        """vertices: (V, 3) float32 -> (R, 3) float32 unit normals."""
        a, b, c = (vertices.take(ids, axis=0) for ids in self._corners)  # (F, 3) each
        e1, e2 = b - a, c - a
        fn = np.empty_like(e1)  # (F, 3) face normals, length twice the area
        fn[:, 0] = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
        fn[:, 1] = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
        fn[:, 2] = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        vn = self._sum @ fn  # (R, 3)
        vn /= np.maximum(np.sqrt((vn * vn).sum(1, keepdims=True)), 1e-12)
        return vn
