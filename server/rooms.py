"""Rooms: calls where each participant's avatar (never the camera) and microphone go to every
other participant.

A participant in a call (``offer`` answered) creates a room (``create_room``); anyone joins
one by its id (``join_room``: the invite link carries it), with a call (a participant,
seen by the others) or without (a viewer, who only watches); the room's id is 128 random
bits and nothing lists rooms. The avatar is rendered once per publisher: its ``RetargetTrack`` goes
through aiortc's ``MediaRelay``, and every consumer — the publisher's own preview and each
subscriber — gets a proxy that holds only the newest frame. A subscriber asks for each
other participant with its own receive-only peer connection (``subscribe``: an offer in,
the answer with that participant's relayed avatar and microphone out), so joining and
leaving never renegotiate anyone's call. Every change of a room goes to all its members as
a ``room`` message (who is in it); a member who hangs up, closes the page or whose call
dies is removed within ``SWEEP_S`` seconds, and everyone's connections to them close.

Each member also has a ``handle``: the same for the same browser (its user key) in the same
room, across reconnects, and unrelated across rooms — the avatar-only page
(``client_web/avatar.html``, for OBS's Browser Source) follows a member by it. A member's
``background`` (``background`` message) is the colour its avatar is rendered on, for
everyone who watches: chroma green lets a video mixer key the head out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc import RTCSessionDescription as Description
from aiortc.contrib.media import MediaRelay
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from avatars.restyle import hex_colour, parse_colour
from server.peer import offer_sdp
from server.protocol import ProtocolError, send
from server.session import Session

log = logging.getLogger("vn3d.server")
SWEEP_S = 1.0  # how often rooms look for members whose call has ended
ROOM_ID_LENGTH = 22  # secrets.token_urlsafe(16): 128 random bits


@dataclass
class Room:
    id: str
    members: dict[str, Session] = field(default_factory=dict)  # session id -> session
    viewers: set[str] = field(default_factory=set)  # members who joined without a call


class RoomBook(ABC):
    """What the server's rooms and a cluster's (``server/cluster/janus_rooms.py``) share:
    the rooms by id, where their messages go, the members' handles, who may join."""

    def __init__(self, size: int, sockets: Mapping[str, tuple[Session, ServerConnection]]
                 ) -> None:  # fmt: skip
        self.size = size
        self._sockets = sockets  # the server's open sessions: where room messages go
        self._rooms: dict[str, Any] = {}  # room id -> the room (with .id and .members)
        self._handle_key = secrets.token_bytes(32)  # handles are unguessable, and this run's

    @abstractmethod
    def state(self, room: Any, session: Session) -> dict:
        """The ``room`` message that ``session`` gets about ``room``."""

    @abstractmethod
    async def leave(self, session: Session) -> None:
        """Out of its room, if it is in one (the others are told)."""

    @abstractmethod
    async def _enter(self, room: Any, session: Session) -> dict:
        """``session`` into ``room`` (the others are told); its ``room`` message."""

    async def join(self, session: Session, msg: dict) -> dict:
        """``join_room``: into the room it names (``unknown_room``, ``room_full``)."""
        room_id = msg.get("room")
        room = self._rooms.get(room_id) if isinstance(room_id, str) else None
        if room is None:
            raise ProtocolError("unknown_room", "no such room (it ended, or the link is wrong)")
        if session.id in room.members:
            return self.state(room, session)
        if len(room.members) >= self.size:
            raise ProtocolError("room_full", f"the room is full ({self.size} people)")
        await self.leave(session)
        return await self._enter(room, session)

    def _current(self, session: Session) -> Any | None:
        """The room ``session`` is in, if any."""
        return self._rooms.get(session.room_id) if session.room_id else None

    async def leave_message(self, session: Session, msg: dict) -> dict:
        await self.leave(session)
        return {"type": "room", "room": None, "you": session.id, "participants": []}

    def _handle(self, room: Any, session: Session) -> str:
        """Stable for one browser (its user key) in one room, across its reconnects."""
        who = f"{room.id}:{session.user or session.id}".encode()
        return hmac.new(self._handle_key, who, hashlib.sha256).hexdigest()[:16]

    async def _broadcast(self, room: Any, but: Session | None = None) -> None:
        for member in list(room.members.values()):
            entry = self._sockets.get(member.id)
            if member is not but and entry is not None:
                with contextlib.suppress(ConnectionClosed):
                    await send(entry[1], self.state(room, member))


