"""VN3DFace-style datasets: an end-to-end build on a few photos, and the loader's checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engines.dataset.build import build_dataset
from engines.dataset.loader import Dataset, DatasetError
from engines.emotion.facs import LABELS


@pytest.fixture(scope="module")
def built(london_dataset, tmp_path_factory):
    """The session's London dataset (conftest), copied: these tests write into it."""
    photos, out, manifest, erm = london_dataset
    copy = shutil.copytree(out, tmp_path_factory.mktemp("dataset") / "ds")
    return photos, copy, manifest, erm


def test_build_writes_pairs_and_synthesises_missing_expressions(ict, built) -> None:
    _, out, manifest, _ = built
    assert manifest["subjects"]["noface"]["status"] == "failed"
    ds = Dataset(out)
    assert ds.subjects == ["001", "004"]
    for subject in ds.subjects:
        for expr in LABELS:
            pair = ds.pair(subject, expr)
            assert pair.mesh.is_file() and pair.render.is_file()
            assert pair.synthesised == (expr not in ("neutral", "happy"))
            assert (pair.image is None) == pair.synthesised
        psi_n, _ = ds.parameters(subject, "neutral")
        psi_h, _ = ds.parameters(subject, "happy")
        smile = [ict.expression_names.index(n) for n in ("mouthSmile_L", "mouthSmile_R")]
        assert psi_h[smile].mean() > psi_n[smile].mean()  # the smiling photo smiles more
        psi_s, _ = ds.parameters(subject, "surprised")  # synthesised by the ERM
        assert psi_s[ict.expression_names.index("jawOpen")] > 0.1
    target = ds.target("001", ict)
    assert target.texture.shape == (512, 1024, 3)
    with_hair = [s for s in ds.subjects if (out / "subjects" / s / "hair.npz").is_file()]
    assert with_hair  # both London people have hair in their photos
    for subject in with_hair:  # chosen and aligned as for avatars, for the live target
        hair = ds.target(subject, ict).hair
        assert hair.shape == (32, 32, 100, 3) and np.isfinite(hair).all()
    for subject in ds.subjects:  # the irises' colour from each source photo
        iris = ds.target(subject, ict).iris_rgb
        assert iris is not None and all(0.0 <= c <= 1.0 for c in iris)


def test_build_resumes_and_skips_done_subjects(ict, built) -> None:
    photos, out, _, erm = built
    before = (out / "subjects" / "001" / "neutral.npz").stat().st_mtime_ns
    build_dataset(photos, out, ict, erm)
    assert (out / "subjects" / "001" / "neutral.npz").stat().st_mtime_ns == before


def test_loader_rejects_bad_inputs(ict, built, tmp_path) -> None:
    _, out, _, _ = built
    ds = Dataset(out)
    for bad in ("../001", "/etc", "nobody", "", None):
        with pytest.raises(DatasetError):
            ds.folder(bad)
    with pytest.raises(DatasetError):
        ds.pair("001", "bored")
    with pytest.raises(DatasetError):
        Dataset(tmp_path)  # no manifest
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(DatasetError):
        Dataset(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    np.savez(copy / "subjects" / "004" / "sad.npz", expression=np.zeros(3))
    with pytest.raises(DatasetError):
        Dataset(copy).parameters("004", "sad")
    np.savez(copy / "subjects" / "004" / "hair.npz", positions=np.zeros((2, 3)), rgb=np.ones(3))
    with pytest.raises(DatasetError, match=r"hair\.npz"):
        Dataset(copy).target("004", ict)
    (copy / "subjects" / "004" / "identity.npz").write_bytes(b"truncated")
    with pytest.raises(DatasetError):
        Dataset(copy).target("004", ict)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["subjects"]["../../etc"] = {"status": "done"}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError):
        Dataset(copy).folder("../../etc")


