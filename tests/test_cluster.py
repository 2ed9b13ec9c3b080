"""Cluster mode on one machine: a Ray head and two worker nodes with one call slot each
(``vn3d worker``, as separate processes), a gateway (``ClusterApp``) in the test's loop,
and aiortc pages. Calls land on different nodes, a third is told busy, a killed host's
page is asked to offer again and is live within 5 s on the other slot. Runs in a private
network namespace (Ray and the WebRTC media on 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import numpy as np
import pytest
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from test_server import ClipTrack

from server.app import run_server
from server.cluster.gateway import ClusterApp
from server.cluster.janus import JanusSession
from server.cluster.local import ancestor, local_janus
from server.config import ServerConfig
from server.ice import loopback_candidates_only

ray = pytest.importorskip("ray", reason="cluster mode needs the cluster extra (make test "
                          "installs it)")  # fmt: skip
pytestmark = pytest.mark.netns
HOSTS_READY_S = 180  # two session hosts load the face model etc. on a 2-core machine


@pytest.fixture(scope="module")
def cluster(ray_cluster):
    """The session's cluster (conftest ``ray_cluster``); this module's gateways run in the
    test's process, whose Ray driver is shut down after them."""
    yield ray_cluster
    if ray.is_initialized():  # the in-process gateways' driver
        ray.shutdown()


class Gateway(ClusterApp):
    last: Gateway | None = None

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        Gateway.last = self


@contextlib.asynccontextmanager
async def gateway(port: int, address: str, **settings):
    cfg = ServerConfig(port=port, ice_loopback=True, size=128, cluster=address,
                       sample_gallery=False, **settings)  # fmt: skip
    started = asyncio.Event()
    task = asyncio.create_task(run_server(cfg, lambda url: started.set(), Gateway))
    await asyncio.wait_for(started.wait(), 120)
    app = Gateway.last
    end = time.monotonic() + HOSTS_READY_S
    while len(app.pool.hosts) < 2:  # both session hosts started and loaded
        assert time.monotonic() < end, "the session hosts did not start"
        await asyncio.sleep(0.5)
    try:
        yield app, f"ws://127.0.0.1:{port}/ws"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Page:
    """An aiortc page: a socket, a camera call, the frames and messages it receives."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.pc: RTCPeerConnection | None = None
        self.frames: list[float] = []  # arrival times
        self.size: tuple[int, int] | None = None  # of the last frame
        self.messages: list[dict] = []
        self.replies: asyncio.Queue = asyncio.Queue()
        self.reader = asyncio.ensure_future(self.read())
        self.pulls: list[asyncio.Task] = []

    async def read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            self.messages.append(msg)
            if msg["type"] not in ("stats", "reoffer", "welcome"):
                await self.replies.put(msg)

    async def ask(self, msg: dict) -> dict:
        """The reply to ``msg`` (``room`` messages sent unasked meanwhile are skipped,
        but for the room requests, whose reply is one)."""
        while not self.replies.empty():
            self.replies.get_nowait()
        await self.ws.send(json.dumps(msg))
        while True:
            reply = await asyncio.wait_for(self.replies.get(), 60)
            if reply["type"] != "room" or msg["type"] in ("create_room", "join_room"):
                return reply

    async def call(self) -> dict:
        if self.pc is not None:
            await self.pc.close()
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(ClipTrack())

        @pc.on("track")
        def on_track(track) -> None:
            async def pull() -> None:
                with contextlib.suppress(Exception):
                    while True:
                        frame = await track.recv()
                        self.size = (frame.width, frame.height)
                        self.frames.append(time.monotonic())

            self.pulls.append(asyncio.ensure_future(pull()))

        await pc.setLocalDescription(await pc.createOffer())
        sdp = loopback_candidates_only(pc.localDescription.sdp)
        reply = await self.ask({"type": "offer", "sdp": sdp, "sdpType": "offer"})
        if reply["type"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return reply

    async def frames_after(self, t: float, n: int, timeout: float) -> float | None:
        """When the ``n``-th frame after ``t`` arrived (None: not within ``timeout``)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            later = [f for f in self.frames if f > t]
            if len(later) >= n:
                return later[n - 1]
            await asyncio.sleep(0.05)
        return None

    async def close(self) -> None:
        for task in [self.reader, *self.pulls]:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()


