"""Server pieces without a network: frame processing of odd sizes, modes, messages."""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from server.app import App
from server.config import ServerConfig
from server.ice import ice_configuration, loopback_candidates_only
from server.protocol import ProtocolError, calibration, parse
from server.retarget_track import RetargetTrack


def process(session, frame: av.VideoFrame) -> np.ndarray:
    """Both stages of a session's frame on this thread: track, then render."""
    session.prepare()
    return session.render(frame, time.perf_counter(), session.track(frame))


@pytest.fixture(scope="module")
def app(tmp_path_factory, seed_cache) -> App:
    mp = pytest.MonkeyPatch()
    mp.setenv("VN3D_CACHE", str(seed_cache(tmp_path_factory.mktemp("cache"))))
    app = App(ServerConfig(size=64))
    app.prepare()
    yield app
    mp.undo()


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (251, 333), (2160, 3840)])
def test_odd_frame_sizes_give_a_render(app, size) -> None:
    session = app.new_session()
    h, w = size
    frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 90, np.uint8), "rgb24")
    frame.pts, frame.time_base = 0, Fraction(1, 90000)
    image = process(session, frame)
    assert image.shape == (64, 64, 3) and image.std() > 5
    assert session.face == "lost"
    session.close_retargeter()


def test_modes_change_the_output(app) -> None:
    session = app.new_session()
    frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 90, np.uint8), "rgb24")
    frame.pts = 0
    neutral = process(session, frame)
    session.mode = "sliders"
    session.sliders = np.array([0, 0, 0, 0, 1, 0], np.float32)  # surprised
    surprised = process(session, frame)
    assert np.abs(neutral.astype(int) - surprised.astype(int)).max() > 40
    stats = session.stats(1.0)
    assert stats["fps"] == 2.0 and "render" in stats["stages"]
    session.close_retargeter()


def test_calibration_messages() -> None:
    assert calibration({"type": "calibrate"}) == ("neutral", 15)
    assert calibration({"type": "calibrate", "kind": "range"}) == ("range", 60)
    assert calibration({"type": "calibrate", "kind": "range", "frames": 30}) == ("range", 30)
    for bad in ({"kind": "max"}, {"kind": None}, {"frames": 0}, {"frames": True},
                {"kind": "range", "frames": 301}):
        with pytest.raises(ProtocolError):
            calibration({"type": "calibrate", **bad})


@pytest.mark.parametrize("kind", ["neutral", "range"])
def test_a_calibration_reaches_the_sessions_tracker(app, kind) -> None:
    session = app.new_session()
    session.calibration = (kind, 5)
    frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 90, np.uint8), "rgb24")
    frame.pts = 0
    process(session, frame)  # no face: the calibration waits for frames with one
    assert session.calibration is None and session.retargeter.tracker.calibrating
    session.close_retargeter()


def test_parse_and_sdp_filter() -> None:
    assert parse('{"type": "ping"}') == {"type": "ping"}
    for bad in ("{", "[1]", '{"type": null}', b"\x00"):
        with pytest.raises(ProtocolError):
            parse(bad)
    sdp = (
        "v=0\r\na=candidate:1 1 udp 1 192.168.1.5 5000 typ host\r\n"
        "a=candidate:2 1 udp 1 127.0.0.1 5001 typ host\r\n"
        "a=candidate:3 1 udp 1 x.local 9 typ host\r\n"
    )
    out = loopback_candidates_only(sdp)
    assert "127.0.0.1" in out and "192.168" not in out and ".local" not in out


def test_benchmark_stamps_survive_blur() -> None:
    import cv2

    from server.stamps import read_stamp, write_stamp

    for value in (0, 1, 777, 2**20 - 1):
        image = np.full((128, 128, 3), 120, np.uint8)
        write_stamp(image, value)
        assert read_stamp(cv2.GaussianBlur(image, (5, 5), 1.5)) == value


class QueuedSource(MediaStreamTrack):
    """A decoded-frame source like aiortc's RemoteStreamTrack: frames wait in a queue."""

    kind = "video"

    def __init__(self, frames: list[av.VideoFrame]) -> None:
        super().__init__()
        self.queue: asyncio.Queue = asyncio.Queue()
        for f in frames:
            self.queue.put_nowait(f)

    async def recv(self) -> av.VideoFrame:
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        return frame


