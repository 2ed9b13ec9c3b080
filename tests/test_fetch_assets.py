"""scripts/fetch_assets.py offline: the ICT packer on a tiny FaceXModel, checksums, no network."""

from __future__ import annotations

import importlib.util
import json
import shutil
import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from engines.files.assets import ASSETS, asset_root, sha256_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fetch_assets.py"

NEUTRAL = np.array(
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [2.0, 0.5, 0.25]]
)
UV = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [2.5, 0.5], [1.5, 0.75]])
FACES = """usemtl M_Face
f 1/1 2/2 3/3 4/4
usemtl M_BackHead
f 2/2 5/5 3/6
"""
EXPRESSIONS = ["jawOpen", "browDown_L"]  # vertex_indices.json order, not file order
CONFIG = {"expressions": EXPRESSIONS, "idx_to_landmark_verts": [0, 2, 4]}


@pytest.fixture(scope="module")
def fetch() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_assets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_obj(path: Path, vertices: np.ndarray) -> None:
    """An OBJ laid out like FaceXModel's: header comment, mtllib, v, vt, usemtl groups."""
    lines = ["# ICT FaceKit-like test mesh", "mtllib ICTFaceModelMaterial.mtl"]
    lines += [f"v {x:g} {y:g} {z:g}" for x, y, z in vertices]
    lines += [f"vt {u:f} {v:f}" for u, v in UV]
    path.write_text("\n".join(lines) + "\n" + FACES)


def offsets(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.1, size=NEUTRAL.shape).round(5)


@pytest.fixture
def facex_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "FaceXModel"
    folder.mkdir()
    write_obj(folder / "generic_neutral_mesh.obj", NEUTRAL)
    for i in range(2):
        write_obj(folder / f"identity{i:03d}.obj", NEUTRAL + offsets(i))
    write_obj(folder / "browDown_L.obj", NEUTRAL + offsets(10))
    write_obj(folder / "jawOpen.obj", NEUTRAL + offsets(11))
    write_obj(folder / "cheekRaiser_L.obj", NEUTRAL + 5.0)  # upstream has extras: ignored
    (folder / "vertex_indices.json").write_text(json.dumps(CONFIG, indent=4))
    return folder


def test_pack_ict_facekit_layout(fetch: ModuleType, facex_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "packed.part"  # no .npz suffix: must be written to exactly this path
    fetch.pack_ict_facekit(facex_dir, out)
    data = np.load(out)
    assert set(data.files) == fetch.ICT_KEYS
    expected = {  # dtypes and shapes as in shared/assets/ict_facekit/ict_facekit_light.npz
        "neutral": (np.float32, (5, 3)),
        "identity_deltas": (np.float32, (2, 5, 3)),
        "expression_deltas": (np.float32, (2, 5, 3)),
        "faces": (np.int32, (2, 4)),
        "face_uv": (np.int32, (2, 4)),
        "uv": (np.float32, (6, 2)),
        "face_material": (np.int16, (2,)),
    }
    for key, (dtype, shape) in expected.items():
        assert data[key].dtype == dtype, key
        assert data[key].shape == shape, key
    for key in ("material_names", "expression_names", "identity_names", "vertex_indices_json"):
        assert data[key].dtype.kind == "U", key

    np.testing.assert_allclose(data["neutral"], NEUTRAL)
    np.testing.assert_allclose(data["identity_deltas"][1], offsets(1), atol=1e-6)
    np.testing.assert_allclose(data["expression_deltas"][0], offsets(11), atol=1e-6)  # jawOpen
    np.testing.assert_allclose(data["expression_deltas"][1], offsets(10), atol=1e-6)
    np.testing.assert_allclose(data["uv"], UV)
    np.testing.assert_array_equal(data["faces"], [[0, 1, 2, 3], [1, 4, 2, -1]])
    np.testing.assert_array_equal(data["face_uv"], [[0, 1, 2, 3], [1, 4, 5, -1]])
    assert list(data["material_names"]) == ["M_BackHead", "M_Face"]
    np.testing.assert_array_equal(data["face_material"], [1, 0])
    assert list(data["expression_names"]) == EXPRESSIONS
    assert list(data["identity_names"]) == ["identity000", "identity001"]
    assert data["vertex_indices_json"].shape == ()
    assert json.loads(str(data["vertex_indices_json"])) == CONFIG

    fetch.check_ict_npz(out, n_vertices=5, n_identities=2, n_expressions=2)
    with pytest.raises(ValueError, match="identity_deltas"):
        fetch.check_ict_npz(out, n_vertices=5, n_identities=100, n_expressions=2)


def test_packer_rejects_a_mismatched_target(fetch: ModuleType, facex_dir: Path) -> None:
    write_obj(facex_dir / "jawOpen.obj", NEUTRAL[:4])
    with pytest.raises(ValueError, match=r"jawOpen\.obj has 4 vertices"):
        fetch.pack_ict_facekit(facex_dir, facex_dir.parent / "out.npz")


def make_archive(fetch: ModuleType, facex_dir: Path, archive: Path) -> Path:
    """A zip laid out like GitHub's codeload archive of the repository at a commit."""
    root = f"ICT-FaceKit-{fetch.ICT_COMMIT}"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"{root}/LICENSE", "MIT License\n")
        zf.writestr(f"{root}/FaceXModel/", "")
        zf.writestr(f"{root}/Scripts/face_model_io.py", "")
        for file in facex_dir.iterdir():
            zf.write(file, f"{root}/FaceXModel/{file.name}")
    return archive


