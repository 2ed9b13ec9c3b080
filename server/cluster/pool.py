"""The gateway's warm session hosts: one Ray actor per call slot the cluster offers.

Capacity is Ray's: a worker node offers ``vn3d_slot`` resources (``vn3d worker --slots
K``) and each host actor takes one, so Ray places the hosts and a node that joins gets
hosts of its own. The pool keeps as many hosts as the cluster has slots (every
``FILL_S``), hands a free one to each offer — on the node with the fewest calls, never on
a node that Ray is draining (its calls are moved when another host is free) — and
answers ``busy`` when none comes free within ``wait_s`` (never an unbounded queue). Each
host is watched through its ``alive`` long-poll: a host that dies (its process killed, its
node gone) leaves the pool at once, the gateway's ``on_lost`` tells its page, and the
next fill starts a replacement wherever a slot is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.cluster import SLOT
from server.cluster.host import SessionHost
from server.config import ServerConfig
from server.protocol import ProtocolError

log = logging.getLogger("vn3d.server")
FILL_S = 2.0  # how often the pool matches its hosts to the cluster's slots
# an offer made while hosts are still starting (a gateway just started or restarted, its
# pages reconnecting) waits for them up to this long, not only --cluster-wait-s
HOST_START_WAIT_S = 60.0


def check_head(address: str, timeout: float = 5.0) -> None:
    """A clear error now, rather than Ray waiting minutes, when nothing answers at the
    cluster head's ``HOST:PORT``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--cluster wants the head's HOST:PORT, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except OSError as exc:
        raise ValueError(f"no cluster head answers at {address} ({exc.strerror or exc}); "
                         "start one with `vn3d worker --head`") from None


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ValueError("cluster mode needs Ray: pip install -e '.[cluster]'") from exc
    return ray


@dataclass(eq=False)
class Host:
    actor: Any  # the SessionHost actor's handle
    node: str  # the Ray node it runs on
    address: str
    session_id: str | None = None  # the call it hosts
    pid: int = 0  # its process on that node
    draining: bool = False  # its node is leaving: no new calls


def pick_host(hosts: list[Host]) -> Host | None:
    """A free host on the node with the fewest calls, never on a node that is leaving
    (None: every other host has a call)."""
    free = [h for h in hosts if h.session_id is None and not h.draining]
    calls = Counter(h.node for h in hosts if h.session_id is not None)
    return min(free, key=lambda h: calls[h.node], default=None)


class HostPool:
    def __init__(self, config: ServerConfig, on_lost: Callable[[Host], None],
                 on_drain: Callable[[Host], None]) -> None:
        self.ray = import_ray()
        check_head(config.cluster or "")
        if not self.ray.is_initialized():
            self.ray.init(address=config.cluster, namespace="vn3d", log_to_driver=False,
                          logging_level=logging.WARNING)  # fmt: skip
        self.config = config
        self.on_lost, self.on_drain = on_lost, on_drain
        self.actor_class = self.ray.remote(SessionHost)
        self.hosts: list[Host] = []  # started and watched
        self.starting: list[float] = []  # when each host not ready yet was asked of Ray
        self.capacity = 0  # the cluster's slots at the last fill
        self.changed = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    # -- capacity --------------------------------------------------------------------------
    def slots(self) -> int:
        return int(self.ray.cluster_resources().get(SLOT, 0))

    def draining_nodes(self) -> set[str]:
        """The nodes Ray is draining (``vn3d worker`` got SIGTERM, or an autoscaler's
        scale-down); Ray's API for it is internal, so none when it is not there."""
        try:
            from ray._private.state import state

            return set(state.get_draining_nodes())
        except Exception:
            return set()

    async def keep_filled(self) -> None:
        while True:
            try:
                await self.fill()
            except Exception as exc:  # a GCS hiccup: try again next round
                log.warning("could not match the hosts to the cluster's slots: %r", exc)
            await asyncio.sleep(FILL_S)

    async def fill(self) -> None:
        """Start hosts for the slots that have none."""
        loop = asyncio.get_running_loop()
        slots = await loop.run_in_executor(None, self.slots)
        self.capacity = slots
        draining = await loop.run_in_executor(None, self.draining_nodes)
        for host in self.hosts:
            if host.node in draining and not host.draining:
                host.draining = True
                log.info("node %s is leaving: no new calls on it", host.node[:8])
                if host.session_id is not None:
                    self.on_drain(host)
        for _ in range(slots - len(self.hosts) - len(self.starting)):
            self.spawn(self._start())

    async def _start(self) -> None:
        began = asyncio.get_running_loop().time()
        self.starting.append(began)
        actor = self.actor_class.options(resources={SLOT: 1}, num_cpus=0, max_restarts=0,
                                         max_concurrency=64).remote(self.config)
        try:
            info = await actor.where.remote()
        except self.ray.exceptions.RayError as exc:
            log.warning("a session host did not start: %s", exc)
            return
        finally:
            self.starting.remove(began)
        host = Host(actor, info["node"], info["address"], pid=info["pid"])
        self.hosts.append(host)
        log.info("session host ready on %s (node %s, pid %s)", host.address, host.node[:8],
                 info["pid"])  # fmt: skip
        self.spawn(self._watch(host))
        self.changed.set()

    async def _watch(self, host: Host) -> None:
        try:
            while True:
                await host.actor.alive.remote()
        except self.ray.exceptions.RayError as exc:
            log.warning("session host on node %s lost: %s", host.node[:8], type(exc).__name__)
        if host in self.hosts:
            self.hosts.remove(host)
            self.on_lost(host)
            self.changed.set()

    async def reply(self, call: Any) -> Any:
        """A host's reply to ``call`` (an actor method's ref). What the host's own code
        raised comes out as itself: a ``ProtocolError`` whole (its code and message, not
        Ray's traceback with the host's pid and address), anything else as a
        ``RuntimeError`` naming only its type. A host that died raises Ray's ``RayError``."""
        try:
            return await call
        except self.ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, ProtocolError):
                raise exc.cause from None
            raise RuntimeError(f"the session host failed: {type(exc.cause).__name__}") from None

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- calls -----------------------------------------------------------------------------
    async def acquire(self, session_id: str) -> Host:
        """A free host for ``session_id``'s call, on the node with the fewest calls;
        ``busy`` when none comes free within the wait (longer while hosts are starting)."""
        loop = asyncio.get_running_loop()
        asked = loop.time()
        while True:
            host = pick_host(self.hosts)
            if host is not None:
                host.session_id = session_id
                return host
            now = loop.time()
            wait = self.config.cluster_wait_s
            if any(now - t < HOST_START_WAIT_S for t in self.starting):
                wait = max(wait, HOST_START_WAIT_S)
            left = asked + wait - now
            if left <= 0:
                n = len(self.hosts)
                raise ProtocolError("busy", f"the cluster is busy: all {n} sessions are in use")
            left = min(left, FILL_S)  # a host that starts meanwhile changes the wait
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    def release(self, host: Host) -> None:
        """The call on ``host`` is over: hang it up there; the host is free again."""
        if host.session_id is None:
            return
        host.session_id = None
        if host in self.hosts:
            host.actor.hangup.remote()  # in order before the host's next offer
            self.changed.set()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for host in self.hosts:
            with contextlib.suppress(Exception):
                self.ray.kill(host.actor)
        self.hosts.clear()
