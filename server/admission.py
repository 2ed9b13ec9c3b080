"""Who gets in and who stays: signalling sockets are bounded in all and per address, a
call takes one of ``max_sessions`` slots at its offer, not at connect — so pages that never
call (or a client that opens sockets and sends nothing) cannot lock anyone out of a call —
and calls that never connect or go quiet, and silent sockets, are ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from server.config import ServerConfig
from server.protocol import ProtocolError, send
from server.session import Session

log = logging.getLogger("vn3d.server")
IDLE_CLOSE = 4000  # close code for a socket closed for doing nothing


class Admission:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.sockets_by_address: Counter[str] = Counter()

    def socket_refusal(self, address: str) -> str:
        """Why a new socket from ``address`` is refused ('' when it is not)."""
        cfg = self.config
        if sum(self.sockets_by_address.values()) >= cfg.max_sockets:
            return f"the server has {cfg.max_sockets} sockets open; try again later"
        if self.sockets_by_address[address] >= cfg.max_sockets_per_ip:
            return (f"{cfg.max_sockets_per_ip} sockets are open from your address; "
                    "close a page and try again")
        return ""

    def opened(self, address: str) -> None:
        self.sockets_by_address[address] += 1

    def closed(self, address: str) -> None:
        self.sockets_by_address[address] -= 1
        if self.sockets_by_address[address] <= 0:
            del self.sockets_by_address[address]

    def check_call(self, session: Session, sessions: Iterable[Session]) -> None:
        """Raises ``busy`` when ``session`` would need a call slot and none is free (a new
        offer from a session already in a call keeps its slot)."""
        n = self.config.max_sessions
        if not session.in_call and sum(s.in_call for s in sessions) >= n:
            raise ProtocolError("busy", f"the server is busy: all {n} sessions are in use")


async def watch_session(session: Session, ws: ServerConnection, cfg: ServerConfig) -> None:
    """About once a second: ``stats`` during a call; end a call that never connected or
    whose camera went quiet (its slot frees); close a socket that does nothing."""
    interval = min(cfg.stats_interval_s, cfg.idle_timeout_s / 2, cfg.call_timeout_s / 2)
    last = time.perf_counter()
    while True:
        await asyncio.sleep(interval)
        now = time.perf_counter()
        with contextlib.suppress(ConnectionClosed):
            if now - last >= cfg.stats_interval_s:
                if session.pc is not None:
                    await send(ws, session.stats(now - last))
                last = now
            problem = session.call_problem(time.monotonic(), cfg.call_timeout_s)
            if problem is not None:
                log.info("session %s: call ended: %s", session.id, problem)
                await session.end_call()
            if session.idle(time.monotonic(), cfg.idle_timeout_s):
                log.info("session %s: idle, closing", session.id)
                await ws.close(IDLE_CLOSE, "idle")
