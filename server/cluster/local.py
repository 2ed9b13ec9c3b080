"""A cluster on this one machine, for the tests and benchmarks of cluster mode (and to try
it): a Ray head that hosts no calls and worker nodes, each a ``vn3d worker`` process on
127.0.0.1 (the tests and benchmarks run inside a private network namespace)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

VN3D = [sys.executable, "-m", "vn3d.cli"]
NODE_START_S = 90.0
NODE_FLAGS = ("--node-ip", "127.0.0.1", "--object-store-mb", "100")


@contextlib.contextmanager
def local_cluster(logs: Path, slots: tuple[int, ...] = (1, 1)
                  ) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A head and one worker node per entry of ``slots`` (its call slots), their output in
    ``logs``/node*.log. Yields the head's address and the nodes' processes (the head's
    first); SIGTERM (Ray drains the node, then stops it) to each on the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    head = [*VN3D, "worker", "--head", "--port", str(port), "--slots", "0", *NODE_FLAGS]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start_node(head, logs / "node0.log"))
        for i, n in enumerate(slots):  # one at a time: raylets starting together time out
            procs.append(add_node(address, n, logs / f"node{i + 1}.log"))
        yield address, procs
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(30)
            if p.poll() is None:
                p.kill()


def add_node(address: str, slots: int, log: Path) -> subprocess.Popen:
    """One more worker node of ``slots`` call slots (stop it with SIGTERM)."""
    cmd = [*VN3D, "worker", "--address", address, "--slots", str(slots), *NODE_FLAGS]
    return start_node(cmd, log)


def start_node(cmd: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    try:
        wait_for_node(log, proc)
    except RuntimeError:
        proc.kill()
        raise
    return proc


def wait_for_node(log: Path, proc: subprocess.Popen) -> None:
    """Until ``ray start --block`` says its node is up."""
    end = time.monotonic() + NODE_START_S
    while "block forever" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"a Ray node did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.3)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process below it (a node's raylet and session hosts)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def ancestor(pid: int, generations: int) -> int:
    """The process ``generations`` up from ``pid`` (a host actor's: 1 its raylet, 2 the
    node's ``vn3d worker``)."""
    for _ in range(generations):
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return pid
