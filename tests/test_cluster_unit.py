"""Cluster mode's parts that need no cluster: the ``vn3d worker`` command line, where a call
is placed, what a host applies of a page's choices, and errors that cross Ray whole."""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle

import numpy as np
import pytest

from server.cluster import SLOT
from server.cluster.choices import Choices
from server.cluster.host import SessionHost
from server.cluster.pool import Host, check_head, pick_host
from server.config import ServerConfig
from server.protocol import ProtocolError
from vn3d.commands.worker import ray_start_command


def worker_args(**kw) -> argparse.Namespace:
    base = {"address": None, "head": False, "port": 6379, "slots": 1, "gpus": None,
            "node_ip": None, "object_store_mb": 256}  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_worker_command_lines() -> None:
    pytest.importorskip("ray", reason="the cluster extra (make test installs it)")
    head = ray_start_command(worker_args(head=True, slots=0, port=7000))
    assert head[1:3] == ["start", "--block"] and "--head" in head
    assert head[head.index("--port") + 1] == "7000"
    assert json.loads(head[head.index("--resources") + 1]) == {SLOT: 0}
    node = ray_start_command(worker_args(address="10.0.0.1:7000", slots=3, gpus=0.5,
                                         node_ip="10.0.0.2"))  # fmt: skip
    assert node[node.index("--address") + 1] == "10.0.0.1:7000" and "--head" not in node
    assert json.loads(node[node.index("--resources") + 1]) == {SLOT: 3}
    assert node[node.index("--num-gpus") + 1] == "0.5"
    assert node[node.index("--node-ip-address") + 1] == "10.0.0.2"
    for bad in (worker_args(), worker_args(head=True, address="a:1"),
                worker_args(head=True, slots=-1)):  # fmt: skip
        with pytest.raises(ValueError):
            ray_start_command(bad)


def test_a_gateway_says_at_once_when_no_head_answers(free_port) -> None:
    """A wrong --cluster address is a clear error in seconds, not Ray waiting minutes."""
    import time

    t0 = time.monotonic()
    with pytest.raises(ValueError, match=f"no cluster head answers at 127.0.0.1:{free_port}"):
        check_head(f"127.0.0.1:{free_port}")
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_head("just-a-name")
    assert time.monotonic() - t0 < 10


def test_a_call_goes_to_the_node_with_the_fewest_calls() -> None:
    hosts = [Host(None, "n1", "a", "s1"), Host(None, "n1", "a"), Host(None, "n2", "b"),
             Host(None, "n2", "b")]  # fmt: skip
    assert pick_host(hosts) is hosts[2]  # n2 has no call yet
    hosts[2].session_id = "s2"
    assert pick_host(hosts) in (hosts[1], hosts[3])  # one call each now
    for h in hosts:
        h.session_id = h.session_id or "x"
    assert pick_host(hosts) is None
    assert pick_host([]) is None


def test_protocol_errors_pickle_whole() -> None:
    back = pickle.loads(pickle.dumps(ProtocolError("bad_sdp", "no video")))
    assert isinstance(back, ProtocolError) and back.code == "bad_sdp"
    assert str(back) == "no video"


def test_a_host_applies_the_pages_choices(tmp_path) -> None:
    host = SessionHost(ServerConfig(size=64, sample_gallery=False,
                                    avatar_store=str(tmp_path / "store")))  # fmt: skip
    try:
        session = host.runtime.new_session("user-1")
        plain = session.target
        assert plain.hair is None
        choices = Choices("default", "sliders", (0.0, 0.5, 0, 0, 0, 0), (0.0, 1.0, 0.0),
                          ("crew_cut", (0.1, 0.1, 0.1)))  # fmt: skip
        asyncio.run(host._apply(session, choices))
        assert session.mode == "sliders" and session.sliders[1] == np.float32(0.5)
        assert session.background == (0.0, 1.0, 0.0)
        assert session.target is not plain and session.target.hair is not None
        assert session.hair == ("crew_cut", (0.1, 0.1, 0.1))
        assert Choices.of(session) == choices
        assert asyncio.run(host.poll(1.0)) == {"stats": None, "ended": None}  # no call yet
    finally:
        asyncio.run(host.close())
