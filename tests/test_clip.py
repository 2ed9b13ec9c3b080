"""Offline clip retargeting on real GRID clips: output, audio, mouth motion, bad input."""

from __future__ import annotations

import av
import numpy as np
import pytest

from avatars.catalogue import load_target
from engines.files.assets import asset_root
from engines.files.video_writer import VideoWriter, write_y4m
from engines.retarget.clip import ClipConfig, ClipError, retarget_clip
from engines.retarget.target import Target
from vn3d.cli import main

GRID = asset_root() / "video" / "grid_corpus"


def read_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clip_out(ict, tmp_path_factory):
    out = tmp_path_factory.mktemp("clip") / "out.mp4"
    report = retarget_clip(ict, GRID / "bbaf2n.mpg", out, config=ClipConfig(size=160))
    return out, report


def test_clip_has_every_frame_audio_and_faces(clip_out) -> None:
    out, report = clip_out
    with av.open(str(out)) as c:
        kinds = sorted(s.type for s in c.streams)
        duration = float(c.duration / 1e6)
    assert kinds == ["audio", "video"]
    assert report.frames == 75 and abs(duration - 3.0) < 0.2
    assert report.frames_with_face >= 0.95 * report.frames
    assert {"decode", "track", "filter", "model", "render", "encode"} <= set(report.stages)


def test_the_target_speaks(clip_out) -> None:
    frames = np.stack(read_frames(clip_out[0])).astype(np.float32)  # (T, 160, 160, 3)
    mouth = frames[:, 88:108, 68:92].mean(axis=(2, 3))  # (T,) brightness of the mouth
    forehead = frames[:, 30:45, 68:92].mean(axis=(2, 3))
    assert mouth.std() > 3 * forehead.std() and mouth.max() - mouth.min() > 8
    background = frames[:, :8, :8].mean()
    assert abs(frames[:, 80, 80].mean() - background) > 20  # a head, not a blank frame


def test_side_by_side_and_neutral_calibration(ict, tmp_path) -> None:
    out = tmp_path / "sbs.mp4"
    cfg = ClipConfig(size=96, side_by_side=True, calibrate_frames=5)
    retarget_clip(ict, GRID / "lrwp9a.mpg", out, config=cfg)
    first = read_frames(out)[0]
    assert first.shape == (96, 192, 3)
    assert abs(first[48, :96].astype(int) - first[48, 96:].astype(int)).mean() > 10


def test_corrupt_input_gives_a_clear_error_and_no_output(ict, tmp_path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "out.mp4"
    with pytest.raises(ClipError, match="cannot read"):
        retarget_clip(ict, bad, out)
    with pytest.raises(ClipError, match="no such file"):
        retarget_clip(ict, tmp_path / "missing.mp4", out)
    assert list(tmp_path.iterdir()) == [bad]


def test_truncated_clip_keeps_its_decodable_frames(ict, tmp_path) -> None:
    data = (GRID / "sbwe5n.mpg").read_bytes()
    cut = tmp_path / "cut.mpg"
    cut.write_bytes(data[: len(data) // 2])
    report = retarget_clip(ict, cut, tmp_path / "out.mp4", config=ClipConfig(size=64))
    assert 20 < report.frames < 75


def test_frames_without_a_face_do_not_stop_the_clip(ict, tmp_path) -> None:
    src = tmp_path / "mixed.mp4"
    grid = read_frames(GRID / "bbaf2n.mpg")[:30]
    with VideoWriter(src, fps=25) as w:
        for i in range(30):
            w.write(grid[i] if i < 10 or i >= 20 else np.full_like(grid[0], 40))
    report = retarget_clip(ict, src, tmp_path / "out.mp4", config=ClipConfig(size=64))
    assert report.frames == 30
    assert 15 <= report.frames_with_face <= 22


def test_cli_retarget_clip(tmp_path, capsys) -> None:
    out = tmp_path / "cli.mp4"
    rc = main(
        ["retarget-clip", str(GRID / "id2_vcd_swwp2s.mpg"), "--size", "64", "--out", str(out)]
    )
    assert rc == 0 and out.is_file()
    assert "face found in" in capsys.readouterr().out
    rc = main(["retarget-clip", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "x.mp4")])
    assert rc == 2 and "no such file" in capsys.readouterr().err


def test_targets(ict, tmp_path) -> None:
    default = load_target("default", ict)
    assert default.texture.shape == (512, 1024, 3)
    path = tmp_path / "t.npz"
    np.savez(path, shape=np.array([1.0, -0.5], np.float32))
    t = load_target(str(path), ict)
    assert isinstance(t, Target) and t.shape.shape == (1, 2)
    np.savez(path, shape=np.full(200, 1.0, np.float32))
    with pytest.raises(ValueError, match="shape"):
        load_target(str(path), ict)
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a valid target"):
        load_target(str(path), ict)
    with pytest.raises(ValueError, match="unknown target"):
        load_target("../../etc/passwd", ict)


def test_fake_camera_file_at_another_frame_rate(tmp_path) -> None:
    """The browser benchmark's camera at 30 fps from a 25 fps clip: every source frame in
    its time, a sixth more frames, each one of the clip's."""
    clip = asset_root() / "video" / "grid_corpus" / "bbaf2n.mpg"
    same, faster = tmp_path / "25.y4m", tmp_path / "30.y4m"
    assert write_y4m(clip, same) == 75
    assert write_y4m(clip, faster, fps=30) == 90
    with av.open(str(faster)) as f:
        stream = f.streams.video[0]
        assert float(stream.average_rate) == 30
        frames = [x.to_ndarray(format="gray").astype(int) for x in f.decode(stream)]
    with av.open(str(same)) as f:
        source = [x.to_ndarray(format="gray").astype(int) for x in f.decode(video=0)]
    assert len(frames) == 90
    for k in (0, 17, 45, 89):  # output frame k shows source frame floor(k * 25 / 30)
        assert np.array_equal(frames[k], source[k * 25 // 30])
