"""Smooth, area-weighted vertex normals of a triangle mesh (torch, as the renderer needs them)."""

from __future__ import annotations

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
