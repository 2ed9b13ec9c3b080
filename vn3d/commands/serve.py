"""``vn3d serve`` (the live service; its flags come from ``server.config.ServerConfig``) and
``vn3d doctor``."""

from __future__ import annotations

import argparse

from server.config import add_arguments, config_from_args


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    import torch

    from server.app import App, run_server

    config = config_from_args(args)
    app_class = App
    if config.cluster:  # a gateway: the calls run on the cluster's session hosts
        from server.cluster.gateway import ClusterApp

        app_class = ClusterApp
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # the face model's few milliseconds a frame on one thread: with two, each of its steps
    # waited for a second thread that the tracker and the codecs kept busy (several
    # sessions: ~8 % more frames; docs/PERFORMANCE.md). Ray's actors run on one already.
    torch.set_num_threads(1)

    def ready(url: str) -> None:
        suffix = f"?token={config.token}" if config.token else ""
        print(f"serving on {url}{suffix}  (Ctrl+C stops)", flush=True)

    asyncio.run(run_server(config, ready, app_class))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from vn3d.doctor import run_doctor

    return run_doctor()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="the live service: web page + WebRTC retargeting")
    add_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("doctor", help="check assets, renderer, MediaPipe, CUDA/TensorRT")
    p.set_defaults(func=cmd_doctor)
