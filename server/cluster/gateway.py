"""The gateway of cluster mode (``vn3d serve --cluster ADDRESS``): the page, the HTTP
routes, signalling, uploads and the target picker as in a single process, but each call
runs on a session host of the Ray cluster (``server/cluster/pool.py``).

A page's messages are checked here (the same handlers as ``App``'s) and the choices that
shape its avatar go on to its host; an offer takes a free host and is answered by it, so
the camera and avatar video flow between the page and that host's node. The page's
``stats`` come from its host. When a host dies the page gets ``reoffer`` and offers again
with its choices kept: the new offer lands on a healthy host. Rooms are Janus VideoRooms
(``--janus``: ``server/cluster/janus_rooms.py``); without Janus, none are offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server.admission import IDLE_CLOSE
from server.app import App
from server.cluster.choices import Choices
from server.cluster.janus_rooms import JanusRooms
from server.cluster.pool import Host, HostPool, pick_host
from server.config import ServerConfig
from server.peer import offer_sdp
from server.protocol import ProtocolError, calibration, send
from server.session import Session

log = logging.getLogger("vn3d.server")
ROOM_TYPES = ("create_room", "join_room", "leave_room", "subscribe")
FORWARDED = ("target", "mode", "sliders", "hair", "background")  # choices the host applies


class ClusterApp(App):
    def __init__(self, config: ServerConfig) -> None:
        if not config.cluster:
            raise ValueError("a gateway needs the cluster's address (--cluster)")
        # the pool first (Ray, the head's address): errors a user can fix, before loading
        self.pool = HostPool(config, self.host_lost, self.host_draining)
        super().__init__(config)
        self.calls: dict[str, Host] = {}  # session id -> the host of its call
        self.janus_rooms = (JanusRooms(config.janus, config.janus_admin_key, config.room_size,
                                       self.sessions, self.calls, self.pool.reply)
                            if config.janus else None)  # fmt: skip

    def start(self) -> list[asyncio.Future]:
        return [*super().start(), asyncio.ensure_future(self.pool.keep_filled())]

    def welcome(self, session: Session) -> dict:
        return {**super().welcome(session), "maxSessions": self.pool.capacity,
                "rooms": self.janus_rooms is not None}  # fmt: skip

    def handlers(self) -> dict[str, Callable]:
        handlers = super().handlers()
        for kind in FORWARDED:
            handlers[kind] = self.forwarding(handlers[kind])
        rooms = self.janus_rooms
        handlers.update(dict.fromkeys(ROOM_TYPES, self.no_rooms) if rooms is None else {
            "create_room": rooms.create, "join_room": rooms.join,
            "leave_room": rooms.leave_message, "subscribe": rooms.subscribe})
        return handlers

    def forwarding(self, handler: Callable) -> Callable:
        """``handler`` (which checks the message and sets the session's choice), then the
        choices to the call's host."""

        async def forward(session: Session, msg: dict) -> dict:
            reply = await handler(session, msg)
            host = self.calls.get(session.id)
            if host is not None:
                await self.on_host(host, host.actor.choose.remote(Choices.of(session)))
            if self.janus_rooms is not None and msg["type"] == "background":
                await self.janus_rooms.changed(session)  # the room sees the new colour
            return reply

        return forward

    async def no_rooms(self, session: Session, msg: dict) -> dict:
        raise ProtocolError("not_in_cluster", "rooms need Janus, and this gateway has none")

    async def on_host(self, host: Host, call: Awaitable) -> None:
        """Wait for a host to apply a choice; its own refusals (``ProtocolError``) pass
        through. A host that died meanwhile is the pool's to notice: its page is told to
        offer again, and the choice (kept here) goes with that offer."""
        try:
            await self.pool.reply(call)
        except self.pool.ray.exceptions.RayError as exc:
            log.info("host on node %s did not take a choice: %s", host.node[:8],
                     type(exc).__name__)  # fmt: skip

    # -- the call --------------------------------------------------------------------------
    async def on_offer(self, session: Session, msg: dict) -> dict:
        offer = offer_sdp(msg, self.config.ice_loopback)
        self.end_remote_call(session)  # a new offer replaces the call (and its host)
        for attempt in range(2):  # a host that dies while it answers: once more, elsewhere
            host = await self.pool.acquire(session.id)
            choices = Choices.of(session)
            try:
                sdp = await self.pool.reply(host.actor.offer.remote(session.user, offer,
                                                                    choices))  # fmt: skip
                break
            except (ProtocolError, RuntimeError):  # the offer's fault, or a bug: no retry
                self.pool.release(host)
                raise
            except self.pool.ray.exceptions.RayError as exc:
                self.pool.release(host)
                log.warning("session %s: host lost while answering: %s", session.id, exc)
                if attempt:
                    raise ProtocolError("busy", "no session host could answer; offer again"
                                        ) from exc
        if session.id not in self.sessions:  # the page left while its host answered
            self.pool.release(host)
            raise ProtocolError("no_call", "the page closed")
        self.calls[session.id] = host
        if Choices.of(session) != choices:  # chosen while the host answered
            await self.on_host(host, host.actor.choose.remote(Choices.of(session)))
        if self.janus_rooms is not None:  # in a room: the new call is published into it
            try:
                await self.janus_rooms.call_started(session)
            except Exception:  # the call goes on without the room's video (logged)
                log.exception("session %s: not published into its room", session.id)
        log.info("session %s: call on %s (node %s, pid %d)", session.id, host.address,
                 host.node[:8], host.pid)  # fmt: skip
        return {"type": "answer", "sdp": sdp, "sdpType": "answer"}

    async def on_calibrate(self, session: Session, msg: dict) -> dict:
        kind, frames = calibration(msg)
        host = self.calls.get(session.id)
        if host is not None:
            await self.on_host(host, host.actor.calibrate.remote(kind, frames))
        return {"type": "calibrate", "ok": True, "kind": kind, "frames": frames}

    async def on_hangup(self, session: Session, msg: dict) -> dict:
        if self.janus_rooms is not None:
            await self.janus_rooms.leave(session)
        self.end_remote_call(session)
        return {"type": "hangup", "ok": True}

    def end_remote_call(self, session: Session) -> None:
        host = self.calls.pop(session.id, None)
        if host is not None:
            self.pool.release(host)

    async def session_closed(self, session: Session) -> None:
        if self.janus_rooms is not None:
            await self.janus_rooms.leave(session)
        self.end_remote_call(session)
        await super().session_closed(session)

    def host_lost(self, host: Host) -> None:
        """A host died: its call's page offers again (``reoffer``) and lands elsewhere."""
        if self.calls.get(host.session_id or "") is host:
            del self.calls[host.session_id]
            self.ask_to_reoffer(host.session_id, "the session host stopped")
            session, _ = self.sessions.get(host.session_id, (None, None))
            if self.janus_rooms is not None and session is not None:
                self.pool.spawn(self.janus_rooms.call_lost(session))

    def host_draining(self, host: Host) -> None:
        """A host's node is leaving: its call moves now if another host is free (the
        page offers again), else it goes on until the node stops."""
        if self.calls.get(host.session_id or "") is host and pick_host(self.pool.hosts):
            self.ask_to_reoffer(host.session_id, "the session host's machine is leaving")

    def ask_to_reoffer(self, session_id: str, reason: str) -> None:
        _, ws = self.sessions.get(session_id, (None, None))
        if ws is not None:
            log.info("session %s: %s; asking the page to offer again", session_id, reason)
            self.pool.spawn(send(ws, {"type": "reoffer", "reason": reason}))

    def watch(self, session: Session, ws: ServerConnection) -> Awaitable[None]:
        return self.watch_remote(session, ws)

    async def watch_remote(self, session: Session, ws: ServerConnection) -> None:
        """About once a second: the host's ``stats`` for the page, a call the host ended
        (never connected, camera quiet) released, an idle socket closed."""
        cfg = self.config
        last = time.perf_counter()
        while True:
            await asyncio.sleep(min(cfg.stats_interval_s, cfg.idle_timeout_s / 2))
            now = time.perf_counter()
            host = self.calls.get(session.id)
            with contextlib.suppress(ConnectionClosed):
                if host is not None:
                    with contextlib.suppress(self.pool.ray.exceptions.RayError):
                        polled = await host.actor.poll.remote(now - last)
                        if polled["stats"] is not None:
                            await send(ws, polled["stats"])
                        if polled["ended"] and self.calls.get(session.id) is host:
                            log.info("session %s: call ended: %s", session.id, polled["ended"])
                            if self.janus_rooms is not None:  # as hanging up does
                                await self.janus_rooms.leave(session)
                            self.end_remote_call(session)
                elif time.monotonic() - session.last_message_at > cfg.idle_timeout_s:
                    log.info("session %s: idle, closing", session.id)
                    await ws.close(IDLE_CLOSE, "idle")
            last = now

    async def close_all(self) -> None:
        if self.janus_rooms is not None:
            await self.janus_rooms.close()
        await self.pool.close()
        await super().close_all()
