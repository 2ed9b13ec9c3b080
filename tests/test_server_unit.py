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

from server.app import (
    App,
    ProtocolError,
    RetargetTrack,
    ServerConfig,
    Session,
    loopback_candidates_only,
    parse,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> App:
    mp = pytest.MonkeyPatch()
    mp.setenv("VN3D_CACHE", str(tmp_path_factory.mktemp("cache")))
    app = App(ServerConfig(size=64))
    app.prepare()
    yield app
    mp.undo()


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (251, 333), (2160, 3840)])
def test_odd_frame_sizes_give_a_render(app, size) -> None:
    session = Session(app, ws=None)
    h, w = size
    frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 90, np.uint8), "rgb24")
    frame.pts, frame.time_base = 0, Fraction(1, 90000)
    image = session.process(frame, time.perf_counter())
    assert image.shape == (64, 64, 3) and image.std() > 5
    assert session.face == "lost"
    session.close_engines()


def test_modes_change_the_output(app) -> None:
    session = Session(app, ws=None)
    frame = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 90, np.uint8), "rgb24")
    frame.pts = 0
    neutral = session.process(frame, time.perf_counter())
    session.mode = "sliders"
    session.sliders = np.array([0, 0, 0, 0, 1, 0], np.float32)  # surprised
    surprised = session.process(frame, time.perf_counter())
    assert np.abs(neutral.astype(int) - surprised.astype(int)).max() > 40
    stats = session.stats(1.0)
    assert stats["fps"] == 2.0 and "render" in stats["stages"]
    session.close_engines()


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

    from server.app import read_stamp, write_stamp

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
        session = Session(app, ws=None)
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
        await asyncio.get_running_loop().run_in_executor(session.executor, session.close_engines)
        return out, stats, track.readyState == "ended"

    out, stats, ended = asyncio.run(run())
    assert out == [4 * 3600, 5 * 3600]  # only the newest queued frame, then the next one
    assert stats["dropped"] == 4 and stats["fps"] == 2.0
    assert ended
