"""The live service in-process: an aiortc client streams a GRID clip and gets renders back;
bad signalling gets errors; limits; HTTP. Runs in a private network namespace."""

from __future__ import annotations

import asyncio
import contextlib
import json

import av
import numpy as np
import pytest
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from engines.files.assets import asset_root
from server.app import run_server
from server.config import ServerConfig
from server.ice import loopback_candidates_only

pytestmark = pytest.mark.netns

GRID = asset_root() / "video" / "grid_corpus" / "bbaf2n.mpg"


class ClipTrack(VideoStreamTrack):
    """Plays the GRID clip's frames (looping) at 25 fps."""

    def __init__(self) -> None:
        super().__init__()
        with av.open(str(GRID)) as c:
            self.frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        self.i = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.frames[self.i % len(self.frames)], "rgb24")
        self.i += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


@pytest.fixture
async def server(free_port):
    port = free_port
    cfg = ServerConfig(port=port, ice_loopback=True, max_sessions=2, size=128)
    started = asyncio.Event()
    task = asyncio.create_task(run_server(cfg, ready=lambda url: started.set()))
    await asyncio.wait_for(started.wait(), 120)
    yield f"ws://127.0.0.1:{port}/ws", port
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def call(url: str, seconds: float) -> tuple[list[np.ndarray], list[dict]]:
    """Stream the clip for ``seconds``; return received frames and server messages."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ClipTrack())
    frames: list[np.ndarray] = []
    messages: list[dict] = []
    pulls: list[asyncio.Task] = []

    @pc.on("track")
    def on_track(track) -> None:
        async def pull() -> None:
            while True:
                frames.append((await track.recv()).to_ndarray(format="rgb24"))

        pulls.append(asyncio.ensure_future(pull()))

    async with websockets.connect(url) as ws:
        messages.append(json.loads(await ws.recv()))
        await pc.setLocalDescription(await pc.createOffer())
        sdp = loopback_candidates_only(pc.localDescription.sdp)
        await ws.send(json.dumps({"type": "offer", "sdp": sdp, "sdpType": "offer"}))
        answer = json.loads(await ws.recv())
        messages.append(answer)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        end = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < end:
            with contextlib.suppress(TimeoutError):
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 0.5)))
    for task in pulls:
        task.cancel()
    await pc.close()
    return frames, messages


async def test_client_receives_renders_of_the_target(server) -> None:
    url, _ = server
    frames, messages = await call(url, 8.0)
    assert messages[0]["type"] == "welcome" and messages[1]["type"] == "answer"
    assert len(frames) > 20
    video = np.stack(frames[5:]).astype(np.float32)  # (T, 128, 128, 3)
    assert video.shape[1:] == (128, 128, 3)  # the render size, not the 360x288 input
    background = video[:, :6, :6].mean(axis=(1, 2, 3))
    centre = video[:, 50:78, 50:78].mean(axis=(1, 2, 3))
    assert (np.abs(centre - background) > 15).all()  # a head, not blank
    mouth = video[:, 84:100, 52:76].mean(axis=(2, 3))  # (T, 16)
    assert mouth.std(axis=0).mean() > 2.0  # the mouth moves while the speaker talks
    stats = [m for m in messages if m["type"] == "stats"]
    assert stats and stats[-1]["fps"] > 0 and stats[-1]["face"] in ("tracked", "held")
    assert {"track", "render"} <= set(stats[-1]["stages"])


async def test_bad_messages_get_errors_and_limits_hold(server) -> None:
    url, _ = server
    bad = [
        "{",
        "[]",
        "42",
        '{"type": 3}',
        '{"type": "nope"}',
        json.dumps({"type": "offer", "sdp": 5}),
        json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}),
        json.dumps({"type": "mode", "mode": "dance"}),
        json.dumps({"type": "target", "id": "../../etc/passwd"}),
        json.dumps({"type": "sliders", "values": {"happy": 7}}),
        json.dumps({"type": "calibrate", "frames": -1}),
    ]
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        for msg in bad:
            await ws.send(msg)
            reply = json.loads(await ws.recv())
            assert reply["type"] == "error" and reply["code"] and reply["message"], msg
        await ws.send(b"\x00\x01")
        assert json.loads(await ws.recv())["code"] == "bad_message"
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.send(json.dumps({"type": "mode", "mode": "sliders"}))
        assert json.loads(await ws.recv())["ok"] is True
        huge = json.dumps({"type": "offer", "sdp": "x" * 200_000})
        await ws.send(huge)
        with pytest.raises(websockets.ConnectionClosed):  # over the message size limit
            await ws.recv()
    async with websockets.connect(url) as ws:  # the server still serves
        assert json.loads(await ws.recv())["type"] == "welcome"


async def test_http_serves_the_page_and_thumbnails_only(server) -> None:
    _, port = server

    async def get(path: str) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = await reader.read(1 << 20)
        writer.close()
        return int(data.split(b" ")[1]), data

    status, body = await get("/targets/default.png")
    assert status == 200 and b"\x89PNG" in body
    assert (await get("/targets/nope.png"))[0] == 404
    assert (await get("/../pyproject.toml"))[0] == 404
    assert (await get("/%2e%2e/pyproject.toml"))[0] == 404


async def test_garbage_from_another_client_leaves_the_call_playing(server) -> None:
    url, _ = server

    async def garbage() -> int:
        replies = 0
        async with websockets.connect(url) as ws:
            await ws.recv()
            for i in range(200):
                await ws.send(["{", "null", '{"type":"offer","sdp":"v=0"}', '{"type":1}'][i % 4])
                reply = json.loads(await ws.recv())
                replies += reply["type"] == "error"
                await asyncio.sleep(0.01)
        return replies

    (frames, _), replies = await asyncio.gather(call(url, 6.0), garbage())
    assert replies == 200
    assert len(frames) > 15


async def reply_to(ws, msg: dict) -> dict:
    """Sends ``msg``; its reply (``stats`` sent meanwhile are skipped)."""
    await ws.send(json.dumps(msg))
    while (reply := json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] == "stats":
        pass
    return reply


async def offer(ws) -> tuple[RTCPeerConnection, dict]:
    """A camera peer connection and the server's reply to its offer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ClipTrack())
    await pc.setLocalDescription(await pc.createOffer())
    sdp = loopback_candidates_only(pc.localDescription.sdp)
    reply = await reply_to(ws, {"type": "offer", "sdp": sdp, "sdpType": "offer"})
    if reply["type"] == "answer":
        await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
    return pc, reply


