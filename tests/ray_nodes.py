"""A Ray cluster on this machine for the cluster-mode tests: a head that hosts no calls and
worker nodes of one call slot each, every one a ``vn3d worker`` process (run them inside
the private network namespace: everything on 127.0.0.1)."""

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


@contextlib.contextmanager
def ray_cluster(logs: Path, workers: int = 2) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """Yields the head's address and the nodes' processes (the head's first); SIGTERM
    (Ray drains the node, then stops it) to each on the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip", "127.0.0.1", "--object-store-mb", "100"]
    nodes = [[*VN3D, "worker", "--head", "--port", str(port), "--slots", "0", *common]]
    nodes += [[*VN3D, "worker", "--address", address, "--slots", "1", *common]] * workers
    procs: list[subprocess.Popen] = []
    try:
        for i, cmd in enumerate(nodes):  # one at a time: raylets starting together time out
            path = logs / f"node{i}.log"
            with open(path, "w") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log))
            wait_for_node(path, procs[-1])
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


def wait_for_node(log: Path, proc: subprocess.Popen) -> None:
    """Until ``ray start --block`` says its node is up."""
    end = time.monotonic() + NODE_START_S
    while "block forever" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"a Ray node did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.3)


def ancestor(pid: int, generations: int) -> int:
    """The process ``generations`` up from ``pid`` (a host actor's: 1 its raylet, 2 the
    node's ``vn3d worker``)."""
    for _ in range(generations):
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return pid