def test_stale_frames_are_dropped_and_counted(app) -> None:
    """Five frames already queued: one render, of the newest; four reported as dropped."""

    def frame(i: int) -> av.VideoFrame:
        f = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 90, np.uint8), "rgb24")
        f.pts, f.time_base = i * 3600, Fraction(1, 90000)
        return f

    async def run() -> tuple[list[int], dict, bool]:
        session = app.new_session()
        source = QueuedSource([frame(i) for i in range(5)])
        track = RetargetTrack(source, session)
        await asyncio.sleep(0)  # the pump runs once: it takes everything queued
        out = [(await track.recv()).pts]
        source.queue.put_nowait(frame(5))
        out.append((await track.recv()).pts)
        stats = session.stats(1.0)
        source.queue.put_nowait(None)  # the source ends: so does the avatar track
        with pytest.raises(MediaStreamError):
            await asyncio.wait_for(track.recv(), 5)
        await asyncio.get_running_loop().run_in_executor(session.executor, session.close_retargeter)
        return out, stats, track.readyState == "ended"

    out, stats, ended = asyncio.run(run())
    assert out == [4 * 3600, 5 * 3600]  # only the newest queued frame, then the next one
    assert stats["dropped"] == 4 and stats["fps"] == 2.0
    assert ended


class SlowStages:
    """A session whose tracking and rendering each take 40 ms of waiting (as native code
    outside the GIL does): what RetargetTrack overlaps."""

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor
        from types import SimpleNamespace

        from server.gates import TurnGate

        self.id, self.dropped = "slow", 0
        self.ctx = SimpleNamespace(render_gate=TurnGate(1), track_gate=TurnGate(1),
                                   stamp_frames=False)
        self.executor = ThreadPoolExecutor(1)
        self.tracker_executor = ThreadPoolExecutor(1)
        self.spans: dict[str, list[tuple[float, float]]] = {"track": [], "render": []}

    def prepare(self) -> None:
        pass

    def _span(self, stage: str) -> None:
        t0 = time.perf_counter()
        time.sleep(0.04)
        self.spans[stage].append((t0, time.perf_counter()))

    def track(self, frame: av.VideoFrame) -> str:
        self._span("track")
        return "tracked"

    def render(self, frame: av.VideoFrame, received_at: float, track: str) -> np.ndarray:
        assert track == "tracked"
        self._span("render")
        return np.zeros((16, 16, 3), np.uint8)


def test_the_next_frame_is_tracked_while_this_one_renders() -> None:
    """A steady camera: tracking of frame n + 1 overlaps the render of frame n, so frames
    come out about once per stage, not once per track + render."""

    async def run() -> tuple[SlowStages, int]:
        session = SlowStages()
        source = QueuedSource([])
        track = RetargetTrack(source, session)

        async def camera() -> None:
            for i in range(200):
                f = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), "rgb24")
                f.pts, f.time_base = i, Fraction(1, 100)
                source.queue.put_nowait(f)
                await asyncio.sleep(0.01)  # 100 fps: always a new frame waiting

        feeding = asyncio.ensure_future(camera())
        frames = 0
        end = asyncio.get_running_loop().time() + 1.2
        while asyncio.get_running_loop().time() < end:
            await track.recv()
            frames += 1
        feeding.cancel()
        track.stop()
        return session, frames

    session, frames = asyncio.run(run())
    renders, tracks = session.spans["render"], session.spans["track"]
    overlapped = sum(any(t0 < r1 and r0 < t1 for t0, t1 in tracks) for r0, r1 in renders)
    print(f"{frames} frames in 1.2 s; {overlapped} of {len(renders)} renders overlapped a track")
    assert overlapped >= 0.8 * len(renders)
    assert frames > 1.2 / 0.08 * 1.4  # sequential stages would give 1.2 s / 80 ms = 15