async def watch_feed(url: str, janus: dict, feed: int, frames_wanted: int = 31,
                     timeout_s: float = 15.0) -> list:
    """Subscribe to ``feed`` of a Janus room as a page does; the frames seen until
    ``frames_wanted`` have come or ``timeout_s`` has passed (how long the stream takes to
    start and how fast it runs depend on the machine, not on what is tested)."""
    janus_session = await JanusSession.open(url)
    frames: list = []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    @pc.on("track")
    def on_track(track) -> None:
        async def pull() -> None:
            with contextlib.suppress(Exception):
                while True:
                    frames.append((await track.recv()).to_ndarray(format="rgb24"))

        pulls.append(asyncio.ensure_future(pull()))

    pulls: list[asyncio.Task] = []
    try:
        handle = await janus_session.attach()
        _, offer = await janus_session.message(handle, {
            "request": "join", "ptype": "subscriber", "room": janus["room"],
            "pin": janus["pin"], "streams": [{"feed": feed}]})  # fmt: skip
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": "answer", "sdp": pc.localDescription.sdp}
        await janus_session.message(handle, {"request": "start"}, jsep=answer)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(frames) < frames_wanted and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
    finally:
        for task in pulls:
            task.cancel()
        await pc.close()
        await janus_session.close()
    return frames


async def room_message(page: Page, after: int, pred) -> dict:
    """The first ``room`` message after the page's first ``after`` messages that ``pred``
    holds for (within 20 s)."""
    end = time.monotonic() + 20
    while time.monotonic() < end:
        for msg in page.messages[after:]:
            if msg["type"] == "room" and pred(msg):
                return msg
        await asyncio.sleep(0.05)
    pytest.fail(f"no such room message: {page.messages[after:]}")


async def test_a_room_across_two_nodes_through_janus(cluster, free_port, tmp_path) -> None:
    address, _ = cluster
    with local_janus(tmp_path / "janus") as (janus_url, _):
        async with gateway(free_port, address, janus=[janus_url]) as (app, url), \
                contextlib.AsyncExitStack() as stack:  # fmt: skip
            a, b = [Page(await stack.enter_async_context(websockets.connect(url)))
                    for _ in range(2)]  # fmt: skip
            for page in (a, b):
                stack.push_async_callback(page.close)
                assert (await page.call())["type"] == "answer"
            assert app.calls[a_id(app, a)].node != app.calls[a_id(app, b)].node
            made = await a.ask({"type": "create_room"})
            assert made["type"] == "room" and made["janus"]["url"] == janus_url, made
            n = len(a.messages)
            joined = await b.ask({"type": "join_room", "room": made["room"]})
            feeds = {p["id"]: p["feed"] for p in joined["participants"]}
            assert len(feeds) == 2 and all(feeds.values()), joined
            seen_by_a = await room_message(a, n, lambda m: len(m["participants"]) == 2)
            assert {p["id"]: p["feed"] for p in seen_by_a["participants"]} == feeds
            # each watches the other's avatar from Janus (not from its host)
            for other in (joined["you"], seen_by_a["you"]):
                frames = await watch_feed(janus_url, joined["janus"], feeds[other])
                assert len(frames) > 30, "the other's avatar did not come through Janus"
                video = np.stack(frames[-10:]).astype(np.float32)
                assert video.shape[1:] == (128, 128, 3)  # a render, not the 360x288 camera
                assert video[:, 40:88, 40:88].std() > 10  # a head, not a blank frame

            # a's host dies: b sees a without video; a calls again and is published anew
            n = len(b.messages)
            os.kill(app.calls[seen_by_a["you"]].pid, signal.SIGKILL)
            gone = await room_message(b, n, lambda m: not any(
                p["video"] for p in m["participants"] if p["id"] == seen_by_a["you"]))
            assert gone["room"] == made["room"]
            assert (await a.call())["type"] == "answer"
            back = await room_message(b, n, lambda m: any(
                p["feed"] and p["feed"] != feeds[seen_by_a["you"]]
                for p in m["participants"] if p["id"] == seen_by_a["you"]))
            new_feed = next(p["feed"] for p in back["participants"]
                            if p["id"] == seen_by_a["you"])  # fmt: skip
            frames = await watch_feed(janus_url, joined["janus"], new_feed)
            assert len(frames) > 15 and np.stack(frames[-5:])[:, 40:88, 40:88].std() > 10

            n = len(b.messages)  # (b hears of it before a's reply: counted from here)
            assert (await a.ask({"type": "hangup"}))["ok"]  # a leaves; b stays alone
            alone = await room_message(b, n, lambda m: len(m["participants"]) == 1)
            assert alone["participants"][0]["id"] == joined["you"]


