"""The vn3d command: render, demo and its errors, on small sizes."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from engines.face.expressions import BASIC_EXPRESSIONS, EXPRESSION_WEIGHTS, parse_weights
from engines.retarget.demo import DemoConfig, demo_parameters
from vn3d.cli import main


def test_render_writes_a_png_of_a_head(tmp_path) -> None:
    out = tmp_path / "head.png"
    rc = main(
        [
            "render",
            "--expression",
            "jawOpen=0.8,mouthSmile_L=0.6",
            "--yaw",
            "20",
            "--identity",
            "0.5,-1",
            "--size",
            "128",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    img = cv2.imread(str(out))
    assert img.shape == (128, 128, 3)
    background = img[0, 0].astype(int)
    head = np.abs(img.astype(int) - background).sum(2) > 30
    assert 0.15 < head.mean() < 0.7


def test_render_transparent_png_has_alpha(tmp_path) -> None:
    out = tmp_path / "head.png"
    assert main(["render", "--size", "64", "--transparent", "--out", str(out)]) == 0
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 64, 4)
    assert img[0, 0, 3] == 0 and img[32, 32, 3] == 255


def test_render_expression_changes_the_image(tmp_path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    main(["render", "--size", "96", "--out", str(a)])
    main(["render", "--size", "96", "--expression", "jawOpen=1", "--out", str(b)])
    diff = np.abs(cv2.imread(str(a)).astype(int) - cv2.imread(str(b)).astype(int)).sum(2)
    rows = np.nonzero(diff.max(1) > 40)[0]
    assert len(rows) > 0 and rows.mean() > 96 * 0.45  # the change is in the lower face


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expression", "jawOpne=1"], "unknown expression"),
        (["--expression", "jawOpen"], "unknown expression"),
        (["--expression", "jawOpen=x"], "NAME=NUMBER"),
        (["--identity", ",".join(["1"] * 101)], "identity"),
    ],
)
def test_render_bad_input_gives_a_clear_error(tmp_path, capsys, args, message) -> None:
    out = tmp_path / "x.png"
    assert main(["render", "--size", "32", "--out", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_assets_give_a_clear_error(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("VN3D_ASSETS", str(tmp_path))
    assert main(["render", "--size", "32", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "ict_facekit_light.npz" in err and str(tmp_path) in err and "fix:" in err


def test_demo_writes_a_playable_clip(tmp_path) -> None:
    out = tmp_path / "demo.mp4"
    args = ["--size", "96", "--fps", "10", "--samples", "0", "--seconds-per-expression", "0.2"]
    assert main(["demo", "--out", str(out), *args]) == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 14  # 7 expressions x 0.2 s x 10 fps
    assert frames[0].shape == (96, 96, 3)
    assert np.abs(frames[0].astype(int) - frames[7].astype(int)).mean() > 1.0
    assert not list(tmp_path.glob(".*part"))


def test_demo_timeline_visits_every_expression(ict) -> None:
    cfg = DemoConfig()
    seen = []
    for i in range(int(cfg.seconds_per_expression * 7 * 10)):
        _, _, label = demo_parameters(ict, i / 10, cfg)
        if not seen or seen[-1] != label:
            seen.append(label)
    assert seen[: len(BASIC_EXPRESSIONS)] == list(BASIC_EXPRESSIONS)


def test_expression_tables_use_valid_names(ict) -> None:
    for weights in EXPRESSION_WEIGHTS.values():
        assert set(weights) <= set(ict.expression_names)
        assert all(0.0 <= w <= 1.0 for w in weights.values())
    assert parse_weights("happy")["mouthSmile_L"] > 0.5
    assert parse_weights(" jawOpen=0.5 , eyeBlink_L=1") == {"jawOpen": 0.5, "eyeBlink_L": 1.0}
