"""``vn3d doctor``: exit status and report with the real assets, none, and a corrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.files.assets import ASSETS, ENV_VAR
from engines.render.renderer import create_context
from vn3d.doctor import run_doctor

ICT_RELPATH = ASSETS["ict_facekit"].relpath


def test_real_assets_pass_and_name_the_renderer(capsys: pytest.CaptureFixture[str]) -> None:
    ctx = create_context()
    gl_renderer = ctx.info["GL_RENDERER"]
    ctx.release()
    assert run_doctor() == 0
    out = capsys.readouterr().out
    assert gl_renderer in out
    assert "MISSING" not in out
    assert "checksum mismatch" not in out
    backend = next(line for line in out.splitlines() if "encoder backend" in line)
    assert backend.startswith("OK") and ("onnxruntime-" in backend or "tensorrt" in backend)
    assert "sample gallery" in out and "vn3d dataset sample" in out  # conftest hides it


def test_empty_asset_root_fails_with_a_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert run_doctor() == 1
    out = capsys.readouterr().out
    assert f"from ${ENV_VAR}" in out
    line = next(line for line in out.splitlines() if ICT_RELPATH in line)
    assert line.startswith("MISSING")
    assert "fix: run `python scripts/fetch_assets.py ict_facekit`" in out


def test_corrupted_ict_file_is_a_checksum_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / ICT_RELPATH
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the ICT-FaceKit npz")
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert run_doctor() == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "checksum mismatch" in line)
    assert line.startswith("MISSING")
    assert ICT_RELPATH in line
