"""A cluster on this one machine, for the tests and benchmarks of cluster mode (and to try
it): a Ray head that hosts no calls and worker nodes, each a ``vn3d worker`` process on
127.0.0.1, and a Janus (Debian's ``janus``) for rooms; the tests and benchmarks run it
all inside a private network namespace."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

VN3D = [sys.executable, "-m", "vn3d.cli"]
NODE_START_S = 90.0
# Ray's token authentication is off, and said so (RAY_AUTH_MODE=disabled) to the nodes and
# to this process's drivers (an in-process gateway, or a gateway subprocess that inherits
# the environment): left unset, Ray turns it on by itself whenever a token lies in
# ~/.ray/auth_token (a local ray.init() leaves one), for a head but not for the nodes that
# join it. Everything here is on 127.0.0.1 in a private network namespace.
NODE_FLAGS = ("--node-ip", "127.0.0.1", "--object-store-mb", "100")


@contextlib.contextmanager
def local_cluster(logs: Path, slots: tuple[int, ...] = (1, 1)
                  ) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """A head and one worker node per entry of ``slots`` (its call slots), their output in
    ``logs``/node*.log (``RAY_AUTH_MODE=disabled`` in this process's environment
    meanwhile). Yields the head's address and the nodes'
    processes (the head's first); SIGTERM (Ray drains the node, then stops it) to each on
    the way out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    head = [*VN3D, "worker", "--head", "--port", str(port), "--slots", "0", *NODE_FLAGS]
    procs: list[subprocess.Popen] = []
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
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
        if saved is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = saved


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


JANUS_PLUGIN = "janus/plugins/libjanus_videoroom.so"  # under /usr/lib/<arch triplet>/
JANUS_CONFIG = """general: {{ configs_folder = "{dir}" plugins_folder = "{dir}/plugins"
  transports_folder = "{dir}/transports" events_folder = "{dir}/none"
  loggers_folder = "{dir}/none" debug_level = 3 }}
media: {{ rtp_port_range = "{rtp}" }}
nat: {{ ice_enforce_list = "127.0.0.1" ignore_mdns = true }}
"""


@contextlib.contextmanager
def local_janus(folder: Path) -> Iterator[tuple[str, int]]:
    """Janus with only its VideoRoom plugin and WebSocket API, on 127.0.0.1 (a private
    config in ``folder``). Janus skips loopback
    interfaces when it gathers, so inside the namespace 127.0.0.1 is also put on a veth
    (``janus_loopback``), as ../shared/notes/janus-testing.md describes. Yields the URL
    and Janus's process id."""
    janus = shutil.which("janus")
    plugins = sorted(Path("/usr/lib").glob(f"*/{JANUS_PLUGIN}"))
    if janus is None or not plugins:
        raise RuntimeError("Janus is not installed (apt-get install janus)")
    lib = plugins[0].parent.parent  # /usr/lib/<arch triplet>/janus
    janus_loopback()
    for kind, so in (("plugins", "libjanus_videoroom.so"),
                     ("transports", "libjanus_websockets.so")):  # fmt: skip
        (folder / kind).mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            (folder / kind / so).symlink_to(lib / kind / so)
    (folder / "none").mkdir(exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rtp = f"{20000 + port % 20000}-{20099 + port % 20000}"
    (folder / "janus.jcfg").write_text(JANUS_CONFIG.format(dir=folder, rtp=rtp))
    (folder / "janus.transport.websockets.jcfg").write_text(
        f'general: {{ json = "plain" ws = true ws_port = {port} ws_ip = "127.0.0.1" }}\n'
        "admin: { admin_ws = false }\n")
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: { }\n")
    with open(folder / "janus.log", "w") as log:
        proc = subprocess.Popen([janus, "-F", str(folder), "-C", str(folder / "janus.jcfg")],
                                stdout=log, stderr=log)  # fmt: skip
    try:
        end = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"Janus did not start:\n{(folder / 'janus.log').read_text()}")
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def janus_loopback() -> None:
    """127.0.0.1 on a veth too (once), so that Janus offers a 127.0.0.1 candidate; only in
    a private network namespace, where nothing else sees it."""
    if {name for _, name in socket.if_nameindex()} - {"lo", "janus_loopback", "janus_peer"}:
        raise RuntimeError("local_janus runs only inside a private network namespace")
    if "janus_loopback" in {name for _, name in socket.if_nameindex()}:
        return
    veth = ["ip", "link", "add", "janus_loopback", "type", "veth", "peer", "name", "janus_peer"]
    subprocess.run(veth, check=True, capture_output=True)
    for name in ("janus_loopback", "janus_peer"):  # no IPv6 addresses of their own
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1")
    for cmd in ("ip addr add 127.0.0.1/32 dev janus_loopback",
                "ip link set janus_loopback up", "ip link set janus_peer up"):  # fmt: skip
        subprocess.run(cmd.split(), check=True, capture_output=True)


def ancestor(pid: int, generations: int) -> int:
    """The process ``generations`` up from ``pid`` (a host actor's: 1 its raylet, 2 the
    node's ``vn3d worker``)."""
    for _ in range(generations):
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return pid
