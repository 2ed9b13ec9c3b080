"""`run_server` in the test's own event loop, for protocol tests with aiortc clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from server.app import run_server
from server.config import ServerConfig


@contextlib.asynccontextmanager
async def served(port: int, **settings) -> AsyncIterator[str]:
    """The server on 127.0.0.1:``port`` with loopback ICE and ``settings``; yields its
    signalling URL and stops it on the way out."""
    cfg = ServerConfig(port=port, ice_loopback=True, **settings)
    started = asyncio.Event()
    task = asyncio.create_task(run_server(cfg, ready=lambda url: started.set()))
    await asyncio.wait_for(started.wait(), 120)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
