"""Rooms of a cluster gateway, on Janus (``vn3d serve --cluster ... --janus URL``).

The members of a room are hosted on different nodes, so a room's fan-out is Janus's
work: the gateway creates each room as a private Janus VideoRoom (a random number, pin
and secret) on the Janus instance with the fewest of its rooms, asks each member's host
to publish its avatar and microphone into it (``SessionHost.publish``), and tells every
member — in the same ``room`` message as a single server's, plus ``janus``: the
instance's URL, the room's number and pin — which feed each other member publishes. The
pages subscribe to those feeds from Janus themselves. The gateway keeps the room ->
instance map; the room's id in the invite link is the gateway's (128 random bits), never
Janus's number.

A member whose host dies stays in the room without video until its page's new call is
published again; hanging up or closing the page leaves the room; the last one out
destroys the Janus room.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection

from avatars.restyle import hex_colour
from server.cluster.janus import JanusError, JanusSession
from server.protocol import ProtocolError
from server.rooms import RoomBook
from server.session import Session

log = logging.getLogger("vn3d.server")
ROOM_BITRATE = 2_000_000  # bits/s a publisher may send (Janus's default room caps 128 kb)


@dataclass
class JanusRoom:
    id: str  # the invite link's: secrets.token_urlsafe(16)
    instance: str  # the Janus WebSocket URL it lives on
    number: int  # Janus's room id
    pin: str  # needed to join or subscribe (the members get it)
    secret: str  # needed to destroy it (the gateway's only)
    members: dict[str, Session] = field(default_factory=dict)
    feeds: dict[str, int] = field(default_factory=dict)  # session id -> its Janus feed


class JanusRooms(RoomBook):
    def __init__(self, urls: list[str], admin_key: str | None, size: int,
                 sockets: Mapping[str, tuple[Session, ServerConnection]],
                 hosts: Mapping[str, Any], host_reply: Callable[[Any], Awaitable[Any]]
                 ) -> None:  # fmt: skip
        super().__init__(size, sockets)
        self._host_reply = host_reply  # a host's reply, its errors unwrapped (HostPool.reply)
        self.urls = urls
        self.admin_key = {"admin_key": admin_key} if admin_key else {}  # rooms need it
        self._hosts = hosts  # session id -> the Host of its call
        self._admins: dict[str, tuple[JanusSession, int]] = {}

    # -- handlers ----------------------------------------------------------------------
    async def create(self, session: Session, msg: dict) -> dict:
        self._need_call(session)
        await self.leave(session)
        url = min(self.urls, key=lambda u: sum(r.instance == u for r in self._rooms.values()))
        room = JanusRoom(secrets.token_urlsafe(16), url, 1 + secrets.randbelow(2**52),
                         secrets.token_urlsafe(12), secrets.token_urlsafe(12))  # fmt: skip
        await self._janus(url, {"request": "create", "room": room.number, "pin": room.pin,
                                "secret": room.secret, "publishers": self.size,
                                "is_private": True, "videocodec": "vp8",
                                "audiocodec": "opus", "bitrate": ROOM_BITRATE,
                                **self.admin_key})  # fmt: skip
        self._rooms[room.id] = room
        log.info("room %s… on Janus %s", room.id[:6], url)
        return await self._enter(room, session)

    async def subscribe(self, session: Session, msg: dict) -> dict:
        raise ProtocolError("bad_message", "a cluster's rooms are watched from Janus: "
                            "subscribe to the feeds the room message lists")

    # -- membership --------------------------------------------------------------------
    async def leave(self, session: Session) -> None:
        room = self._current(session)
        session.room_id = None
        if room is None or room.members.pop(session.id, None) is None:
            return
        room.feeds.pop(session.id, None)
        host = self._hosts.get(session.id)
        if host is not None:
            host.actor.unpublish.remote()
        if not room.members:
            self._rooms.pop(room.id, None)
            with contextlib.suppress(ProtocolError):
                await self._janus(room.instance, {"request": "destroy", "room": room.number,
                                                  "secret": room.secret})  # fmt: skip
            return
        await self._broadcast(room)

    async def call_started(self, session: Session) -> None:
        """A member's call (re)started on a host: published into its room again."""
        room = self._current(session)
        if room is not None:
            await self._publish(room, session)
            await self._broadcast(room, but=session)

    async def call_lost(self, session: Session) -> None:
        """A member's host died: it stays in the room, without video, until it calls again."""
        room = self._current(session)
        if room is not None and room.feeds.pop(session.id, None) is not None:
            await self._broadcast(room)

    async def changed(self, session: Session) -> None:
        """A member's choices changed (its background): the others are told."""
        room = self._current(session)
        if room is not None:
            await self._broadcast(room, but=session)

    def state(self, room: JanusRoom, session: Session) -> dict:
        return {"type": "room", "room": room.id, "you": session.id, "size": self.size,
                "janus": {"url": room.instance, "room": room.number, "pin": room.pin},
                "participants": [{"id": s.id, "handle": self._handle(room, s),
                                  "target": s.target_id,
                                  "background": hex_colour(s.background),
                                  "video": s.id in room.feeds,
                                  # changes with each publication: watch anew
                                  "call": room.feeds.get(s.id), "feed": room.feeds.get(s.id)}
                                 for s in room.members.values()]}  # fmt: skip

    # -- helpers -------------------------------------------------------------------------
    async def _enter(self, room: JanusRoom, session: Session) -> dict:
        if session.id in self._hosts:  # a member with a call; without one, a viewer
            await self._publish(room, session)
        room.members[session.id] = session
        session.room_id = room.id
        await self._broadcast(room, but=session)
        return self.state(room, session)

    async def _publish(self, room: JanusRoom, session: Session) -> None:
        host = self._hosts[session.id]
        room.feeds[session.id] = await self._host_reply(host.actor.publish.remote(
            room.instance, room.number, room.pin, self._handle(room, session)))

    async def _janus(self, url: str, body: dict) -> dict:
        """A VideoRoom request on the gateway's own session with the instance at ``url``
        (opened on first use, and again after it broke)."""
        try:
            if url not in self._admins:
                janus = await JanusSession.open(url)
                self._admins[url] = (janus, await janus.attach())
            janus, handle = self._admins[url]
            return (await janus.message(handle, body))[0]
        except (JanusError, OSError) as exc:
            admin = self._admins.pop(url, None)
            if admin is not None:
                await admin[0].close()
            raise ProtocolError("room_server", f"the rooms' media server: {exc}"[:300]) from exc

    def _need_call(self, session: Session) -> None:
        if session.id not in self._hosts:
            raise ProtocolError("no_call", "start the camera call first: rooms show its avatar")

    async def close(self) -> None:
        for janus, _ in self._admins.values():
            await janus.close()
        self._admins.clear()