async def test_calls_take_a_slot_at_the_offer_and_hangup_frees_it(server) -> None:
    url, _ = server
    async with contextlib.AsyncExitStack() as stack:
        calls = [await stack.enter_async_context(websockets.connect(url)) for _ in range(2)]
        third = await stack.enter_async_context(websockets.connect(url))
        peers = []
        for ws in calls:  # max_sessions = 2: both slots taken by calls
            assert json.loads(await ws.recv())["type"] == "welcome"
            pc, reply = await offer(ws)
            assert reply["type"] == "answer", reply
            peers.append(pc)
        assert json.loads(await third.recv())["type"] == "welcome"  # a socket needs no slot
        pc, reply = await offer(third)
        peers.append(pc)
        assert reply["type"] == "error" and reply["code"] == "busy", reply
        assert await reply_to(third, {"type": "ping"}) == {"type": "pong"}  # socket kept
        assert await reply_to(calls[0], {"type": "hangup"}) == {"type": "hangup", "ok": True}
        pc, reply = await offer(third)  # the freed slot
        peers.append(pc)
        assert reply["type"] == "answer", reply
        for pc in peers:
            await pc.close()


async def test_a_vanished_client_is_cleaned_up(server) -> None:
    url, _ = server
    for _ in range(2):  # max_sessions = 2: both slots taken, then dropped without a goodbye
        ws = await websockets.connect(url)
        await ws.recv()
        pc, reply = await offer(ws)
        assert reply["type"] == "answer", reply
        ws.transport.abort()  # the tab crashed: no close frame
        await pc.close()
    deadline = asyncio.get_running_loop().time() + 10
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        while True:
            pc, reply = await offer(ws)
            await pc.close()
            if reply["type"] == "answer":
                break
            assert reply["code"] == "busy"
            assert asyncio.get_running_loop().time() < deadline, "calls were not cleaned up"
            await asyncio.sleep(0.5)


def fuzz_messages(n: int, seed: int = 0) -> list[str | bytes]:
    """Malformed signalling: random bytes, truncated JSON, wrong types, huge SDP, unknown
    types, broken offers."""
    rng = np.random.default_rng(seed)
    good = [
        {"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "sdpType": "offer"},
        {"type": "target", "id": "default"},
        {"type": "mode", "mode": "track"},
        {"type": "sliders", "values": {"happy": 0.5}},
        {"type": "calibrate", "frames": 10},
    ]
    junk_values = [None, True, -1, 1e308, "x" * 300, [], {}, [1, 2], {"a": {"b": []}}, "\u202e"]
    out: list[str | bytes] = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            out.append(rng.bytes(int(rng.integers(1, 200))))
        elif kind == 1:
            text = json.dumps(good[i % len(good)])
            out.append(text[: int(rng.integers(0, len(text)))])
        elif kind == 2:
            msg = dict(good[i % len(good)])
            key = list(msg)[int(rng.integers(len(msg)))]
            msg[key] = junk_values[int(rng.integers(len(junk_values)))]
            out.append(json.dumps(msg))
        elif kind == 3:
            out.append(json.dumps({"type": "".join(map(chr, rng.integers(33, 0x2FF, 12)))}))
        elif kind == 4:
            chars = rng.integers(32, 127, int(rng.integers(1, 400)))
            out.append("".join(map(chr, chars)))
        else:
            noise = "".join(map(chr, rng.integers(32, 127, 200)))
            out.append(json.dumps({"type": "offer", "sdp": f"v=0\r\nm=video {noise}"}))
    return out


async def test_fuzz_5000_malformed_messages_then_a_good_client(server) -> None:
    url, _ = server
    messages = fuzz_messages(5000)
    errors = 0
    async with websockets.connect(url) as ws:
        await ws.recv()
        for msg in messages:
            await ws.send(msg)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))  # one reply each
            assert reply["type"] in ("error", "target", "mode", "sliders", "calibrate"), reply
            errors += reply["type"] == "error"
        # a huge SDP closes this connection (message size limit) ...
        await ws.send(json.dumps({"type": "offer", "sdp": "v=0\r\n" + "a" * 100_000}))
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
    assert errors >= 4500
    frames, _ = await call(url, 5.0)  # ... and a good client is still served
    assert len(frames) > 10
