"""Files in the formats of the registered downloads (FLAME pickles, DECA's and MICA's
checkpoints, DECA's landmark embedding), written by the tests: the real key names, tensor
shapes and pickling, with generated values. The real files may not be redistributed."""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

V = 40
N_SHAPE_FILE, N_EXPR_FILE = 300, 100
PARENTS = [-1, 0, 1, 1, 1]
# Vertex groups bound fully to one joint in the "one-hot" weights.
GROUPS = {0: range(0, 8), 1: range(8, 16), 2: range(16, 28), 3: range(28, 34), 4: range(34, 40)}
JAW = 2


# ---------------------------------------------------------------------------------------
# Generating FLAME-like pickles
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def fake_chumpy() -> Iterator[type]:
    """A ``chumpy.ch.Ch`` importable only inside the ``with`` block (for pickling)."""

    class Ch:
        def __init__(self, x: np.ndarray) -> None:
            self.x = x
            self._dirty_vars: set[str] = set()
            self._itr = None
            self._make_dense = False
            self._make_sparse = False
            self._depends_on_deps: dict[str, object] = {}

        def __getstate__(self) -> dict[str, object]:  # chumpy drops _parents/_cache
            return dict(self.__dict__)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    chumpy, ch = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")
    ch.Ch = Ch  # type: ignore[attr-defined]
    chumpy.ch = ch  # type: ignore[attr-defined]
    sys.modules.update({"chumpy": chumpy, "chumpy.ch": ch})
    try:
        yield Ch
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def one_hot_weights() -> np.ndarray:
    w = np.zeros((V, 5))
    for j, ids in GROUPS.items():
        w[list(ids), j] = 1.0
    return w


def make_arrays(
    seed: int = 0, posedirs: bool = True, weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """float64 arrays as in the real file (before the chumpy/sparse wrapping)."""
    rng = np.random.default_rng(seed)
    j_reg = np.zeros((5, V))
    for j, ids in GROUPS.items():
        j_reg[j, list(ids)] = 1.0 / len(ids)
    if weights is None:
        weights = rng.dirichlet(np.ones(5), size=V)
    return {
        "v_template": rng.normal(scale=0.1, size=(V, 3)),
        "shapedirs": rng.normal(scale=0.01, size=(V, 3, N_SHAPE_FILE + N_EXPR_FILE)),
        "posedirs": rng.normal(scale=0.01, size=(V, 3, 36)) if posedirs else np.zeros((V, 3, 36)),
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32),
        "f": np.array([[i, i + 1, i + 2] for i in range(V - 2)], dtype=np.uint32),
    }


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as the real (Python 2) files hold them."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


