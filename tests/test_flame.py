"""FLAME loading and LBS, on small generated pickles shaped and pickled like the real ones.

The real FLAME files may not be redistributed, so every test writes its own model: 40
vertices, 5 joints, ``shapedirs`` wrapped in a fake chumpy ``Ch`` (the module exists only
while the pickle is written), ``J_regressor`` a ``scipy.sparse.csc_matrix``, protocol 2.
"""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flame_files import (
    GROUPS,
    JAW,
    LEGACY_MODULES,
    N_SHAPE_FILE,
    PARENTS,
    V,
    fake_chumpy,
    make_arrays,
    one_hot_weights,
    write_flame_pickle,
)

from engines.face.flame import FLAME_ENV_VAR, FlameModel, load_flame_pickle
from engines.files.assets import AssetMissingError


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    return make_arrays()


@pytest.fixture(scope="module")
def flame_file(tmp_path_factory: pytest.TempPathFactory, arrays: dict) -> Path:
    return write_flame_pickle(tmp_path_factory.mktemp("flame") / "generic_model.pkl", arrays)


@pytest.fixture(scope="module")
def model(flame_file: Path) -> FlameModel:
    return FlameModel(path=flame_file)


# ---------------------------------------------------------------------------------------
# A numpy reference implementation
# ---------------------------------------------------------------------------------------


def rodrigues(r: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(r)
    if theta < 1e-12:
        return np.eye(3)
    kx, ky, kz = r / theta
    k = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    return np.eye(3) + np.sin(theta) * k + (1 - np.cos(theta)) * k @ k


def shaped(a: dict, shape: np.ndarray, expr: np.ndarray) -> np.ndarray:
    """v_template + shape and expression blendshapes: (V, 3)."""
    sd = a["shapedirs"]
    return (
        a["v_template"]
        + sd[:, :, : len(shape)] @ shape
        + sd[:, :, N_SHAPE_FILE : N_SHAPE_FILE + len(expr)] @ expr
    )


def reference_flame(a: dict, shape: np.ndarray, expr: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """FLAME for one item, written out joint by joint: (V, 3)."""
    v = shaped(a, shape, expr)
    joints = a["J_regressor"] @ v  # (5, 3)
    rots = [rodrigues(pose[3 * i : 3 * i + 3]) for i in range(5)]
    feat = np.concatenate([(r - np.eye(3)).ravel() for r in rots[1:]])  # (36,)
    v_posed = v + a["posedirs"] @ feat
    world: list[np.ndarray] = []
    for i, r in enumerate(rots):
        local = np.eye(4)
        local[:3, :3] = r
        local[:3, 3] = joints[i] - (joints[PARENTS[i]] if i else 0.0)
        world.append(world[PARENTS[i]] @ local if i else local)
    rel = np.stack(world)  # (5, 4, 4)
    rel[:, :3, 3] -= np.einsum("jab,jb->ja", rel[:, :3, :3], joints)
    per_vertex = np.einsum("vj,jab->vab", a["weights"], rel)  # (V, 4, 4)
    return np.einsum("vab,vb->va", per_vertex[:, :3, :3], v_posed) + per_vertex[:, :3, 3]


def run(model: FlameModel, shape: np.ndarray, expr: np.ndarray, pose: np.ndarray) -> np.ndarray:
    t = [torch.as_tensor(x, dtype=torch.float32)[None] for x in (shape, expr, pose)]
    return model(*t)[0].double().numpy()


def random_params(seed: int, n_shape: int = 300, n_expr: int = 100, scale: float = 0.3):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=n_shape),
        rng.normal(size=n_expr),
        rng.normal(scale=scale, size=15),
    )


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


def test_load_without_chumpy(flame_file: Path, arrays: dict) -> None:
    assert b"chumpy.ch" in flame_file.read_bytes()
    assert "chumpy" not in sys.modules
    data = load_flame_pickle(flame_file)
    assert "chumpy" not in sys.modules
    expected = {
        "v_template": ((V, 3), np.float32),
        "shapedirs": ((V, 3, 400), np.float32),
        "posedirs": ((V, 3, 36), np.float32),
        "J_regressor": ((5, V), np.float32),
        "weights": ((V, 5), np.float32),
        "kintree_table": ((2, 5), np.int64),
        "f": ((V - 2, 3), np.int64),
        "J": ((5, 3), np.float32),
    }
    for key, (shape, dtype) in expected.items():
        assert type(data[key]) is np.ndarray, key
        assert data[key].shape == shape and data[key].dtype == dtype, key
    np.testing.assert_allclose(data["shapedirs"], arrays["shapedirs"], rtol=1e-6)
    np.testing.assert_allclose(data["J_regressor"], arrays["J_regressor"], rtol=1e-6)
    np.testing.assert_array_equal(data["f"], arrays["f"])
    assert data["kintree_table"][0, 0] == 4294967295
    assert str(data["bs_style"]) == "lbs"


