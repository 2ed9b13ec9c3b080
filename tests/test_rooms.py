"""Rooms (server/rooms.py) through the protocol, with aiortc clients in the private network
namespace: create, join by id, subscribe to another member's avatar and microphone (the
render, not the camera), limits and errors, leaving and vanishing, one render per
publisher however many watch."""

from __future__ import annotations

import asyncio
import contextlib
import json

import numpy as np
import pytest
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack
from inprocess import served
from test_server import ClipTrack

from server.ice import loopback_candidates_only

pytestmark = pytest.mark.netns



class Client:
    """One page: a socket, a call (camera + microphone), subscriptions to the others."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws = None
        self.pc: RTCPeerConnection | None = None
        self.messages: list[dict] = []
        self.replies: asyncio.Queue = asyncio.Queue()
        self.received: dict[str, list[np.ndarray]] = {}  # participant -> avatar frames
        self.audio: dict[str, int] = {}  # participant -> audio frames
        self.subs: dict[str, RTCPeerConnection] = {}
        self.tasks: list[asyncio.Task] = []

    async def open(self) -> dict:
        self.ws = await websockets.connect(self.url)
        welcome = json.loads(await self.ws.recv())
        self.tasks.append(asyncio.ensure_future(self._read()))
        return welcome

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                msg = json.loads(raw)
                self.messages.append(msg)
                if msg["type"] not in ("stats",) and not (
                    msg["type"] == "room" and msg.get("unasked")
                ):
                    await self.replies.put(msg)

    async def ask(self, msg: dict) -> dict:
        await self.ws.send(json.dumps(msg))
        while True:
            reply = await asyncio.wait_for(self.replies.get(), 60)
            if reply["type"] in ("error", msg.get("expect", reply["type"])):
                return reply

    async def call(self) -> dict:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTrack(ClipTrack())
        self.pc.addTrack(AudioStreamTrack())
        self.pc.on("track", lambda t: self._pull(t, "self"))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = loopback_candidates_only(self.pc.localDescription.sdp)
        answer = await self.ask({"type": "offer", "sdp": sdp, "sdpType": "offer",
                                 "expect": "answer"})  # fmt: skip
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return answer

    async def subscribe(self, pid: str) -> dict:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        pc.on("track", lambda t: self._pull(t, pid))
        await pc.setLocalDescription(await pc.createOffer())
        sdp = loopback_candidates_only(pc.localDescription.sdp)
        reply = await self.ask({"type": "subscribe", "participant": pid, "sdp": sdp,
                                "sdpType": "offer", "expect": "subscribed"})  # fmt: skip
        if reply["type"] == "subscribed":
            await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
            self.subs[pid] = pc
        return reply

    def _pull(self, track, who: str) -> None:
        async def pull() -> None:
            with contextlib.suppress(Exception):
                while True:
                    frame = await track.recv()
                    if track.kind == "video":
                        self.received.setdefault(who, []).append(frame.to_ndarray(format="rgb24"))
                    else:
                        self.audio[who] = self.audio.get(who, 0) + 1

        self.tasks.append(asyncio.ensure_future(pull()))

    def last_room(self) -> dict | None:
        rooms = [m for m in self.messages if m["type"] == "room"]
        return rooms[-1] if rooms else None

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for pc in [*self.subs.values(), *([self.pc] if self.pc else [])]:
            await pc.close()
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def server(free_port):
    async with served(free_port, max_sessions=4, size=96, room_size=2,
                      sample_gallery=False) as url:  # fmt: skip
        yield url


async def wait_until(pred, timeout: float, what: str) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not pred():
        if loop.time() - t0 > timeout:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.1)
    return loop.time() - t0


async def test_a_room_of_two(server):
    a, b, c = Client(server), Client(server), Client(server)
    try:
        for x in (a, b, c):
            await x.open()
        assert (await a.ask({"type": "create_room"}))["code"] == "no_call"
        await a.call()
        room = await a.ask({"type": "create_room"})
        assert room["type"] == "room" and len(room["room"]) >= 22 and room["size"] == 2
        assert [p["id"] for p in room["participants"]] == [room["you"]]
        a_id, room_id = room["you"], room["room"]

        await b.call()
        wrong = await b.ask({"type": "join_room", "room": room_id[:-1] + "x"})
        assert wrong["code"] == "unknown_room"
        joined = await b.ask({"type": "join_room", "room": room_id})
        assert {p["id"] for p in joined["participants"]} == {a_id, joined["you"]}
        await wait_until(lambda: len((a.last_room() or {}).get("participants", [])) == 2, 5,
                         "A told that B joined")  # fmt: skip

        await c.call()
        assert (await c.ask({"type": "join_room", "room": room_id}))["code"] == "room_full"
        assert (await c.ask({"type": "subscribe", "participant": a_id, "sdp": "x"}))[
            "code"] == "not_in_room"  # fmt: skip

        reply = await b.subscribe(a_id)
        assert reply["type"] == "subscribed", reply
        await wait_until(lambda: len(b.received.get(a_id, [])) > 15, 60, "A's avatar at B")
        await wait_until(lambda: b.audio.get(a_id, 0) > 20, 30, "A's microphone at B")
        video = np.stack(b.received[a_id][5:]).astype(np.float32)  # (T, 96, 96, 3)
        assert video.shape[1:] == (96, 96, 3)  # the render, not A's 360x288 camera
        centre = video[:, 34:62, 34:62].mean(axis=(1, 2, 3))
        assert (np.abs(centre - video[:, :4, :4].mean(axis=(1, 2, 3))) > 15).all()  # a head

        # A goes: B is told within 5 s, and its connection to A closes
        t_left = asyncio.get_running_loop().time()
        await a.close()
        waited = await wait_until(
            lambda: [p["id"] for p in (b.last_room() or {}).get("participants", [])]
            == [joined["you"]], 5, "B told that A left")  # fmt: skip
        assert waited < 5 and asyncio.get_running_loop().time() - t_left < 5
        await wait_until(lambda: b.subs[a_id].connectionState == "closed"
                         or b.subs[a_id].iceConnectionState in ("closed", "failed"), 20,
                         "B's connection to A closed")  # fmt: skip
    finally:
        for x in (a, b, c):
            await x.close()


async def test_rooms_render_once_per_publisher(server):
    """A's avatar goes to A's own preview and to B through one relay: A's session renders
    each camera frame once (its frames out ~ what A sends), not once per viewer."""
    from server import rooms as rooms_module

    a, b = Client(server), Client(server)
    try:
        await a.open()
        await b.open()
        await a.call()
        room = await a.ask({"type": "create_room"})
        await b.call()
        await b.ask({"type": "join_room", "room": room["room"]})
        await b.subscribe(room["you"])
        await wait_until(lambda: len(b.received.get(room["you"], [])) > 30, 60, "A at B")
        preview, relayed = len(a.received.get("self", [])), len(b.received[room["you"]])
        stats = [m for m in a.messages if m["type"] == "stats"]
        rendered = sum(s["fps"] for s in stats)  # ~ frames rendered (one stats a second)
        assert preview > 10 and relayed > 10
        # two consumers, one render: the renders are about the frames one consumer got
        assert rendered < 1.5 * max(preview, relayed), (rendered, preview, relayed)
        assert rooms_module.SWEEP_S <= 2.5  # a dead call leaves its room well within 5 s
    finally:
        await a.close()
        await b.close()


async def test_a_viewer_watches_without_a_call(server):
    """A page without a camera call (an OBS scene, a viewer) joins and watches; the sweep
    that removes members whose call ended leaves it be."""
    a, v = Client(server), Client(server)
    try:
        await a.open()
        await v.open()
        await a.call()
        room = await a.ask({"type": "create_room"})
        joined = await v.ask({"type": "join_room", "room": room["room"]})
        members = {p["id"]: p for p in joined["participants"]}
        assert members[room["you"]]["video"] and not members[joined["you"]]["video"]
        assert (await v.subscribe(joined["you"]))["code"] == "unknown_participant"  # itself
        assert (await v.subscribe(room["you"]))["type"] == "subscribed"
        await wait_until(lambda: len(v.received.get(room["you"], [])) > 10, 60, "A at V")
        await asyncio.sleep(2.5)  # more than a sweep
        assert len(v.last_room()["participants"]) == 2
    finally:
        await a.close()
        await v.close()


async def test_background_and_handles(server):
    """``background`` re-renders A's avatar on another colour for everyone who watches (the
    avatar-only page keys it out); a member's handle stays the same when its browser comes
    back with a new session, and differs for another browser and in another room."""
    a, v = Client(server + "?user=alice-key-0123456789"), Client(server)
    a2 = Client(server + "?user=alice-key-0123456789")
    try:
        await a.open()
        await v.open()
        await a.call()
        room = await a.ask({"type": "create_room"})
        (me,) = room["participants"]
        assert me["background"] == "#6b7380"  # the server's grey
        bad = await a.ask({"type": "background", "colour": "green", "expect": "background"})
        assert bad["type"] == "error" and bad["code"] == "bad_message"
        joined = await v.ask({"type": "join_room", "room": room["room"]})
        members = {p["id"]: p for p in joined["participants"]}
        assert members[room["you"]]["handle"] != members[joined["you"]]["handle"]
        await v.subscribe(room["you"])
        await wait_until(lambda: len(v.received.get(room["you"], [])) > 5, 60, "A at V")

        reply = await a.ask({"type": "background", "colour": "#00FF00", "expect": "background"})
        assert reply == {"type": "background", "ok": True, "colour": "#00ff00"}
        await wait_until(lambda: any(p["background"] == "#00ff00" for p in
                                     v.last_room()["participants"]), 5, "V told")  # fmt: skip
        n = len(v.received[room["you"]])
        await wait_until(lambda: len(v.received[room["you"]]) > n + 10, 30, "new frames")
        corner = np.stack(v.received[room["you"]][-5:])[:, :8, :8].astype(np.float32)
        assert np.abs(corner - (0, 255, 0)).mean() < 12, corner.mean(axis=(0, 1, 2))
        earlier = np.stack(v.received[room["you"]][:3])[:, :8, :8].astype(np.float32)
        assert np.abs(earlier - (107, 115, 128)).mean() < 12  # grey before

        # the same browser again (a reload: new session, same user key) has the same handle
        await a2.open()
        await a2.call()
        again = await a2.ask({"type": "join_room", "room": room["room"]})
        assert again["code"] == "room_full"  # A, V: --room-size 2
        await a.close()
        await wait_until(lambda: len(v.last_room()["participants"]) == 1, 5, "A gone")
        again = await a2.ask({"type": "join_room", "room": room["room"]})
        handles = {p["id"]: p["handle"] for p in again["participants"]}
        assert handles[again["you"]] == me["handle"] and again["you"] != me["id"]
        # ... and another in a room of its own
        other = await a2.ask({"type": "create_room"})
        assert other["participants"][0]["handle"] != me["handle"]
    finally:
        for x in (a, v, a2):
            await x.close()