LEGACY_MODULES = (  # module names as written by the numpy/scipy of the real files
    (b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"),
    (b"scipy.sparse._csc\n", b"scipy.sparse.csc\n"),
)


def write_flame_pickle(
    path: Path, arrays: dict[str, np.ndarray], protocol: int = 2, py2: bool = False
) -> Path:
    """Pickle like the real files; ``py2`` also mimics Python 2 strings and module names."""
    with fake_chumpy() as ch:
        data = dict(arrays)
        data["shapedirs"] = ch(arrays["shapedirs"])
        data["J_regressor"] = sp.csc_matrix(arrays["J_regressor"])
        data["J"] = arrays["J_regressor"] @ arrays["v_template"]
        data["bs_style"], data["bs_type"] = "lbs", "lrotmin"
        if py2:
            buf = io.BytesIO()
            Py2Pickler(buf, protocol=2).dump(data)
            raw = buf.getvalue()
            for new, old in LEGACY_MODULES:
                raw = raw.replace(new, old)
        else:
            raw = pickle.dumps(data, protocol=protocol)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


# ---------------------------------------------------------------------------------------
# A head-sized FLAME model: an ellipsoid with the jaw joint under the lower half
# ---------------------------------------------------------------------------------------


def head_arrays(seed: int = 0, n_lat: int = 24, n_lon: int = 32) -> dict[str, np.ndarray]:
    """FLAME-format arrays for a 0.16 x 0.22 x 0.18 m ellipsoid (metres, like FLAME): the
    lower front is bound to the jaw, the rest to the head, small random blendshapes."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]  # (n_lat - 1,)
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    unit = np.r_[[[0, 1, 0]], ring, [[0, -1, 0]]]  # (V, 3)
    verts = unit * [0.08, 0.11, 0.09]
    n = len(verts)
    faces = []
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b = 1 + i * n_lon + j, 1 + i * n_lon + (j + 1) % n_lon
            if i == 0:
                faces.append([0, b, a])
            if i == n_lat - 2:
                faces.append([n - 1, a, b])
            else:
                c, d = a + n_lon, b + n_lon
                faces += [[a, b, d], [a, d, c]]
    weights = np.zeros((n, 5))
    jaw = (verts[:, 1] < -0.03) & (verts[:, 2] > 0)
    weights[jaw, 2], weights[~jaw, 1] = 1.0, 1.0
    j_reg = np.zeros((5, n))
    j_reg[:, :] = 1.0 / n  # every joint at the centre, the jaw a little back and down
    j_reg[2] = 0
    j_reg[2, np.argsort(np.abs(verts[:, 1] + 0.02) + np.abs(verts[:, 2]))[:8]] = 1 / 8
    return {
        "v_template": verts,
        "shapedirs": rng.normal(scale=0.0002, size=(n, 3, 400)),  # a few mm in all
        "posedirs": np.zeros((n, 3, 36)),
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32),
        "f": np.asarray(faces, dtype=np.uint32)[:, ::-1].copy(),  # outward, as FLAME's
    }


# ---------------------------------------------------------------------------------------
# DECA's landmark embedding, DECA's and MICA's checkpoints
# ---------------------------------------------------------------------------------------


def embedding_dict(n_faces: int, seed: int = 0) -> dict:
    """As in DECA's landmark_embedding.npy: static/full numpy, dynamic torch tensors."""
    import torch

    rng = np.random.default_rng(seed)

    def bary(*shape: int) -> np.ndarray:
        return rng.dirichlet(np.ones(3), size=shape).astype(np.float64)

    return {
        "static_lmk_faces_idx": rng.integers(0, n_faces, 51).astype(np.int64),
        "static_lmk_bary_coords": bary(51),
        "dynamic_lmk_faces_idx": torch.as_tensor(rng.integers(0, n_faces, (79, 17))),
        "dynamic_lmk_bary_coords": torch.as_tensor(bary(79, 17), dtype=torch.float32),
        "full_lmk_faces_idx": rng.integers(0, n_faces, (1, 68)).astype(np.int64),
        "full_lmk_bary_coords": bary(1, 68),
    }


def write_embedding(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(data, dtype=object), allow_pickle=True)
    return path


def deca_state(code: np.ndarray, seed: int = 0) -> dict:
    """``E_flame`` with DECA's key names, from an independent ResNet-50 (torchvision's, the
    network DECA copies its layout and weights from): the feature extractor random, the
    last layer 0 so that the code is ``code`` (236,) for every image."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    resnet = torchvision.models.resnet50(weights=None).state_dict()
    state = {f"encoder.{k}": v for k, v in resnet.items() if not k.startswith("fc.")}
    state["layers.0.weight"] = torch.randn(1024, 2048) * 0.02
    state["layers.0.bias"] = torch.zeros(1024)
    state["layers.2.weight"] = torch.zeros(236, 1024)
    state["layers.2.bias"] = torch.as_tensor(code, dtype=torch.float32)
    return state


def write_deca(path: Path, code: np.ndarray, legacy: bool = True) -> Path:
    """``deca_model.tar``: E_flame, E_detail, D_detail (the detail nets, unused, small)."""
    import torch

    data = {"E_flame": deca_state(code),
            "E_detail": {"layers.2.bias": torch.zeros(128)},
            "D_detail": {"conv.weight": torch.zeros(1)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


def write_mica(path: Path, beta: np.ndarray, arcface: dict, seed: int = 0) -> Path:
    """``mica.tar``: 'arcface' (IResNet-100's state) and 'flameModel': the mapping network
    under ``regressor.`` (output weight 0, so the shape is ``beta`` (300,)) and FLAME's
    buffers under ``generator.``."""
    import torch

    torch.manual_seed(seed)
    flame_model = {"regressor.network.0.weight": torch.randn(300, 512) * 0.05,
                   "regressor.network.0.bias": torch.zeros(300)}
    for i in (1, 2, 3):
        flame_model[f"regressor.network.{i}.weight"] = torch.randn(300, 300) * 0.05
        flame_model[f"regressor.network.{i}.bias"] = torch.zeros(300)
    flame_model["regressor.output.weight"] = torch.zeros(300, 300)
    flame_model["regressor.output.bias"] = torch.as_tensor(beta, dtype=torch.float32)
    flame_model["generator.v_template"] = torch.zeros(5023, 3)
    flame_model["generator.faces_tensor"] = torch.zeros(9976, 3, dtype=torch.long)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arcface": arcface, "flameModel": flame_model}, path)
    return path


# ---------------------------------------------------------------------------------------
# A FLAME file made from ICT's face: the ARKit -> FLAME map must recover ICT's shapes
# ---------------------------------------------------------------------------------------

ICT_TO_TEST_FLAME_DEG = 8.0  # the test FLAME is ICT's face turned about y, in metres


def flame_from_ict(ict, n_extra: int = 12, seed: int = 0) -> tuple[dict, dict, np.ndarray]:
    """FLAME-format arrays whose mesh is ICT's face skin (M_Face) in metres, turned by
    ``ICT_TO_TEST_FLAME_DEG`` about y and moved, whose first 53 expression components are
    ICT's 53 ARKit shapes (then ``n_extra`` random ones), all skinned to the neck; the
    landmark embedding with ICT's iBUG landmarks; and the ICT vertex id of each vertex."""
    rng = np.random.default_rng(seed)
    t = ict.topology
    tris = t.faces[t.face_ids(("M_Face",))]
    keep = np.unique(tris)
    new_id = np.full(ict.n_vertices, -1)
    new_id[keep] = np.arange(len(keep))
    faces = new_id[tris]
    a = np.radians(ICT_TO_TEST_FLAME_DEG)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    verts = ict.neutral.numpy()[keep] * 0.01 @ rot.T + [0.01, -0.02, 0.03]
    n = len(keep)
    dirs = np.zeros((n, 3, 300 + 53 + n_extra), np.float32)
    dirs[:, :, 300:353] = (ict.expression_dirs.numpy()[:, keep] * 0.01 @ rot.T).transpose(1, 2, 0)
    dirs[:, :, 353:] = rng.normal(scale=0.001, size=(n, 3, n_extra))
    weights = np.zeros((n, 5))
    weights[:, 1] = 1.0
    j_reg = np.full((5, n), 1.0 / n)
    arrays = {
        "v_template": verts, "shapedirs": dirs, "posedirs": np.zeros((n, 3, 36), np.float32),
        "J_regressor": j_reg, "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.uint32),
        "f": faces.astype(np.uint32),
    }
    emb = embedding_dict(len(faces), seed)
    for slot, vid in enumerate(t.landmark_vertex_ids[17:68]):  # iBUG 17-67: static
        v = new_id[vid]
        face = int(np.nonzero((faces == v).any(1))[0][0])
        emb["static_lmk_faces_idx"][slot] = face
        emb["static_lmk_bary_coords"][slot] = (faces[face] == v).astype(np.float64)
    return arrays, emb, keep


def with_skinned_jaw(arrays: dict, jaw_open_column: int) -> dict:
    """The ICT-made FLAME with its jawOpen component removed and the lower face (where
    jawOpen moves it most) skinned to a jaw joint near the back of the jaw line: jawOpen
    can then only be matched by turning FLAME's jaw."""
    out = dict(arrays)
    dirs = arrays["shapedirs"].copy()
    moved = np.linalg.norm(dirs[:, :, jaw_open_column], axis=1)
    dirs[:, :, jaw_open_column] = 0
    lower = moved > 0.3 * moved.max()
    weights = np.zeros_like(arrays["weights"])
    weights[:, 1], weights[lower, 1], weights[lower, 2] = 1, 0, 1
    v = arrays["v_template"]
    pivot = np.argsort(np.abs(v[:, 1] - v[lower][:, 1].max()) + np.abs(v[:, 2] - v[:, 2].min()))
    j_reg = arrays["J_regressor"].copy()
    j_reg[2] = 0
    j_reg[2, pivot[:10]] = 0.1
    out.update(shapedirs=dirs, weights=weights, J_regressor=j_reg)
    return out


# ---------------------------------------------------------------------------------------
# DECA's UV template and the albedo model
# ---------------------------------------------------------------------------------------


def write_head_template(path: Path, arrays: dict) -> Path:
    """An OBJ like DECA's head_template.obj: FLAME's vertices and triangles, with texture
    coordinates (here a cylindrical projection, the face in the middle, with a seam at the
    back: one texture coordinate per triangle corner) in ``f v/vt`` faces."""
    v, f = arrays["v_template"], arrays["f"].astype(np.int64)
    centre = v.mean(0)
    u = (np.arctan2(v[:, 0] - centre[0], v[:, 2] - centre[2]) / (2 * np.pi) + 0.5)[f]  # (F, 3)
    across = np.ptp(u, axis=1) > 0.5  # triangles over the seam: wrap their low corners
    u[across] += (u[across] < 0.5)
    u /= u.max() + 1e-6
    w = ((v[:, 1] - v[:, 1].min()) / np.ptp(v[:, 1]))[f]
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in zip(u.ravel(), w.ravel(), strict=True)]
    t = np.arange(f.size).reshape(-1, 3) + 1
    lines += [f"f {a}/{ta} {b}/{tb} {c}/{tc}"
              for (a, b, c), (ta, tb, tc) in zip((f + 1).tolist(), t.tolist(), strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_albedo(path: Path, bgr: tuple[float, float, float], n: int = 50, seed: int = 0,
                 flame_space: bool = False) -> Path:
    """``FLAME_albedo_from_BFM.npz`` (MU, PC in [0, 1], BGR, 512² × 3) whose mean is the
    colour ``bgr`` everywhere; ``flame_space``: FLAME_texture.npz's keys and 0..255 scale."""
    rng = np.random.default_rng(seed)
    mean = np.tile(np.asarray(bgr, np.float32), 512 * 512)
    basis = rng.normal(scale=0.01, size=(512 * 512 * 3, n)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if flame_space:
        np.savez(path, mean=mean * 255, tex_dir=basis * 255)
    else:
        np.savez(path, MU=mean, PC=basis)
    return path
