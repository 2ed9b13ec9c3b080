"""``vn3d camera`` (vn3d/camera/): frames handed to a test double of pyvirtualcam's Camera
(size, format, rate, pacing, the avatar and not the camera), clear errors without a
virtual camera or a source, and a real v4l2loopback device where one exists."""

from __future__ import annotations

import time

import av
import numpy as np
import pytest

from engines.files.assets import asset_root
from vn3d.camera.local import run_local
from vn3d.camera.sink import (
    GREEN,
    VirtualCameraUnavailableError,
    install_hint,
    letterbox,
    loopback_devices,
    open_camera,
    parse_colour,
)
from vn3d.camera.sources import SourceError, VideoFileSource, open_source

GRID = asset_root() / "video" / "grid_corpus" / "bbaf2n.mpg"


class FakeCamera:
    """pyvirtualcam.Camera's interface; keeps what it is given."""

    def __init__(self, width, height, fps, *, fmt=None, device=None, backend=None) -> None:
        self.width, self.height, self.fps, self.fmt = width, height, fps, fmt
        self.device = device or "/dev/video-fake"
        self.frames: list[np.ndarray] = []
        self.sleeps = 0
        self.closed = False

    def send(self, frame: np.ndarray) -> None:
        assert frame.shape == (self.height, self.width, 3) and frame.dtype == np.uint8
        self.frames.append(frame.copy())

    def sleep_until_next_frame(self) -> None:
        self.sleeps += 1
        time.sleep(1 / self.fps)

    def close(self) -> None:
        self.closed = True


def source_frames() -> list[np.ndarray]:
    with av.open(str(GRID)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_local_mode_sends_the_avatar_at_the_camera_size(ict):
    from engines.render.renderer import RenderConfig
    from engines.retarget.retargeter import Retargeter
    from engines.retarget.target import default_target

    camera = open_camera(640, 480, 30, factory=FakeCamera)
    assert camera.fmt == "RGB" and camera.fps == 30
    retargeter = Retargeter(ict, default_target(ict), RenderConfig(480, 480))
    try:
        report = run_local(VideoFileSource(GRID), retargeter, camera, GREEN, max_frames=12)
    finally:
        retargeter.close()
    assert report.frames_sent == len(camera.frames) == 12 and report.frames_with_face >= 10
    assert camera.sleeps == 11  # paced between frames, by the camera's own clock
    video = np.stack(camera.frames).astype(np.int16)  # (12, 480, 640, 3)
    assert (video[:, :, :80] == GREEN).all() and (video[:, :, -80:] == GREEN).all()
    head = video[:, 120:360, 200:440]
    assert np.abs(head - video[:, 5:10, 100:105].mean(axis=(1, 2), keepdims=True)).mean() > 20
    # the avatar, not the webcam: the source frame letterboxed would look nothing like it
    source = letterbox(source_frames()[0], 640, 480).astype(np.int16)
    assert np.abs(video[0, :, 80:-80] - source[:, 80:-80]).mean() > 25


def test_no_virtual_camera_is_a_clear_error_with_the_fix(tmp_path):
    def no_device(*args, **kwargs):
        raise RuntimeError("No v4l2 loopback device found at /dev/video[0-99]")

    with pytest.raises(VirtualCameraUnavailableError) as err:
        open_camera(640, 480, 30, factory=no_device)
    assert "No v4l2 loopback device" in str(err.value) and install_hint() in str(err.value)
    assert "modprobe v4l2loopback exclusive_caps=1" in install_hint("linux")
    assert "OBS" in install_hint("darwin") and "OBS" in install_hint("win32")
    assert loopback_devices(tmp_path) == []  # no video4linux devices there


@pytest.mark.skipif(bool(loopback_devices()), reason="this machine has a v4l2loopback device")
def test_cli_without_a_loopback_device(capsys):
    from vn3d.cli import main

    assert main(["camera", str(GRID), "--frames", "3"]) == 2
    err = capsys.readouterr().err
    assert "vn3d camera: error: no v4l2loopback device" in err
    assert "modprobe v4l2loopback exclusive_caps=1" in err
    assert main(["camera", str(GRID), "--backend", "unitycapture"]) == 2
    assert "no unitycapture virtual camera backend" in capsys.readouterr().err


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="no such video file"):
        open_source(str(tmp_path / "nope.mp4"))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(SourceError, match="cannot read"):
        open_source(str(tmp_path / "bad.mp4"))
    with pytest.raises(SourceError, match="no webcam at index 97"):
        open_source("97")