class Rooms(RoomBook):
    """Every room of the server; the ``*_room`` / ``subscribe`` handlers of the protocol."""

    def __init__(self, size: int, sockets: Mapping[str, tuple[Session, ServerConnection]],
                 ice: RTCConfiguration, loopback: bool) -> None:  # fmt: skip
        super().__init__(size, sockets)
        self.relay = MediaRelay()
        self._ice = ice
        self._loopback = loopback

    # -- handlers ----------------------------------------------------------------------
    async def create(self, session: Session, msg: dict) -> dict:
        self._need_call(session)
        await self.leave(session)
        room = Room(secrets.token_urlsafe(16))
        self._rooms[room.id] = room
        return await self._enter(room, session)

    async def call_started(self, session: Session) -> None:
        """A member's call (re)started: the others are told, to watch its new avatar."""
        room = self._current(session)
        if room is not None:
            room.viewers.discard(session.id)
            await self._broadcast(room)

    async def subscribe(self, session: Session, msg: dict) -> dict:
        """A receive-only peer connection to another member's avatar and microphone."""
        room = self._room_of(session)
        pid = msg.get("participant")
        publisher = room.members.get(pid) if isinstance(pid, str) else None
        if publisher is None or publisher is session:
            raise ProtocolError("unknown_participant", "no such other participant in the room")
        if publisher.avatar_track is None:
            raise ProtocolError("unknown_participant", "that participant has no video yet")
        sdp = offer_sdp(msg, self._loopback)
        old = session.subscriptions.pop(pid, None)
        if old is not None:
            await old.close()
        pc = RTCPeerConnection(self._ice)
        session.subscriptions[pid] = pc
        try:
            await pc.setRemoteDescription(Description(sdp=sdp, type="offer"))
            pc.addTrack(self.relay.subscribe(publisher.avatar_track, buffered=False))
            if publisher.audio_track is not None:
                pc.addTrack(self.relay.subscribe(publisher.audio_track, buffered=False))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError and others on bad SDP
            session.subscriptions.pop(pid, None)
            await pc.close()
            raise ProtocolError("bad_sdp", f"cannot use this offer: {exc}"[:300]) from exc
        return {"type": "subscribed", "participant": pid, "sdp": pc.localDescription.sdp,
                "sdpType": "answer"}  # fmt: skip

    async def background(self, session: Session, msg: dict) -> dict:
        """The colour the session's avatar is rendered on, for its preview and its room."""
        colour = msg.get("colour")
        try:
            rgb = parse_colour(colour)
        except ValueError as exc:
            raise ProtocolError("bad_message", str(exc)) from exc
        session.background = rgb
        room = self._current(session)
        if room is not None:
            await self._broadcast(room, but=session)
        return {"type": "background", "ok": True, "colour": hex_colour(rgb)}

    # -- membership --------------------------------------------------------------------
    async def leave(self, session: Session) -> None:
        """Out of its room (if any): its subscriptions and everyone's to it close."""
        subscriptions = list(session.subscriptions.values())
        session.subscriptions.clear()  # (others leaving meanwhile look here too)
        for pc in subscriptions:
            await pc.close()
        room = self._current(session)
        session.room_id = None
        if room is None or room.members.pop(session.id, None) is None:
            return
        room.viewers.discard(session.id)
        log.info("session %s left room %s… (%d left)", session.id, room.id[:6],
                 len(room.members))  # fmt: skip
        for other in list(room.members.values()):
            pc = other.subscriptions.pop(session.id, None)
            if pc is not None:
                await pc.close()
        if not room.members:  # (members leaving at once: each may find it empty)
            self._rooms.pop(room.id, None)
        await self._broadcast(room)

    async def sweep(self) -> None:
        """Forever: members whose call ended (hung up, failed, closed) leave their room."""
        while True:
            await asyncio.sleep(SWEEP_S)
            for room in list(self._rooms.values()):
                for member in list(room.members.values()):
                    if member.pc is None and member.id not in room.viewers:
                        await self.leave(member)

    def state(self, room: Room, session: Session) -> dict:
        return {"type": "room", "room": room.id, "you": session.id, "size": self.size,
                "participants": [{"id": s.id, "handle": self._handle(room, s),
                                  "target": s.target_id,
                                  "background": hex_colour(s.background),
                                  "video": s.avatar_track is not None,
                                  # changes when the member's call is made again: watch anew
                                  "call": round(s.call_started_at, 3)}
                                 for s in room.members.values()]}  # fmt: skip

    @property
    def count(self) -> int:
        return len(self._rooms)

    # -- helpers -------------------------------------------------------------------------
    async def _enter(self, room: Room, session: Session) -> dict:
        if session.pc is None:  # joined without a call: watches only
            room.viewers.add(session.id)
        room.members[session.id] = session
        session.room_id = room.id
        log.info("session %s in room %s… (%d)", session.id, room.id[:6], len(room.members))
        await self._broadcast(room, but=session)
        return self.state(room, session)

    def _room_of(self, session: Session) -> Room:
        room = self._current(session)
        if room is None:
            raise ProtocolError("not_in_room", "join or create a room first")
        return room

    @staticmethod
    def _need_call(session: Session) -> None:
        if session.pc is None or session.avatar_track is None:
            raise ProtocolError("no_call", "start the camera call first: rooms relay its avatar")
