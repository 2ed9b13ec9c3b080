"""A cluster gateway's rooms on two Janus instances (Debian's ``janus``, private config, in
a private network namespace), with stand-in hosts: each room is made on the instance with
the fewest rooms, as a private VideoRoom that only its pin opens; a full room refuses;
the last member out destroys it on Janus."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from server.cluster.janus import JanusError, JanusSession
from server.cluster.janus_rooms import JanusRooms
from server.cluster.local import local_janus
from server.protocol import ProtocolError

pytestmark = pytest.mark.netns


class StandInHost:
    """A host's actor as the gateway sees it: publish -> a feed id, unpublish."""

    def __init__(self, feed: int) -> None:
        self.actor = SimpleNamespace(publish=SimpleNamespace(remote=self.publish),
                                     unpublish=SimpleNamespace(remote=lambda: None))
        self.feed, self.published = feed, []

    async def publish(self, url: str, room: int, pin: str, display: str) -> int:
        self.published.append((url, room, pin))
        return self.feed


class Socket:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, raw: str) -> None:
        self.sent.append(json.loads(raw))


async def exists(url: str, room: int) -> bool:
    janus = await JanusSession.open(url)
    try:
        handle = await janus.attach()
        return (await janus.message(handle, {"request": "exists", "room": room}))[0]["exists"]
    finally:
        await janus.close()


async def publish_into(url: str, room: int, pin: str) -> None:
    janus = await JanusSession.open(url)
    try:
        handle = await janus.attach()
        await janus.message(handle, {"request": "join", "ptype": "publisher", "room": room,
                                     "pin": pin})  # fmt: skip
    finally:
        await janus.close()


async def test_rooms_spread_over_janus_instances_and_end_on_it(tmp_path) -> None:
    with local_janus(tmp_path / "j1") as (one, _), local_janus(tmp_path / "j2") as (two, _):
        ids = [f"s{i}" for i in range(5)]
        sessions = {i: SimpleNamespace(id=i, user=None, room_id=None, target_id="default",
                                       background=(0.4, 0.4, 0.5)) for i in ids}  # fmt: skip
        sockets = {i: (sessions[i], Socket()) for i in ids}
        hosts = {i: StandInHost(100 + k) for k, i in enumerate(ids)}
        async def reply(call):  # the stand-ins raise nothing to unwrap
            return await call

        rooms = JanusRooms([one, two], None, 2, sockets, hosts, reply)
        try:
            made = [await rooms.create(sessions[i], {}) for i in ids[:3]]
            where = [m["janus"]["url"] for m in made]
            assert where[0] != where[1] and sorted(where) == sorted([one, two, where[2]])
            for m in made:  # on its instance, not on the other, and private (pin)
                url, number = m["janus"]["url"], m["janus"]["room"]
                assert await exists(url, number)
                assert not await exists(two if url == one else one, number)
                assert hosts[m["you"]].published == [(url, number, m["janus"]["pin"])]
                assert m["participants"] == [{**m["participants"][0], "feed": hosts[
                    m["you"]].feed, "video": True}]

            joined = await rooms.join(sessions["s3"], {"room": made[0]["room"]})
            assert {p["feed"] for p in joined["participants"]} == {100, 103}
            told = sockets["s0"][1].sent[-1]  # the member already in it hears of the new one
            assert told["type"] == "room" and len(told["participants"]) == 2
            with pytest.raises(ProtocolError, match="full"):
                await rooms.join(sessions["s4"], {"room": made[0]["room"]})
            with pytest.raises(ProtocolError, match="no such room"):
                await rooms.join(sessions["s4"], {"room": "not-a-room"})

            number, url = made[0]["janus"]["room"], made[0]["janus"]["url"]
            with pytest.raises(JanusError, match="pin"):  # only the pin opens it
                await publish_into(url, number, "not-the-pin")
            await rooms.leave(sessions["s0"])
            assert await exists(url, number)  # s3 is still in it
            await rooms.leave(sessions["s3"])
            assert not await exists(url, number)  # the last one out destroyed it
            with pytest.raises(JanusError, match="No such room"):
                await publish_into(url, number, made[0]["janus"]["pin"])
        finally:
            await rooms.close()