def test_a_looped_file_plays_on_in_real_time():
    source = VideoFileSource(GRID, loop=True)
    t0 = time.monotonic()
    times = [t for _, (_, t) in zip(range(90), source.frames(), strict=False)]
    assert len(times) == 90 and times[-1] > 3.0  # past the 3 s clip's end
    assert np.all(np.diff(times) > 0)
    assert time.monotonic() - t0 > 0.9 * times[-1]  # not faster than the clip plays


def test_letterbox_and_colours():
    square = np.full((100, 100, 3), 200, np.uint8)
    frame = letterbox(square, 1280, 720, (1, 2, 3))
    assert frame.shape == (720, 1280, 3)
    assert (frame[:, :280] == (1, 2, 3)).all() and (frame[:, 280:1000] == 200).all()
    assert parse_colour("#00FF80") == (0, 255, 128) and parse_colour("green") == GREEN
    with pytest.raises(ValueError, match="background"):
        parse_colour("teal")


@pytest.mark.skipif(not loopback_devices(), reason="no v4l2loopback device on this machine "
                    "(modprobe v4l2loopback exclusive_caps=1 makes one)")  # fmt: skip
def test_real_loopback_device_shows_what_was_sent():
    import cv2

    device = loopback_devices()[0]
    camera = open_camera(640, 480, 30, device=device)
    reader = cv2.VideoCapture(device)
    try:
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, :320] = (250, 20, 20)  # red left half
        for _ in range(30):
            camera.send(frame)
            camera.sleep_until_next_frame()
        ok, got = reader.read()
        assert ok and got.shape[:2] == (480, 640)
        assert got[:, :300, 2].mean() > 200 and got[:, 340:, 2].mean() < 50  # BGR
    finally:
        reader.release()
        camera.close()


# -- remote mode: a vn3d serve renders, this machine writes to the camera ---------------------
@pytest.fixture
async def token_server(free_port):
    from inprocess import served

    async with served(free_port, max_sessions=2, size=128, token="s3cret",
                      sample_gallery=False) as url:  # fmt: skip
        yield url


@pytest.mark.netns
async def test_remote_mode_writes_the_servers_avatar(token_server):
    from vn3d.camera.remote import RemoteError, run_remote

    camera = open_camera(640, 480, 30, factory=FakeCamera)
    report = await run_remote(f"{token_server}?token=s3cret", VideoFileSource(GRID, loop=True),
                              camera, GREEN, max_frames=20, loopback=True)  # fmt: skip
    assert report.frames_sent == len(camera.frames) == 20
    video = np.stack(camera.frames).astype(np.int16)  # (20, 480, 640, 3)
    assert (video[:, :, :80] == GREEN).all()  # the 128² render scaled into the frame
    # the server rendered the head on green too: the frame is one colour around the head
    inside = video[:, 10:60, 90:140]  # in the render's square, above the head
    assert np.abs(inside - GREEN).mean() < 12, inside.mean(axis=(0, 1, 2))
    head = video[:, 120:360, 200:440]
    assert np.abs(head - video[:, 5:10, 100:105].mean(axis=(1, 2), keepdims=True)).mean() > 20
    with pytest.raises(RemoteError, match="unauthorized"):
        await run_remote(f"{token_server}?token=wrong", VideoFileSource(GRID), camera, GREEN,
                         max_frames=2, loopback=True)  # fmt: skip
    with pytest.raises(RemoteError, match="cannot reach"):
        await run_remote("ws://127.0.0.1:9/ws", VideoFileSource(GRID), camera, GREEN,
                         max_frames=2, loopback=True)  # fmt: skip