def test_cli_dataset_build_reports_failures(built, tmp_path, capsys) -> None:
    from vn3d.cli import main

    photos, _, _, _ = built
    assert main(["dataset", "build", str(photos), "--out", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "2 subjects built, 1 failed" in out and "failed noface" in out


def test_dataset_subjects_are_targets_in_the_service(ict, built) -> None:
    from server.app import App
    from server.config import ServerConfig

    _, out, _, _ = built
    app = App(ServerConfig(size=64, datasets=[str(out)], avatar_store=str(out / "no-store")))
    ids = [t["id"] for t in app.picker.entries(None)]
    assert ids[0] == "default" and f"{out.name}:001" in ids and f"{out.name}:004" in ids
    assert app.catalogue.get(f"{out.name}:001").texture.shape == (512, 1024, 3)
    app.prepare()  # thumbnails for every target
    from avatars.catalogue import load_target  # clips take subjects as DATASET:SUBJECT

    assert load_target(f"{out}:004", ict).texture.shape == (512, 1024, 3)
    with pytest.raises(DatasetError):
        load_target(f"{out}:nobody", ict)
    with pytest.raises(ValueError, match="DATASET:SUBJECT"):
        load_target("no-such-file.npz", ict)
    assert app.picker.thumbnail(f"{out.name}:004", None)[:4] == b"\x89PNG"


def test_photo_expressions_keep_their_camera(built) -> None:
    _, out, _, _ = built
    with np.load(out / "subjects" / "001" / "happy.npz") as d:
        assert d["photo_landmarks"].shape == (468, 2) and d["photo_focal"] > 0
        assert tuple(d["photo_size"]) == (450, 450)
    with np.load(out / "subjects" / "001" / "sad.npz") as d:
        assert "photo_focal" not in d.files and bool(d["synthesised"])


def test_eval_writes_a_report(built, capsys) -> None:
    from vn3d.cli import main

    _, out, _, _ = built
    assert main(["eval", str(out), "--no-synthetic"]) == 0  # meshes: test_mesh_eval.py
    result = json.loads((out / "eval.json").read_text())
    assert result["pairs"] == 4  # 2 subjects x (neutral, happy)
    assert 12 < result["summary"]["psnr"] < 45 and 0.3 < result["summary"]["ssim"] <= 1
    assert set(result["per_expression"]) == {"neutral", "happy"}
    text = (out / "eval.md").read_text()
    assert "| vn3d (this dataset) |" in text and "MoFaNeRF" in text
    assert (out / "eval_per_expression.png").read_bytes()[:4] == b"\x89PNG"


def touch_photo(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")  # find_photos reads names only


def test_photo_layouts_folders_pattern_and_csv(tmp_path) -> None:
    from engines.dataset.photos import find_photos

    nested = tmp_path / "nested"
    for rel in ("ann/neutral.jpg", "ann/Smiling.PNG", "ann/bored.jpg", "ann/notes.txt",
                "bob/fear.webp", "bob/afraid.jpg", "bad name!/happy.jpg"):
        touch_photo(nested / rel)
    index = find_photos(nested)
    assert {k: sorted(v) for k, v in index.subjects.items()} == {
        "ann": ["happy", "neutral"], "bob": ["afraid"]}
    assert len(index.skipped) == 2  # bob's second afraid photo, the bad subject name
    assert any("second afraid" in why for why in index.skipped)

    flat = tmp_path / "flat"  # V-Face-like: one folder, KDEF-style codes in the names
    for name in ("AF01HA.jpg", "AF01NE.jpg", "AM02SU.jpg", "AM02XX.jpg", "readme.jpg"):
        touch_photo(flat / name)
    index = find_photos(flat, r"(?P<subject>A[FM]\d\d)(?P<expression>[A-Z]{2})\.jpg")
    assert {k: sorted(v) for k, v in index.subjects.items()} == {
        "AF01": ["happy", "neutral"], "AM02": ["surprised"]}
    with pytest.raises(DatasetError):
        find_photos(flat, r"(?P<who>\w+)\.jpg")  # no subject/expression groups

    csv = tmp_path / "list.csv"
    csv.write_text("subject,expression,path\n"
                   "ann,neutral,nested/ann/neutral.jpg\n"
                   "ann,disgust,flat/AF01HA.jpg\n"
                   "cid,happy,nowhere.jpg\n"
                   "../up,happy,flat/AM02SU.jpg\n")
    index = find_photos(None, csv=csv)
    assert {k: sorted(v) for k, v in index.subjects.items()} == {"ann": ["disgusted", "neutral"]}
    assert len(index.skipped) == 2 and "list.csv:4" in index.skipped[0]
    (tmp_path / "bad.csv").write_text("who,what\nann,neutral\n")
    with pytest.raises(DatasetError, match="columns"):
        find_photos(None, csv=tmp_path / "bad.csv")


def test_sample_gallery_builds_in_parallel_and_is_served(ict, built, tmp_path,
                                                         monkeypatch) -> None:
    from engines.dataset.build import build_sample_dataset, sample_dataset_dir
    from server.app import App
    from server.config import ServerConfig

    erm = built[3]
    out = tmp_path / "datasets" / "london-sample"
    manifest = build_sample_dataset(ict, erm, out, workers=2, limit=2)
    assert [s for s, e in manifest["subjects"].items() if e["status"] == "done"] == [
        "london_001", "london_003"]
    ds = Dataset(out)
    for subject in ds.subjects:
        assert [e for e in LABELS if not ds.pair(subject, e).synthesised] == ["neutral", "happy"]
        assert ds.pair(subject, "angry").render.is_file()
    monkeypatch.setenv("VN3D_CACHE", str(tmp_path))
    monkeypatch.delenv("VN3D_SAMPLE_DATASET")  # conftest hides this machine's gallery
    assert sample_dataset_dir() == out
    app = App(ServerConfig(size=64, avatar_store=str(tmp_path / "store")))
    ids = [t["id"] for t in app.picker.entries(None)]
    assert "sample:london_001" in ids and "sample:london_003" in ids
    target = app.catalogue.get("sample:london_003")
    assert target.shape.abs().sum() > 0  # its own identity, not the default head
    no_gallery = App(ServerConfig(size=64, sample_gallery=False,
                                  avatar_store=str(tmp_path / "store")))
    assert "sample:london_001" not in [t["id"] for t in no_gallery.picker.entries(None)]
    (out / "manifest.json").write_text("{damaged")  # a damaged gallery: served without it
    assert [t["id"] for t in App(ServerConfig(size=64, avatar_store=str(tmp_path / "store")))
            .picker.entries(None)] == ["default"]