def test_load_python2_style_pickle(tmp_path: Path, arrays: dict) -> None:
    path = write_flame_pickle(tmp_path / "py2.pkl", arrays, py2=True)
    raw = path.read_bytes()
    assert b"_codecs" not in raw and b"__builtin__" in raw
    assert all(old in raw for _, old in LEGACY_MODULES)
    data = load_flame_pickle(path)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        np.testing.assert_allclose(data[key], arrays[key], rtol=1e-6, err_msg=key)
    np.testing.assert_array_equal(data["f"], arrays["f"])


@pytest.mark.parametrize("protocol", [0, 1, 4, 5])
def test_load_other_protocols(tmp_path: Path, arrays: dict, protocol: int) -> None:
    data = load_flame_pickle(write_flame_pickle(tmp_path / "m.pkl", arrays, protocol))
    np.testing.assert_allclose(data["shapedirs"], arrays["shapedirs"], rtol=1e-6)
    np.testing.assert_allclose(data["J_regressor"], arrays["J_regressor"], rtol=1e-6)


class _Exploit:
    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


@pytest.mark.parametrize("kind", ["os.system", "eval", "numpy.save"])
def test_disallowed_class_is_refused(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Exploit(os.system, (f"touch {marker}",)),
        "eval": _Exploit(eval, (f"open({str(marker)!r}, 'w')",)),
        "numpy.save": _Exploit(np.save, (str(marker), np.zeros(1))),
    }[kind]
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": payload}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        load_flame_pickle(path)
    assert not list(tmp_path.glob("pwned*"))


def test_chumpy_without_array_is_refused(tmp_path: Path) -> None:
    with fake_chumpy() as ch:
        obj = ch(np.zeros(3))
        del obj.x
        raw = pickle.dumps({"shapedirs": obj}, protocol=2)
    path = tmp_path / "derived.pkl"
    path.write_bytes(raw)
    with pytest.raises(pickle.UnpicklingError, match=r"chumpy\.ch\.Ch"):
        load_flame_pickle(path)


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


def test_model_metadata(model: FlameModel, arrays: dict) -> None:
    assert model.name == "flame" and model.units_in_metres == 1.0
    assert (model.n_shape, model.n_expression, model.n_pose, model.n_vertices) == (300, 100, 15, V)
    assert model.expression_names[:2] == ("exp000", "exp001") and len(model.expression_names) == 100
    assert len(model.pose_names) == 15 and model.pose_names[6] == "jaw_rx"
    assert model.parents.tolist() == PARENTS
    assert tuple(model.posedirs.shape) == (36, V * 3)
    topo = model.topology
    assert topo.faces.dtype == np.int32 and topo.n_faces == V - 2
    np.testing.assert_array_equal(topo.faces, arrays["f"])
    assert topo.face_material.dtype == np.int16 and not topo.face_material.any()
    assert topo.material_names == ("skin",)
    assert topo.landmark_vertex_ids.shape == (0,) and topo.landmark_vertex_ids.dtype == np.int64
    assert topo.uvs is None


def test_zero_pose_is_template_plus_blendshapes(model: FlameModel, arrays: dict) -> None:
    shape, expr, _ = random_params(1)
    np.testing.assert_allclose(
        run(model, shape, expr, np.zeros(15)), shaped(arrays, shape, expr), atol=1e-5
    )
    # Fewer columns are zero-padded.
    np.testing.assert_allclose(
        run(model, shape[:4], expr[:7], np.zeros(15)),
        shaped(arrays, shape[:4], expr[:7]),
        atol=1e-5,
    )


def test_truncated_model_takes_expression_from_column_300(flame_file: Path, arrays: dict) -> None:
    small = FlameModel(path=flame_file, n_shape=10, n_expression=5)
    assert len(small.expression_names) == 5
    shape, expr, _ = random_params(2, n_shape=10, n_expr=5)
    np.testing.assert_allclose(
        run(small, shape, expr, np.zeros(15)), shaped(arrays, shape, expr), atol=1e-5
    )


def test_jaw_rotation_moves_only_jaw_vertices(tmp_path: Path) -> None:
    a = make_arrays(seed=3, posedirs=False, weights=one_hot_weights())
    model = FlameModel(path=write_flame_pickle(tmp_path / "m.pkl", a))
    shape, expr, _ = random_params(4)
    pose = np.zeros(15)
    pose[6:9] = [0.4, 0.1, -0.05]
    out = run(model, shape, expr, pose)
    v = shaped(a, shape, expr)
    jaw = np.zeros(V, bool)
    jaw[list(GROUPS[JAW])] = True
    np.testing.assert_allclose(out[~jaw], v[~jaw], atol=1e-6)
    centre = a["J_regressor"][JAW] @ v
    expected = (v[jaw] - centre) @ rodrigues(pose[6:9]).T + centre
    np.testing.assert_allclose(out[jaw], expected, atol=1e-5)
    assert np.abs(out[jaw] - v[jaw]).max() > 1e-3


