"""FLAME (Li et al. 2017) as a :class:`FaceModel`, loaded from the official pickles.

The FLAME files (FLAME 2020 ``generic_model.pkl``, FLAME 2023 ``flame2023.pkl``) cannot be
redistributed: each user registers at https://flame.is.tue.mpg.de and downloads them.
They are Python 2 pickles whose ``shapedirs`` is a chumpy ``Ch`` object; chumpy does not
install on current Python/numpy, so :func:`load_flame_pickle` reads them with a restricted
unpickler that stands in for chumpy and refuses any class outside a small whitelist.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import copyreg
import os
import pickle
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from engines.face.lbs import blend_shapes, lbs
from engines.face.model import FaceModel, MeshTopology
from engines.files.registered import FLAME_MODEL

try:
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _np_multiarray
    from numpy.core import numeric as _np_numeric

FLAME_ENV_VAR = FLAME_MODEL.env_var

_FILE_N_SHAPE = 300  # shapedirs columns [0, 300) are identity, [300, 400) expression
_N_JOINTS = 5
JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")  # FLAME's joint order

# ---------------------------------------------------------------------------------------
# Restricted unpickling
# ---------------------------------------------------------------------------------------

_NUMPY_MODULES = frozenset(
    {
        "numpy",
        "numpy.core.multiarray",
        "numpy._core.multiarray",
        "numpy.core.numeric",
        "numpy._core.numeric",
    }
)
_NUMPY_GLOBALS: dict[str, Any] = {
    "ndarray": np.ndarray,
    "dtype": np.dtype,
    "_reconstruct": _np_multiarray._reconstruct,
    "scalar": _np_multiarray.scalar,
    "_frombuffer": _np_numeric._frombuffer,
}
_BUILTINS: dict[str, type] = {  # the rest (int, str, ...) have their own opcodes
    t.__name__: t for t in (object, set, frozenset, list, dict, tuple, slice, complex, bytearray)
}
_OTHER_GLOBALS: dict[tuple[str, str], Any] = {
    ("copyreg", "_reconstructor"): copyreg._reconstructor,  # protocol 0/1 objects
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol-2 pickles written by Python 3
}


def numpy_pickle_global(module: str, name: str) -> Any | None:
    """The numpy class or function a pickled array names, if whitelisted; else None."""
    if module in _NUMPY_MODULES and name in _NUMPY_GLOBALS:
        return _NUMPY_GLOBALS[name]
    return None


class _ChumpyStandIn:
    """Holds the pickled state of a chumpy object; chumpy itself is never imported.

    A plain ``chumpy.ch.Ch`` stores its array under the state key ``x``; the other keys
    (``_dirty_vars``, ``_depends_on_deps``, ...) are bookkeeping and ignored.
    """

    chumpy_class = "chumpy.ch.Ch"

    state: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> _ChumpyStandIn:  # NEWOBJ may pass args
        obj = super().__new__(cls)
        obj.state = {}
        return obj

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict state, slot state)
            state = {k: v for part in state if isinstance(part, dict) for k, v in part.items()}
        self.state = state if isinstance(state, dict) else {}

    def to_array(self) -> np.ndarray:
        if "x" not in self.state:
            raise pickle.UnpicklingError(
                f"{self.chumpy_class} object holds no array under 'x' (a derived chumpy "
                "expression); it cannot be evaluated without chumpy"
            )
        return _to_numpy(self.state["x"])


@cache
def _chumpy_stand_in(module: str, name: str) -> type[_ChumpyStandIn]:
    return type(name, (_ChumpyStandIn,), {"chumpy_class": f"{module}.{name}"})


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy arrays, scipy.sparse matrices, chumpy stand-ins and basics."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_stand_in(module, name)
        if (numpy_global := numpy_pickle_global(module, name)) is not None:
            return numpy_global
        if module == "builtins" and name in _BUILTINS:
            return _BUILTINS[name]
        if (module, name) in _OTHER_GLOBALS:
            return _OTHER_GLOBALS[(module, name)]
        if module == "scipy.sparse" or module.startswith("scipy.sparse."):
            cls = getattr(sp, name, None)  # old pickles name e.g. scipy.sparse.csc
            if isinstance(cls, type) and issubclass(cls, (sp.spmatrix, sp.sparray)):
                return cls
        raise pickle.UnpicklingError(
            f"refusing to unpickle {module}.{name}: a FLAME model pickle only holds numpy "
            "arrays, scipy.sparse matrices and chumpy arrays"
        )


def _to_numpy(value: Any) -> np.ndarray:
    """Chumpy, sparse and array-likes to ndarray: floats float32, integers int64."""
    if isinstance(value, _ChumpyStandIn):
        return value.to_array()
    if isinstance(value, (sp.spmatrix, sp.sparray)):
        value = value.toarray()
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    return arr  # strings such as bs_style stay 0-d str arrays


def load_flame_pickle(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a FLAME model pickle without chumpy.

    Returns every entry as an ndarray: float arrays as float32, integer arrays (``f``,
    ``kintree_table``) as int64, ``shapedirs`` unwrapped from chumpy and ``J_regressor``
    made dense. Any class outside the whitelist raises ``pickle.UnpicklingError``.
    """
    with open(path, "rb") as fh:
        data = _RestrictedUnpickler(fh, encoding="latin1").load()
    if not isinstance(data, dict):
        raise pickle.UnpicklingError(
            f"{path}: expected a dict of arrays, got {type(data).__name__}"
        )
    return {str(key): _to_numpy(value) for key, value in data.items()}


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


