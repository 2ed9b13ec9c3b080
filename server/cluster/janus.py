"""A client of Janus's WebSocket API (``janus-protocol``) for what cluster mode needs of its
VideoRoom plugin: rooms made by the gateway, each host's avatar published into them.

One :class:`JanusSession` is one Janus session on its own socket; requests are matched to
their replies by transaction, plugin messages wait past Janus's ``ack`` for their
``event``, and a keepalive runs every ``KEEPALIVE_S`` (Janus ends silent sessions after
60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from typing import Any

import websockets

VIDEOROOM = "janus.plugin.videoroom"
KEEPALIVE_S = 25.0
REPLY_S = 10.0


class JanusError(RuntimeError):
    pass


class JanusSession:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.id: int | None = None
        self.pending: dict[str, asyncio.Future] = {}
        self.reader = asyncio.ensure_future(self._read())
        self.keepalive: asyncio.Task | None = None

    @classmethod
    async def open(cls, url: str) -> JanusSession:
        ws = await websockets.connect(url, subprotocols=["janus-protocol"])
        session = cls(ws)
        try:
            reply = await session.request({"janus": "create"})
        except BaseException:
            await session.close()
            raise
        session.id = reply["data"]["id"]
        session.keepalive = asyncio.ensure_future(session._keepalive())
        return session

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                msg = json.loads(raw)
                waiter = self.pending.get(msg.get("transaction", ""))
                if waiter is not None and msg.get("janus") != "ack" and not waiter.done():
                    waiter.set_result(msg)
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(JanusError("the Janus socket closed"))

    async def _keepalive(self) -> None:
        with contextlib.suppress(JanusError, websockets.ConnectionClosed):
            while True:
                await asyncio.sleep(KEEPALIVE_S)
                await self.request({"janus": "keepalive"})

    async def request(self, body: dict) -> dict:
        """Send ``body`` (with this session and a new transaction); the reply (``event``
        for a plugin message Janus acknowledged first). Errors raise ``JanusError``."""
        transaction = secrets.token_hex(8)
        waiter = asyncio.get_running_loop().create_future()
        self.pending[transaction] = waiter
        msg = {**body, "transaction": transaction}
        if self.id is not None:
            msg["session_id"] = self.id
        try:
            await self.ws.send(json.dumps(msg))
            reply = await asyncio.wait_for(waiter, REPLY_S)
        finally:
            self.pending.pop(transaction, None)
        if reply.get("janus") == "error":
            raise JanusError(reply["error"].get("reason", "Janus refused the request"))
        return reply

    async def attach(self, plugin: str = VIDEOROOM) -> int:
        return (await self.request({"janus": "attach", "plugin": plugin}))["data"]["id"]

    async def message(self, handle: int, body: dict, jsep: dict | None = None
                      ) -> tuple[dict, dict | None]:  # fmt: skip
        """A plugin request: its data and, when there is one, its SDP (``jsep``)."""
        msg: dict = {"janus": "message", "handle_id": handle, "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.request(msg)
        data = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(data["error"])
        return data, reply.get("jsep")

    async def close(self) -> None:
        for task in (self.keepalive, self.reader):
            if task is not None:
                task.cancel()
        if self.id is not None:
            with contextlib.suppress(Exception):
                await self.ws.send(json.dumps({"janus": "destroy", "session_id": self.id,
                                               "transaction": secrets.token_hex(8)}))
        await self.ws.close()
