"""The one interface every parametric head implements (ICT-FaceKit, FLAME).

A face model maps identity ``shape`` (B, n_shape), ``expression`` (B, n_expression)
and ``pose`` (B, n_pose) to vertices (B, V, 3). The mesh data that does not change per
frame (triangles, UVs, materials, landmark ids) is a :class:`MeshTopology`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MeshTopology:
    """Static mesh data shared by every posed mesh of a model."""

    faces: np.ndarray  # (F, 3) int32 triangle vertex ids
    face_material: np.ndarray  # (F,) int16 index into material_names
    material_names: tuple[str, ...]
    landmark_vertex_ids: np.ndarray  # (68,) int64, iBUG-68 order where the model has them
    uvs: np.ndarray | None = None  # (T, 2) float32 texture coordinates, v up
    face_uvs: np.ndarray | None = None  # (F, 3) int32 ids into uvs
    # (V, 3) rest-pose unit direction from the eyeball centre for eyeball vertices, 0
    # elsewhere; the model looks along +z, so the iris is where the direction's z is near 1
    eye_directions: np.ndarray | None = None

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    def face_ids(self, materials: tuple[str, ...]) -> np.ndarray:  # (F',) int64
        """Ids of the triangles whose material is one of ``materials``."""
        ids = [self.material_names.index(m) for m in materials]
        return np.nonzero(np.isin(self.face_material, ids))[0]


class FaceModel(torch.nn.Module):
    """Base class: subclasses register buffers and implement :meth:`forward_prepared` (and
    :meth:`prepare_identity` when an identity costs something to apply).

    Class attributes a subclass sets: ``name``, ``units_in_metres`` (how many metres one
    model unit is), ``view_centre`` when its head is not centred on the origin, and in
    ``__init__`` the sizes and ``expression_names``.
    """

    name: str = "face-model"
    units_in_metres: float = 1.0
    view_centre: tuple[float, float, float] = (0.0, 0.0, 0.0)  # where cameras aim (model units)
    n_shape: int
    n_expression: int
    n_pose: int
    expression_names: tuple[str, ...]
    pose_names: tuple[str, ...]
    topology: MeshTopology

    def forward(  # (B, V, 3)
        self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> torch.Tensor:
        """Vertices of identity ``shape`` with ``expression`` and ``pose``: the identity
        prepared (:meth:`prepare_identity`), then :meth:`forward_prepared`."""
        self.check_params(shape, expression, pose)
        return self.forward_prepared(self.prepare_identity(shape), expression, pose)

    @property
    def n_vertices(self) -> int:
        raise NotImplementedError

    def prepare_identity(self, shape: torch.Tensor) -> torch.Tensor:
        """Per-target precomputation for :meth:`forward_prepared` (default: the shape).

        Models whose identity part is costly (ICT: 100 blendshapes) return the identity
        vertices here, so a fixed target pays for them once, not every frame.
        """
        return shape

    def forward_prepared(  # (B, V, 3)
        self, prepared: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` with the output of :meth:`prepare_identity` in place of the shape
        (what a subclass implements)."""
        raise NotImplementedError

    def zero_params(
        self, batch: int = 1, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Zero (shape, expression, pose) for ``batch`` items: the neutral mean head."""
        dev = device if device is not None else self._device()
        return (
            torch.zeros(batch, self.n_shape, device=dev),
            torch.zeros(batch, self.n_expression, device=dev),
            torch.zeros(batch, self.n_pose, device=dev),
        )

    def expression_vector(self, weights: dict[str, float], batch: int = 1) -> torch.Tensor:
        """An expression tensor (batch, n_expression) from ``{name: weight}``.

        Unknown names raise ``KeyError`` listing the valid ones.
        """
        psi = torch.zeros(batch, self.n_expression, device=self._device())
        for key, value in weights.items():
            if key not in self.expression_names:
                raise KeyError(
                    f"unknown expression {key!r} for {self.name}; "
                    f"valid names: {', '.join(self.expression_names)}"
                )
            psi[:, self.expression_names.index(key)] = float(value)
        return psi

    def _device(self) -> torch.device:
        for buf in self.buffers():
            return buf.device
        return torch.device("cpu")

    def check_params(
        self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> None:
        """Raise ``ValueError`` with the expected sizes when a parameter is mis-shaped.

        Shape and expression may have fewer columns than the model (the rest are zero);
        pose must have exactly ``n_pose``.
        """
        b = shape.shape[0]
        for label, t, n, exact in (
            ("shape", shape, self.n_shape, False),
            ("expression", expression, self.n_expression, False),
            ("pose", pose, self.n_pose, True),
        ):
            bad_width = t.shape[-1] != n if exact else t.shape[-1] > n
            if t.ndim != 2 or bad_width or t.shape[0] != b:
                want = f"{n}" if exact else f"<= {n}"
                raise ValueError(
                    f"{self.name}: {label} must be (B, {want}) with the same B as shape; "
                    f"got {tuple(t.shape)}"
                )