def _check_flame_arrays(data: dict[str, np.ndarray], file: Path) -> None:
    """Raise ``ValueError`` when a FLAME entry is missing or mis-shaped."""
    n_verts = data["v_template"].shape[0] if "v_template" in data else -1
    expected = {  # None: any size
        "v_template": (n_verts, 3),
        "shapedirs": (n_verts, 3, None),
        "posedirs": (n_verts, 3, 9 * (_N_JOINTS - 1)),
        "J_regressor": (_N_JOINTS, n_verts),
        "weights": (n_verts, _N_JOINTS),
        "kintree_table": (2, _N_JOINTS),
        "f": (None, 3),
    }
    for key, want in expected.items():
        got = data[key].shape if key in data else None
        ok = got is not None and len(got) == len(want)
        if not (ok and all(w in (None, g) for w, g in zip(want, got, strict=True))):
            raise ValueError(
                f"{file}: not a FLAME model: {key!r} should have shape "
                f"{tuple('*' if w is None else w for w in want)}, got {got}"
            )


class FlameModel(FaceModel):
    """FLAME: 300 identity and 100 expression components, 5 joints, 5023 vertices.

    ``pose`` is (B, 15): axis-angle per joint in FLAME's order ``global, neck, jaw,
    left_eye, right_eye`` (see :data:`JOINT_NAMES`); DECA's 6-value pose converts with
    :meth:`pose_from_deca`.
    """

    name = "flame"
    units_in_metres = 1.0

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        n_shape: int = _FILE_N_SHAPE,
        n_expression: int | None = 100,
    ) -> None:
        super().__init__()
        file = FLAME_MODEL.find(path)
        data = load_flame_pickle(file)
        _check_flame_arrays(data, file)
        shapedirs = data["shapedirs"]  # (V, 3, 300 + n_expression_in_file)
        n_expr_file = shapedirs.shape[2] - _FILE_N_SHAPE
        n_expression = n_expr_file if n_expression is None else n_expression
        if not (0 <= n_shape <= _FILE_N_SHAPE and 0 <= n_expression <= n_expr_file):
            raise ValueError(
                f"{file}: n_shape must be in [0, {_FILE_N_SHAPE}] and n_expression in "
                f"[0, {n_expr_file}]; got {n_shape}, {n_expression}"
            )
        self.n_shape = n_shape
        self.n_expression = n_expression
        self.n_pose = 3 * _N_JOINTS
        self.expression_names = tuple(f"exp{i:03d}" for i in range(n_expression))
        self.pose_names = tuple(f"{j}_r{a}" for j in JOINT_NAMES for a in "xyz")

        def buf(name: str, array: np.ndarray) -> None:
            self.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array)))

        buf("v_template", data["v_template"])  # (V, 3)
        dirs = shapedirs.transpose(2, 0, 1)  # (K, V, 3)
        buf("shapedirs", dirs[:n_shape])  # (n_shape, V, 3)
        buf("exprdirs", dirs[_FILE_N_SHAPE : _FILE_N_SHAPE + n_expression])  # (n_expr, V, 3)
        buf("posedirs", data["posedirs"].reshape(-1, 9 * (_N_JOINTS - 1)).T)  # (36, V * 3)
        buf("J_regressor", data["J_regressor"])  # (5, V)
        parents = data["kintree_table"][0].copy()
        parents[0] = -1  # the file stores uint32 max for the root
        buf("parents", parents)  # (5,)
        buf("lbs_weights", data["weights"])  # (V, 5)
        buf("faces", data["f"])  # (F, 3) int64
        n_faces = data["f"].shape[0]
        self.topology = MeshTopology(
            faces=data["f"].astype(np.int32),
            face_material=np.zeros(n_faces, dtype=np.int16),
            material_names=("skin",),
            # FLAME's 68 landmarks are barycentric points on faces, defined by separate
            # embedding files (e.g. DECA's landmark_embedding.npy) that we do not ship.
            landmark_vertex_ids=np.zeros(0, dtype=np.int64),
        )

    @property
    def n_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @staticmethod
    def pose_from_deca(pose6: torch.Tensor) -> torch.Tensor:
        """DECA's pose (B, 6) = global (3) + jaw (3) axis-angle -> FLAME pose (B, 15).

        Neck and eyes are zero.
        """
        if pose6.ndim != 2 or pose6.shape[1] != 6:
            raise ValueError(f"DECA pose must be (B, 6); got {tuple(pose6.shape)}")
        zeros = pose6.new_zeros(pose6.shape[0], 3)  # (B, 3)
        return torch.cat([pose6[:, :3], zeros, pose6[:, 3:], zeros, zeros], dim=1)

    def prepare_identity(self, shape: torch.Tensor) -> torch.Tensor:  # (B, V, 3)
        """The identity's neutral vertices: template + identity blendshapes."""
        dtype = self.v_template.dtype
        shape = torch.nn.functional.pad(shape.to(dtype), (0, self.n_shape - shape.shape[1]))
        return self.v_template[None] + blend_shapes(shape, self.shapedirs)

    def forward_prepared(  # (B, V, 3)
        self, prepared: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor
    ) -> torch.Tensor:
        """Expression blendshapes, pose correctives and skinning on identity vertices."""
        dtype = self.v_template.dtype
        expression = torch.nn.functional.pad(
            expression.to(dtype), (0, self.n_expression - expression.shape[1]))
        vertices, _ = lbs(
            expression, pose.to(dtype), prepared.to(dtype), self.exprdirs, self.posedirs,
            self.J_regressor, self.parents, self.lbs_weights,
        )
        return vertices
