"""VN3DFace-style datasets: an end-to-end build on a few photos, and the loader's checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engines.assets import asset_root
from engines.dataset import Dataset, DatasetError, build_dataset
from engines.emotion import default_emotion_models
from engines.facs import LABELS


@pytest.fixture(scope="module")
def built(ict, tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    london = asset_root() / "faces" / "london_set"
    for person in ("001", "004"):
        (photos / person).mkdir()
        shutil.copy(london / f"london_{person}_neutral.jpg", photos / person / "neutral.jpg")
        shutil.copy(london / f"london_{person}_smiling.jpg", photos / person / "happy.jpg")
    (photos / "noface").mkdir()
    (photos / "noface" / "neutral.png").write_bytes(b"not an image")
    out = tmp_path_factory.mktemp("dataset")
    erm = default_emotion_models(ict.expression_names).erm
    manifest = build_dataset(photos, out, ict, erm)
    return photos, out, manifest, erm


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


def test_dataset_subjects_are_targets_in_the_service(built) -> None:
    from server.app import App, ServerConfig

    _, out, _, _ = built
    app = App(ServerConfig(size=64, datasets=[str(out)], avatar_store=str(out / "no-store")))
    ids = [t["id"] for t in app.target_list(None)]
    assert ids[0] == "default" and f"ds-{out.name}-001" in ids and f"ds-{out.name}-004" in ids
    assert app.target(f"ds-{out.name}-001").texture.shape == (512, 1024, 3)
    app.prepare()  # thumbnails for every target
    assert app.thumbnails[f"ds-{out.name}-004"][:4] == b"\x89PNG"


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
    assert main(["eval", str(out)]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["pairs"] == 4  # 2 subjects x (neutral, happy)
    assert 12 < result["summary"]["psnr"] < 45 and 0.3 < result["summary"]["ssim"] <= 1
    assert set(result["per_expression"]) == {"neutral", "happy"}
    text = (out / "eval.md").read_text()
    assert "| vn3d (this dataset) |" in text and "MoFaNeRF" in text
    assert (out / "eval_per_expression.png").read_bytes()[:4] == b"\x89PNG"