def test_global_rotation_is_rigid_about_root(tmp_path: Path) -> None:
    a = make_arrays(seed=5, posedirs=False)  # mixed weights: all joints follow the root
    model = FlameModel(path=write_flame_pickle(tmp_path / "m.pkl", a))
    shape, expr, _ = random_params(6)
    pose = np.zeros(15)
    pose[:3] = [0.2, -0.7, 0.3]
    out = run(model, shape, expr, pose)
    v = shaped(a, shape, expr)
    root = a["J_regressor"][0] @ v
    np.testing.assert_allclose(out, (v - root) @ rodrigues(pose[:3]).T + root, atol=1e-5)
    f = a["f"].astype(np.int64)
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    length = lambda x: np.linalg.norm(x[edges[:, 0]] - x[edges[:, 1]], axis=1)  # noqa: E731
    np.testing.assert_allclose(length(out), length(v), atol=1e-5)


def test_pose_correctives_match_reference(model: FlameModel, arrays: dict) -> None:
    shape, expr, _ = random_params(7)
    pose = np.zeros(15)
    pose[3:6] = [0.1, 0.2, 0.0]  # neck
    pose[6:9] = [0.35, 0.0, 0.05]  # jaw
    out = run(model, shape, expr, pose)
    np.testing.assert_allclose(out, reference_flame(arrays, shape, expr, pose), atol=1e-5)
    # The correctives matter: without them the result differs.
    no_corr = dict(arrays, posedirs=np.zeros_like(arrays["posedirs"]))
    assert np.abs(out - reference_flame(no_corr, shape, expr, pose)).max() > 1e-3


def test_batched_equals_per_item(model: FlameModel, arrays: dict) -> None:
    params = [random_params(10 + i) for i in range(3)]
    batch = [torch.tensor(np.stack(p), dtype=torch.float32) for p in zip(*params, strict=True)]
    out = model(*batch)
    assert tuple(out.shape) == (3, V, 3)
    for i, (shape, expr, pose) in enumerate(params):
        np.testing.assert_allclose(out[i].numpy(), run(model, shape, expr, pose), atol=1e-6)
        np.testing.assert_allclose(
            out[i].numpy(), reference_flame(arrays, shape, expr, pose), atol=1e-5
        )


def test_pose_from_deca(model: FlameModel, arrays: dict) -> None:
    pose6 = torch.arange(12, dtype=torch.float32).reshape(2, 6) / 20
    pose = FlameModel.pose_from_deca(pose6)
    assert tuple(pose.shape) == (2, 15)
    assert torch.equal(pose[:, 0:3], pose6[:, :3])  # global
    assert torch.equal(pose[:, 6:9], pose6[:, 3:])  # jaw
    assert not pose[:, 3:6].any() and not pose[:, 9:].any()  # neck, eyes
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        FlameModel.pose_from_deca(torch.zeros(2, 5))


@pytest.mark.parametrize(
    ("shape", "expr", "pose"),
    [
        ((1, 300), (1, 100), (1, 14)),
        ((1, 301), (1, 100), (1, 15)),
        ((1, 300), (1, 101), (1, 15)),
        ((2, 300), (1, 100), (2, 15)),
        ((1, 300), (1, 100), (15,)),
    ],
)
def test_wrong_parameter_shapes(model: FlameModel, shape: tuple, expr: tuple, pose: tuple) -> None:
    with pytest.raises(ValueError, match="flame"):
        model(torch.zeros(shape), torch.zeros(expr), torch.zeros(pose))


def test_too_many_components_requested(flame_file: Path) -> None:
    with pytest.raises(ValueError, match="n_expression"):
        FlameModel(path=flame_file, n_expression=101)


def test_not_a_flame_file(tmp_path: Path, arrays: dict) -> None:
    broken = {k: v for k, v in arrays.items() if k != "posedirs"}
    with pytest.raises(ValueError, match="posedirs"):
        FlameModel(path=write_flame_pickle(tmp_path / "m.pkl", broken))


# ---------------------------------------------------------------------------------------
# Finding the file
# ---------------------------------------------------------------------------------------


def test_missing_file_explains_how_to_get_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "generic_model.pkl"
    with pytest.raises(AssetMissingError) as err:
        FlameModel(path=path)
    msg = str(err.value)
    assert str(path) in msg and "flame.is.tue.mpg.de" in msg
    assert "flame2023.pkl" in msg and FLAME_ENV_VAR in msg
    assert isinstance(err.value, FileNotFoundError)


def test_env_var_points_at_the_file(monkeypatch: pytest.MonkeyPatch, flame_file: Path) -> None:
    monkeypatch.setenv(FLAME_ENV_VAR, str(flame_file))
    assert FlameModel().n_vertices == V
    missing = flame_file.parent / "missing.pkl"
    monkeypatch.setenv(FLAME_ENV_VAR, str(missing))
    with pytest.raises(AssetMissingError, match=FLAME_ENV_VAR) as err:
        FlameModel()
    assert str(missing) in str(err.value)


def test_default_path_under_asset_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, arrays: dict
) -> None:
    monkeypatch.delenv(FLAME_ENV_VAR, raising=False)
    monkeypatch.setenv("VN3D_ASSETS", str(tmp_path))
    default = tmp_path / "flame" / "generic_model.pkl"
    with pytest.raises(AssetMissingError) as err:
        FlameModel()
    assert str(default) in str(err.value)
    write_flame_pickle(default, arrays)
    assert FlameModel().n_vertices == V