def test_a_sessions_new_choices_are_set_up_outside_the_render_gate() -> None:
    """Bringing the Retargeter up to the page's choices (a style's hair shell takes ~0.3 s
    to bake) happens before a render takes the server-wide render gate: other sessions'
    renders do not wait for it."""

    class SettingUp(SlowStages):
        def __init__(self) -> None:
            super().__init__()
            self.gate_free_while_preparing: list[bool] = []

        def prepare(self) -> None:
            free = self.ctx.render_gate.acquire(blocking=False)
            if free:
                self.ctx.render_gate.release()
            self.gate_free_while_preparing.append(free)

    async def run() -> SettingUp:
        session = SettingUp()
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), "rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 100)
        track = RetargetTrack(QueuedSource([frame]), session)
        await asyncio.wait_for(track.recv(), 5)
        track.stop()
        return session

    session = asyncio.run(run())
    assert session.spans["render"]  # a frame was rendered
    # once before the first frame, once before the render took the gate
    assert len(session.gate_free_while_preparing) >= 2
    assert all(session.gate_free_while_preparing)


def test_a_call_whose_camera_ends_gives_back_the_track_gate() -> None:
    """A frame tracked but never rendered (the camera ended, nobody asks for video) must
    not keep the server-wide track gate: every other session would stop tracking."""

    async def run() -> bool:
        session = SlowStages()
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), "rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 100)
        source = QueuedSource([frame])
        RetargetTrack(source, session)
        await asyncio.sleep(0.2)  # tracked (40 ms), now waiting for a render
        assert session.spans["track"] and not session.spans["render"]
        source.queue.put_nowait(None)  # the camera ends
        await asyncio.sleep(0.2)
        free = session.ctx.track_gate.acquire(blocking=False)
        return free

    assert asyncio.run(run())


def test_serve_flags_are_made_from_the_config() -> None:
    """Every command-line field of ServerConfig is a `vn3d serve` flag with its default, and
    the flags read back into the same config."""
    from dataclasses import fields

    from server.config import command_line_fields, config_from_args
    from vn3d.cli import build_parser

    parser = build_parser()
    defaults = config_from_args(parser.parse_args(["serve"]))
    assert defaults == ServerConfig()
    args = parser.parse_args([
        "serve", "--port", "9001", "--max-sessions", "2", "--target", "sample:london_001",
        "--ice-server", "stun:a", "--ice-server", "stun:b", "--no-sample-gallery",
        "--dataset", "x", "--reader", "encoder", "--render-slots", "3", "--ice-loopback",
    ])
    config = config_from_args(args)
    assert (config.port, config.max_sessions) == (9001, 2)
    assert config.default_target == "sample:london_001"
    assert config.ice_servers == ["stun:a", "stun:b"] and config.datasets == ["x"]
    turn = config_from_args(parser.parse_args([
        "serve", "--ice-server", "stun:s:3478", "--ice-server", "turn:t:3478?transport=udp",
        "--ice-username", "u", "--ice-credential", "p"]))
    servers = ice_configuration(turn).iceServers  # a relay for a node behind NAT
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        ("stun:s:3478", None, None), ("turn:t:3478?transport=udp", "u", "p")]
    assert not config.sample_gallery and config.ice_loopback and config.render_slots == 3
    assert config.reader == "encoder"
    exposed = {f.name for f in command_line_fields()}
    hidden = {f.name for f in fields(ServerConfig)} - exposed
    assert hidden == {"max_message_bytes", "max_upload_bytes", "web_root", "stats_interval_s"}
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--port", "eighty"])
    with pytest.raises(ValueError, match="go together"):
        ServerConfig(cert="c.pem")
    with pytest.raises(ValueError, match="size even"):  # the video is 4:2:0
        ServerConfig(size=385)
    assert ServerConfig(size=384).size == 384


def test_every_error_code_is_in_the_table() -> None:
    """The codes the server sends are the protocol's table, and the table has no others."""
    import re
    from pathlib import Path

    from server.protocol import ERRORS

    sent = set()
    for path in Path(__file__).resolve().parent.parent.joinpath("server").rglob("*.py"):
        sent |= set(re.findall(r'(?:ProtocolError|error)\(\s*"([a-z_]+)"', path.read_text()))
    assert sent == set(ERRORS)
    with pytest.raises(AssertionError):
        ProtocolError("no_such_code", "x")


def test_malloc_arenas_are_capped_unless_the_user_chose(monkeypatch) -> None:
    from server.malloc_arenas import cap_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False  # the user's setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert cap_malloc_arenas() is True  # this image is glibc (Debian)