async def offered_again(page: Page, reoffers: int, since: float, limit: float) -> float:
    """Once the page got its ``reoffers``-th ``reoffer``, it calls again; when its first
    frames came (within ``limit`` seconds of ``since``)."""
    while sum(m["type"] == "reoffer" for m in page.messages) < reoffers:
        assert time.monotonic() < since + limit, "the page was not asked to offer again"
        await asyncio.sleep(0.05)
    assert (await page.call())["type"] == "answer"
    live = await page.frames_after(time.monotonic(), 5, 5)
    assert live is not None and live - since < limit, f"not live again within {limit} s"
    return live


def a_id(app, page: Page) -> str:
    """The gateway's session id of ``page`` (its welcome's)."""
    return next(m["session"] for m in page.messages if m["type"] == "welcome")


async def test_calls_spread_over_nodes_busy_then_failover(cluster, free_port) -> None:
    address, workers = cluster
    async with gateway(free_port, address, cluster_wait_s=1.0) as (app, url), \
            contextlib.AsyncExitStack() as stack:  # fmt: skip
        pages = []
        for _ in range(3):
            page = Page(await stack.enter_async_context(websockets.connect(url)))
            stack.push_async_callback(page.close)
            pages.append(page)
        a, b, c = pages
        assert (await a.call())["type"] == "answer"
        assert (await a.ask({"type": "mode", "mode": "sliders"}))["ok"]  # kept over failover
        assert (await b.call())["type"] == "answer"
        sessions = list(app.calls)
        nodes = {app.calls[s].node for s in sessions}
        assert len(sessions) == 2 and len(nodes) == 2, "the two calls share a node"
        now = time.monotonic()
        for page in (a, b):
            assert await page.frames_after(now, 10, 30) is not None, "no avatar video"
            assert page.size == (128, 128)  # the gateway's render size, not the 360x288 camera
        busy = await c.call()
        assert busy["type"] == "error" and busy["code"] == "busy", busy
        assert (await c.ask({"type": "ping"}))["type"] == "pong"  # the socket stays
        refused = await a.ask({"type": "create_room"})
        assert refused["type"] == "error" and refused["code"] == "not_in_cluster", refused

        # b hangs up: its slot is free; a's host dies mid-stream
        assert (await b.ask({"type": "hangup"}))["ok"]
        # an offer the host cannot use: its error comes back whole, nothing of the host's
        bad = await c.ask({"type": "offer", "sdp": "v=0\r\nm=video 9 nonsense", "sdpType": "offer"})
        assert bad["type"] == "error" and bad["code"] == "bad_sdp", bad
        assert "pid=" not in bad["message"] and "ray::" not in bad["message"], bad
        a_session = next(s for s, h in app.calls.items())
        old = app.calls[a_session]
        killed = time.monotonic()
        os.kill(old.pid, signal.SIGKILL)  # the host's process, as a crash would
        live = await offered_again(a, 1, killed, 5.0)
        print(f"failover: live again {live - killed:.2f} s after the kill")
        new = app.calls[a_session]
        assert new is not old and new.node != old.node  # the other slot
        stats = [m for m in a.messages if m["type"] == "stats" and m["mode"] == "sliders"]
        await asyncio.sleep(2.5)
        later = [m for m in a.messages if m["type"] == "stats" and m["mode"] == "sliders"]
        assert len(later) > len(stats), "the new host lost the page's mode"

        # the node of a's call leaves (its `vn3d worker` gets SIGTERM; Ray drains it): once
        # the killed host's replacement is up, a moves to it
        end = time.monotonic() + HOSTS_READY_S
        while len(app.pool.hosts) < 2:
            assert time.monotonic() < end, "the killed host was not replaced"
            await asyncio.sleep(0.5)
        leaving = next(p for p in workers if p.pid == ancestor(new.pid, 2))  # worker -> raylet
        leaving.send_signal(signal.SIGTERM)
        left = time.monotonic()
        live = await offered_again(a, 2, left, 8.0)
        print(f"drain: live again {live - left:.2f} s after SIGTERM to the node")
        moved = app.calls[a_session]
        assert moved.node != new.node and not moved.draining