def test_archive_extraction(fetch: ModuleType, facex_dir: Path, tmp_path: Path) -> None:
    archive = make_archive(fetch, facex_dir, tmp_path / "ICT-FaceKit.zip")
    work = tmp_path / "work"
    extracted = fetch.extract_facex_model(archive, work)
    assert sorted(p.name for p in extracted.iterdir()) == sorted(
        p.name for p in facex_dir.iterdir()
    )
    assert (work / "LICENSE").read_text() == "MIT License\n"

    not_zip = tmp_path / "error.html"
    not_zip.write_text("<html>rate limited</html>")
    with pytest.raises(ValueError, match="not a zip"):
        fetch.extract_facex_model(not_zip, tmp_path / "work2")


def test_fetch_ict_facekit_offline(
    fetch: ModuleType, facex_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_archive(fetch, facex_dir, tmp_path / "ICT-FaceKit.zip")
    urls = []

    def fake_download(url: str, out: Path) -> None:
        urls.append(url)
        shutil.copyfile(archive, out)

    monkeypatch.setattr(fetch, "download", fake_download)
    monkeypatch.setattr(
        fetch, "ICT_SHAPES", {"n_vertices": 5, "n_identities": 2, "n_expressions": 2}
    )
    dest = tmp_path / "assets"
    assert fetch.main(["ict_facekit", "--dest", str(dest)]) == 0
    assert urls == [fetch.ICT_ARCHIVE_URL]
    folder = dest / "ict_facekit"
    assert sorted(p.name for p in folder.iterdir()) == [
        "LICENSE",
        "NOTICE.md",
        "ict_facekit_light.npz",
    ]
    assert fetch.ICT_COMMIT in (folder / "NOTICE.md").read_text()
    assert fetch.main(["ict_facekit", "--dest", str(dest)]) == 0  # verifies: no download
    assert len(urls) == 1


def test_verify_sha256_rejects_a_wrong_file(fetch: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "face_landmarker.task"
    path.write_bytes(b"not the model")
    fetch.verify_sha256(path, sha256_file(path))
    with pytest.raises(fetch.ChecksumError, match="expected"):
        fetch.verify_sha256(path, ASSETS["face_landmarker"].sha256)


def test_failed_download_leaves_no_file(
    fetch: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "download", lambda url, out: out.write_bytes(b"truncated"))
    with pytest.raises(fetch.ChecksumError):
        fetch.fetch_verified("face_landmarker", tmp_path)
    folder = tmp_path / "mediapipe"
    assert list(folder.iterdir()) == []  # neither the target nor a temporary file


def test_a_verified_file_is_not_downloaded_again(
    fetch: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(url: str, out: Path) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(fetch, "download", no_network)
    relpath = ASSETS["canonical_face_model"].relpath  # 46 kB, copied from the real assets
    (tmp_path / relpath).parent.mkdir(parents=True)
    shutil.copyfile(asset_root() / relpath, tmp_path / relpath)
    before = (tmp_path / relpath).stat().st_mtime_ns
    assert fetch.main(["canonical_face_model", "--dest", str(tmp_path)]) == 0
    assert (tmp_path / relpath).stat().st_mtime_ns == before
