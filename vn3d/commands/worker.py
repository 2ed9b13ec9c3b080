"""``vn3d worker``: this machine as a node of a cluster's Ray cluster, offering ``--slots``
calls (each a session host of the gateway, ``vn3d serve --cluster``); ``--head`` starts the
cluster's head instead of joining one. It runs Ray's own ``ray start --block`` (Ctrl-C or
SIGTERM stops the node); docs/DEPLOYMENT.md."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from server.cluster import SLOT

HEAD_PORT = 6379


def ray_start_command(args: argparse.Namespace) -> list[str]:
    """The ``ray start`` command line for these flags."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise ValueError("cluster mode needs Ray: pip install -e '.[cluster]'")
    if args.head == bool(args.address):
        raise ValueError("give either --head or --address HOST:PORT (the head's)")
    if args.slots < 0 or (args.gpus is not None and args.gpus < 0):
        raise ValueError("--slots and --gpus must be >= 0")
    cmd = [ray, "start", "--block", "--disable-usage-stats",
           "--resources", json.dumps({SLOT: args.slots})]  # fmt: skip
    if args.head:
        cmd += ["--head", "--port", str(args.port), "--include-dashboard", "false"]
    else:
        cmd += ["--address", args.address]
    if args.node_ip:
        cmd += ["--node-ip-address", args.node_ip]
    if args.gpus is not None:
        cmd += ["--num-gpus", str(args.gpus)]
    if args.object_store_mb:
        cmd += ["--object-store-memory", str(args.object_store_mb * 1024 * 1024)]
    return cmd


def cmd_worker(args: argparse.Namespace) -> int:
    cmd = ray_start_command(args)
    print(" ".join(cmd), flush=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.execv(cmd[0], cmd)  # Ray's node, in this process: signals reach it directly
    return 0  # not reached


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="a node of the cluster (session hosts for a "
                       "`vn3d serve --cluster` gateway), or its head")
    p.add_argument("--address", help="the cluster head's HOST:PORT, to join it")
    p.add_argument("--head", action="store_true", help="start the cluster's head node")
    p.add_argument("--port", type=int, default=HEAD_PORT, help="--head: its port")
    p.add_argument("--slots", type=int, default=1,
                   help="calls this node hosts at once (default 1; 0 for a head that "
                   "hosts none)")
    p.add_argument("--gpus", type=float, default=None, help="GPUs this node offers to Ray")
    p.add_argument("--node-ip", help="this node's address as the others reach it (and as "
                   "the pages' ICE candidates carry it)")
    p.add_argument("--object-store-mb", type=int, default=256,
                   help="Ray's shared-memory object store (the calls pass only small "
                   "messages through it)")
    p.set_defaults(func=cmd_worker)
