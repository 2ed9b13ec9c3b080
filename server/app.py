"""The live retargeting service: aiortc for media, websockets for signalling and the page.

One port serves the page, thumbnails and avatar files (``server/routes.py``) and the
signalling socket ``/ws`` (``server/protocol.py``). Each browser gets a ``Session``
(``server/session.py``) with its own ``Retargeter`` on its own worker thread; the avatar
video always works on the newest received frame. Bad input gets an ``error`` reply and a
log line; the other sessions keep running.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from avatars.catalogue import UnknownTargetError
from avatars.hair.styles import list_styles
from avatars.hair.thumbnails import StyleThumbnails
from avatars.restyle import NO_HAIR
from engines.emotion.facs import EMOTIONS
from engines.emotion.models import EmotionModels
from engines.retarget.retargeter import MODES
from server.access import token_ok, user_key
from server.admission import Admission, watch_session
from server.config import ServerConfig
from server.hair import HairTryOn
from server.ice import ice_configuration, restrict_ice_to_loopback
from server.malloc_arenas import cap_malloc_arenas
from server.peer import answer_offer, offer_sdp
from server.protocol import ProtocolError, calibration, error, parse, send, slider_values
from server.rooms import Rooms
from server.routes import HttpRoutes
from server.runtime import SessionRuntime
from server.session import Session
from server.targets import TargetPicker
from server.uploads import MB, AvatarBuilds, Quotas, Uploads

log = logging.getLogger("vn3d.server")


class App:
    """What sessions share: the face model, the targets, the emotion models, the sessions."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.runtime = SessionRuntime(config)
        self.model, self.store = self.runtime.model, self.runtime.store
        self.catalogue = self.runtime.catalogue
        self.picker = TargetPicker(self.catalogue, config.token)
        styles = StyleThumbnails(self.model) if self.catalogue.ict_head else None
        self.routes = HttpRoutes(config.web_root, self.picker, self.store, config.token,
                                 config.downloads_per_minute, styles)
        quotas = Quotas(config.max_avatars_per_user, config.max_user_store_mb * MB,
                        config.builds_per_hour, config.max_store_mb * MB)
        self.builds = AvatarBuilds(self.model, self.store, config.max_upload_bytes, quotas)
        self.uploads = Uploads(self.builds, config.max_upload_bytes)
        self.hair = HairTryOn(self.model, self.picker, self.store, self.builds)
        self.sessions: dict[str, tuple[Session, ServerConnection]] = {}  # one per socket
        self.admission = Admission(config)
        if config.ice_loopback:
            restrict_ice_to_loopback()
        self.ice = ice_configuration(config)
        self.rooms = Rooms(config.room_size, self.sessions, self.ice, config.ice_loopback)

    def prepare(self) -> None:
        """Thumbnails and the emotion models (trained on first use, then cached)."""
        self.picker.render_shared()
        self.runtime.load_emotion_models()

    @property
    def emotion_models(self) -> EmotionModels | None:
        return self.runtime.emotion_models

    @property
    def emotion_reason(self) -> str:
        return self.runtime.emotion_reason

    def new_session(self, user: str | None = None) -> Session:
        """A session with the narrow context it needs (not registered: see ``handle``)."""
        return self.runtime.new_session(user)

    def watch(self, session: Session, ws: ServerConnection) -> Awaitable[None]:
        """What runs beside a socket: stats, timeouts (``server/admission.py``)."""
        return watch_session(session, ws, self.config)

    # -- signalling -----------------------------------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        if not token_ok(self.config.token, query.get("token", [""])[0]):
            await send(ws, error("unauthorized", "a valid token is required (?token=...)"))
            await ws.close(1008, "unauthorized")
            return
        address = ws.remote_address[0] if ws.remote_address else ""
        refusal = self.admission.socket_refusal(address)
        if refusal:
            await send(ws, error("too_many_connections", refusal))
            await ws.close(1013, "too many connections")
            return
        session = self.new_session(user_key(query.get("user", [""])[0]))
        self.sessions[session.id] = (session, ws)
        self.admission.opened(address)
        log.info("session %s opened (%d sockets)", session.id, len(self.sessions))
        watch = asyncio.ensure_future(self.watch(session, ws))
        try:
            await send(ws, self.welcome(session))
            async for raw in ws:
                session.last_message_at = time.monotonic()
                await send(ws, await self.reply(session, raw))
        except ConnectionClosed:
            pass
        finally:
            watch.cancel()
            del self.sessions[session.id]
            self.admission.closed(address)
            self.uploads.drop(session.id)
            await self.session_closed(session)
            log.info("session %s closed (%d active)", session.id, len(self.sessions))

    async def session_closed(self, session: Session) -> None:
        """Its socket closed: out of its room, its call ended, its threads stopped."""
        await self.rooms.leave(session)
        await session.close()

    async def reply(self, session: Session, raw: str | bytes) -> dict:
        """The one answer to one client message (an ``error`` for anything refused)."""
        try:
            return await self.dispatch(session, parse(raw))
        except ProtocolError as exc:
            log.warning("session %s: %s: %s", session.id, exc.code, exc)
            return error(exc.code, str(exc))
        except Exception as exc:  # a bug must not take the server down
            log.exception("session %s: internal error", session.id)
            return error("internal", f"internal error: {type(exc).__name__}")

    def welcome(self, session: Session) -> dict:
        emotion_ok = self.emotion_models is not None
        return {
            "type": "welcome",
            "session": session.id,
            "user": session.user,  # the key this page's uploads belong to (issued if it had none)
            "targets": self.picker.entries(session.user),
            "modes": [
                {"id": "track", "available": True},
                {"id": "emotion", "available": emotion_ok, "reason": self.emotion_reason},
                {"id": "sliders", "available": emotion_ok, "reason": self.emotion_reason},
            ],
            "emotions": list(EMOTIONS),
            "hairstyles": [*list_styles(), NO_HAIR] if self.catalogue.ict_head else [],
            "avatars": self.builds.available,  # portrait uploads (FLAME: with DECA's files)
            "target": session.target_id,
            "mode": session.mode,
            "maxSessions": self.config.max_sessions,
        }

    def handlers(self) -> dict[str, Callable]:
        """Message type -> its handler (``handler(session, msg)`` -> the reply)."""
        return {
            "ping": self.on_ping, "offer": self.on_offer, "hangup": self.on_hangup,
            "target": self.on_target,
            "mode": self.on_mode, "sliders": self.on_sliders, "calibrate": self.on_calibrate,
            "avatar_begin": self.on_avatar_begin, "avatar_chunk": self.on_avatar_chunk,
            "avatar_end": self.on_avatar_end, "candidate": self.on_candidate,
            "hair": self.hair.apply, "hair_save": self.hair.save,
            "create_room": self.rooms.create, "join_room": self.rooms.join,
            "leave_room": self.rooms.leave_message, "subscribe": self.rooms.subscribe,
            "background": self.rooms.background,
        }

    async def dispatch(self, session: Session, msg: dict) -> dict:
        handler = self.handlers().get(msg["type"])
        if handler is None:
            raise ProtocolError("unknown_type", f"unknown message type {msg['type'][:64]!r}")
        return await handler(session, msg)

    async def on_ping(self, session: Session, msg: dict) -> dict:
        return {"type": "pong"}

    async def on_target(self, session: Session, msg: dict) -> dict:
        target = msg.get("id")
        loop = asyncio.get_running_loop()
        try:  # an avatar is loaded (and checked) off the event loop, once per choice
            chosen = await loop.run_in_executor(None, self.catalogue.get, target, session.user)
        except UnknownTargetError as exc:
            raise ProtocolError("unknown_target", str(exc)) from exc
        session.target_id, session.target, session.hair = target, chosen, (None, None)
        return {"type": "target", "id": target, "ok": True}

    async def on_mode(self, session: Session, msg: dict) -> dict:
        mode = msg.get("mode")
        if mode not in MODES:
            raise ProtocolError("bad_message", f"mode must be one of {', '.join(MODES)}")
        if mode != "track" and self.emotion_models is None:
            raise ProtocolError("unavailable", self.emotion_reason)
        session.mode = mode
        return {"type": "mode", "mode": mode, "ok": True}

    async def on_sliders(self, session: Session, msg: dict) -> dict:
        session.sliders = slider_values(msg.get("values"))
        return {"type": "sliders", "ok": True}

    async def on_calibrate(self, session: Session, msg: dict) -> dict:
        session.calibration = kind, frames = calibration(msg)
        return {"type": "calibrate", "ok": True, "kind": kind, "frames": frames}

    async def on_candidate(self, session: Session, msg: dict) -> dict:
        raise ProtocolError(
            "bad_message", "no trickle ICE: send the offer after gathering completes"
        )

    async def on_avatar_begin(self, session: Session, msg: dict) -> dict:
        await self.uploads.begin(session.id, session.user, msg)
        return {"type": "avatar_begin", "ok": True}

    async def on_avatar_chunk(self, session: Session, msg: dict) -> dict:
        received = self.uploads.chunk(session.id, msg)
        return {"type": "avatar_chunk", "ok": True, "received": received}

    async def on_avatar_end(self, session: Session, msg: dict) -> dict:
        avatar_id, name = await self.uploads.end(session.id, session.user, msg)
        return self.picker.new_avatar_reply(avatar_id, name, session.user)

    async def on_offer(self, session: Session, msg: dict) -> dict:
        """A call slot is taken here, not on connect (a new offer keeps the session's)."""
        offer = offer_sdp(msg, self.config.ice_loopback)
        self.admission.check_call(session, (s for s, _ in self.sessions.values()))
        session.offering = True  # holds the slot while the answer is made
        try:
            sdp = await answer_offer(session, offer, self.ice, self.rooms.relay)
        finally:
            session.offering = False
        await self.rooms.call_started(session)
        return {"type": "answer", "sdp": sdp, "sdpType": "answer"}

    async def on_hangup(self, session: Session, msg: dict) -> dict:
        await self.rooms.leave(session)
        await session.end_call()
        return {"type": "hangup", "ok": True}

    def start(self) -> list[asyncio.Future]:
        """The server's own tasks, beside the sockets' (cancelled when it stops)."""
        return [asyncio.ensure_future(self.rooms.sweep())]

    async def close_all(self) -> None:
        for _, ws in list(self.sessions.values()):
            await ws.close(1001, "server shutting down")
        await self.builds.close()
        self.routes.pool.shutdown(wait=False)
        self.runtime.close()


async def run_server(config: ServerConfig, ready: Callable[[str], None] | None = None,
                     app_class: type[App] = App) -> None:
    """Serve until SIGINT/SIGTERM; ``ready(url)`` is called once listening. ``app_class``:
    ``App`` (calls in this process) or a cluster's gateway (``server/cluster/gateway.py``)."""
    cap_malloc_arenas()  # before the threads that load the models and serve the calls
    app = app_class(config)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, app.prepare)
    # the ~290k objects made so far live as long as the server: out of the collector's
    # sight, a full collection no longer stalls the loop ~100 ms (scripts/bench_offer.py)
    gc.collect()
    gc.freeze()
    tls = None
    if config.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(config.cert, config.key)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    tasks = app.start()
    async with serve(
        app.handle,
        config.host,
        config.port,
        process_request=app.routes,
        max_size=config.max_message_bytes,
        ssl=tls,
    ):
        scheme = "https" if tls else "http"
        if ready is not None:
            ready(f"{scheme}://{config.host}:{config.port}/")
        try:
            await stop
        finally:  # also when the serving task is cancelled
            log.info("shutting down: closing %d sessions", len(app.sessions))
            for task in tasks:
                task.cancel()
            await app.close_all()
            gc.unfreeze()
