"""Cluster mode on this machine (``vn3d serve --cluster`` + ``vn3d worker`` nodes, all on
127.0.0.1 in a private network namespace), against the single process it replaces:

1. offer -> answer: the time from an offer sent to its answer received, N offers one
   after another (each hung up ``--offer-gap`` seconds before the next: a host closes
   the last call meanwhile), ``vn3d serve`` vs the gateway;
2. sessions per node at N slots: one worker node with N slots and N synthetic clients
   (bench_server's: the GRID clip at 25 fps, frame stamps for latency), against
   ``vn3d serve --max-sessions N`` with the same clients;
3. failover: a client streaming through the gateway whose host process is SIGKILLed;
   the time from the kill to the first avatar frame of the new call, for a client that
   offers again when told to (``reoffer``) and, the baseline, for one that waits until its
   own peer connection gives up;
4. room fan-out through Janus: one publisher in a call creates a room, N viewers join it
   and watch its avatar from Janus (as the page does), against bench_rooms.py's viewers
   of a single server's room (the same run): FPS per viewer, renders, CPU of Janus, of the
   host's node, of the single server.

Prints tables and writes JSON. As root it re-executes itself under ``unshare --net``.

    python scripts/bench_cluster.py [--offers 10] [--slots 1,2,4] [--seconds 12]
        [--failovers 5] [--size 512]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiortc.rtcrtpreceiver
import av
import numpy as np
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rooms import counter
from bench_rooms import level as room_level
from bench_server import (
    ClipTrack,
    MarkerJitterBuffer,
    client,
    cpu_seconds,
    enter_private_netns,
    free_port,
    start_server,
)

from engines.files.assets import asset_root
from server.cluster.janus import JanusSession
from server.cluster.local import add_node, local_cluster, local_janus, process_tree
from server.ice import loopback_candidates_only, restrict_ice_to_loopback

HOST_READY = r"session host ready"
CALL_ON = r"call on \S+ \(node \w+, pid (\d+)\)"
BASELINE_CAP_S = 60.0


def wait_for_log(log: Path, pattern: str, count: int, timeout: float = 240) -> list[re.Match]:
    end = time.monotonic() + timeout
    while len(found := list(re.finditer(pattern, log.read_text(errors="replace")))) < count:
        if time.monotonic() > end:
            raise RuntimeError(f"{pattern!r} x{count} not in {log}")
        time.sleep(0.3)
    return found


@contextlib.contextmanager
def serving(extra: list[str], log: Path):
    port = free_port()
    with open(log, "w") as out:
        proc = start_server(port, extra, log=out)
    try:
        yield proc, f"ws://127.0.0.1:{port}/ws"
    finally:
        proc.terminate()
        proc.wait(30)


# -- 1. offer -> answer ---------------------------------------------------------------------
async def offer_times(url: str, n: int, frames: list[np.ndarray], gap: float) -> list[float]:
    times = []
    async with websockets.connect(url) as ws:
        await ws.recv()  # welcome
        for _ in range(n):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.addTrack(ClipTrack(frames, {}))
            await pc.setLocalDescription(await pc.createOffer())
            sdp = loopback_candidates_only(pc.localDescription.sdp)
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "offer", "sdp": sdp, "sdpType": "offer"}))
            while (msg := json.loads(await ws.recv()))["type"] == "stats":
                pass
            times.append(1000 * (time.perf_counter() - t0))
            assert msg["type"] == "answer", msg
            await ws.send(json.dumps({"type": "hangup"}))
            while json.loads(await ws.recv())["type"] != "hangup":
                pass
            await pc.close()
            await asyncio.sleep(gap)
    return times


# -- 3. failover ----------------------------------------------------------------------------
async def failover_gap(url: str, log: Path, frames: list[np.ndarray], obey: bool) -> float:
    """Seconds from SIGKILL of the call's host to the new call's first avatar frame."""
    first: asyncio.Future = asyncio.get_running_loop().create_future()
    reoffer = asyncio.Event()
    pulls: list[asyncio.Task] = []

    async def call(ws, mark: bool) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(ClipTrack(frames, {}))

        @pc.on("track")
        def on_track(track) -> None:
            async def pull() -> None:
                await track.recv()
                if mark and not first.done():
                    first.set_result(time.monotonic())
                with contextlib.suppress(Exception):
                    while True:
                        await track.recv()

            pulls.append(asyncio.ensure_future(pull()))

        await pc.setLocalDescription(await pc.createOffer())
        sdp = loopback_candidates_only(pc.localDescription.sdp)
        await ws.send(json.dumps({"type": "offer", "sdp": sdp, "sdpType": "offer"}))
        answer = await replies.get()
        assert answer["type"] == "answer", answer
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return pc

    replies: asyncio.Queue = asyncio.Queue()
    async with websockets.connect(url) as ws:
        async def read() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                if msg["type"] == "reoffer":
                    reoffer.set()
                elif msg["type"] not in ("stats", "welcome"):
                    await replies.put(msg)

        reader = asyncio.ensure_future(read())
        pc = await call(ws, mark=False)
        await asyncio.sleep(3)
        pid = int(wait_for_log(log, CALL_ON, 1)[-1][1])
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        if obey:
            await reoffer.wait()
        else:  # the page's own fallback: its connection must fail first
            while pc.connectionState not in ("failed", "closed"):
                if time.monotonic() - killed > BASELINE_CAP_S:
                    break
                await asyncio.sleep(0.1)
        await pc.close()
        pc = await call(ws, mark=True)
        gap = await asyncio.wait_for(first, 30) - killed
        for task in [reader, *pulls]:
            task.cancel()
        await pc.close()
    return gap


def node_cpu(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid) if Path(f"/proc/{p}").exists())


def run(args, frames, work: Path) -> dict:
    base = ["--size", str(args.size)]
    result: dict = {"offers": {}, "sessions": [], "failover": {}, "fanout": []}
    if "offers" in args.parts:
        result["offers"] = offers_rows(base, frames, args, work)
    if "sessions" in args.parts:
        with local_cluster(work, slots=()) as (address, _):
            for n in args.slots:
                result["sessions"].append(sessions_row(n, address, base, frames, args, work))
    if "failover" in args.parts:
        result["failover"] = failover_rows(base, frames, args, work)
    if "fanout" in args.parts:
        result["fanout"] = fanout_rows(base, frames, args, work)
    return result


# -- 4. room fan-out ------------------------------------------------------------------------
async def watch_through_janus(ws, room: dict, seen: list[float], pcs: list, tasks: list,
                              closers: list) -> None:  # fmt: skip
    """One viewer: the publisher's feed from Janus, as the page watches it."""
    janus, feed = room["janus"], room["participants"][0]["feed"]
    session = await JanusSession.open(janus["url"])
    closers.append(session.close)
    handle = await session.attach()
    _, offer = await session.message(handle, {
        "request": "join", "ptype": "subscriber", "room": janus["room"], "pin": janus["pin"],
        "streams": [{"feed": feed}]})  # fmt: skip
    sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pcs.append(sub)
    counter(sub, seen, tasks)
    await sub.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
    await sub.setLocalDescription(await sub.createAnswer())
    await session.message(handle, {"request": "start"},
                          jsep={"type": "answer", "sdp": sub.localDescription.sdp})


def fanout_rows(base: list[str], frames, args, work: Path) -> list[dict]:
    rows = []
    for n in args.viewers:
        size = ["--room-size", str(n + 1)]
        with serving([*base, "--max-sessions", "2", *size], work / f"room-{n}.log") as (
                proc, url):  # fmt: skip
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            single = asyncio.run(room_level(url, n, frames, args.seconds))
            single["cpu_percent"] = round(100 * (cpu_seconds(proc.pid) - cpu0)
                                          / (time.perf_counter() - t0), 1)  # fmt: skip
        with local_cluster(work, slots=(1,)) as (address, nodes), \
                local_janus(work / f"janus-{n}") as (janus_url, janus_pid):  # fmt: skip
            log = work / f"room-gateway-{n}.log"
            with serving([*base, "--cluster", address, "--janus", janus_url, *size], log) as (
                    proc, url):  # fmt: skip
                wait_for_log(log, HOST_READY, 1)
                pids = {"janus": [janus_pid], "node": [nodes[1].pid], "gateway": [proc.pid]}
                cpu0 = {k: sum(node_cpu(p) for p in v) for k, v in pids.items()}
                t0 = time.perf_counter()
                janus = asyncio.run(room_level(url, n, frames, args.seconds,
                                               watch_through_janus))  # fmt: skip
                wall = time.perf_counter() - t0
                for k, v in pids.items():
                    janus[f"{k}_cpu_percent"] = round(
                        100 * (sum(node_cpu(p) for p in v) - cpu0[k]) / wall, 1)
        rows.append({"viewers": n, "single server": single, "janus": janus})
        print(f"  {n} viewers: single {np.mean(single['viewer_fps']):.1f} fps/viewer, "
              f"janus {np.mean(janus['viewer_fps']):.1f}", flush=True)
    return rows


def offers_rows(base: list[str], frames, args, work: Path) -> dict:
    rows = {}
    with serving([*base, "--max-sessions", "1"], work / "single.log") as (_, url):
        rows["single process"] = asyncio.run(offer_times(url, args.offers, frames,
                                                         args.offer_gap))  # fmt: skip
    with local_cluster(work, slots=(1,)) as (address, _):
        log = work / "offers-gateway.log"
        with serving([*base, "--cluster", address], log) as (_, url):
            wait_for_log(log, HOST_READY, 1)
            rows["cluster gateway"] = asyncio.run(offer_times(url, args.offers, frames,
                                                              args.offer_gap))  # fmt: skip
    return rows


def failover_rows(base: list[str], frames, args, work: Path) -> dict:
    rows = {}
    with local_cluster(work, slots=(1, 1)) as (address, _):
        log = work / "failover-gateway.log"
        with serving([*base, "--cluster", address], log) as (_, url):
            kills = 0
            for obey in (True, False):
                gaps = []
                for _ in range(args.failovers if obey else 1):
                    wait_for_log(log, HOST_READY, 2 + kills)  # killed hosts replaced
                    gaps.append(asyncio.run(failover_gap(url, log, frames, obey)))
                    kills += 1
                key = "told to offer again (reoffer)" if obey else "baseline: waits for failure"
                rows[key] = gaps
    return rows


def sessions_row(n: int, address: str, base: list[str], frames, args, work: Path) -> dict:
    """N clients on one node of N slots, and on one process with N sessions."""
    row: dict = {"slots": n}

    async def clients(url: str) -> list[dict]:
        return await asyncio.gather(*[client(url, frames, args.seconds, args.warmup)
                                      for _ in range(n)])  # fmt: skip

    def measure(url: str, pids: list[int]) -> dict:
        cpu0, t0 = sum(node_cpu(p) for p in pids), time.perf_counter()
        got = asyncio.run(clients(url))
        cpu = 100 * (sum(node_cpu(p) for p in pids) - cpu0) / (time.perf_counter() - t0)
        lat = np.concatenate([r["latency_ms"] for r in got])
        return {"fps": [round(r["fps"], 1) for r in got],
                "fps_mean": round(float(np.mean([r["fps"] for r in got])), 1),
                "latency_median_ms": round(float(np.median(lat)), 1) if len(lat) else None,
                "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
                "cpu_percent": round(cpu, 1)}  # fmt: skip

    with serving([*base, "--max-sessions", str(n)], work / f"single-{n}.log") as (proc, url):
        row["single process"] = measure(url, [proc.pid])
    node = add_node(address, n, work / f"node-{n}.log")
    log = work / f"gateway-{n}.log"
    try:
        with serving([*base, "--cluster", address], log) as (proc, url):
            wait_for_log(log, HOST_READY, n)
            row["cluster node"] = measure(url, [proc.pid, node.pid])
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(60)
    print(f"  {n} slots: single {row['single process']['fps_mean']} fps/session, "
          f"cluster {row['cluster node']['fps_mean']}", flush=True)
    return row


def report(result: dict, args) -> None:
    print(f"\n| offer -> answer ({args.offer_gap:g} s after the last hangup) | median ms | "
          "p95 ms | max ms |\n|---|---|---|---|")
    for name, ms in result["offers"].items():
        print(f"| {name} | {np.median(ms):.1f} | {np.percentile(ms, 95):.1f} | "
              f"{max(ms):.1f} |")
    print(f"\n{args.size}² renders, GRID clip at 25 fps per client, {args.seconds:.0f} s "
          f"({args.warmup:.0f} s warm-up ignored); CPU: the server process, or the "
          "gateway + the node's raylet and hosts")
    print("| sessions | where | FPS per session (mean; each) | latency median / p95 ms | "
          "CPU % |\n|---|---|---|---|---|")
    for row in result["sessions"]:
        for where in ("single process", "cluster node"):
            r = row[where]
            each = ", ".join(str(x) for x in r["fps"])
            print(f"| {row['slots']} | {where} | {r['fps_mean']} ({each}) | "
                  f"{r['latency_median_ms']} / {r['latency_p95_ms']} | {r['cpu_percent']} |")
    print("\n| failover (host SIGKILLed) | kill -> first frame of the new call, s (each) |"
          "\n|---|---|")
    for name, gaps in result["failover"].items():
        print(f"| {name} | {np.median(gaps):.2f} ({', '.join(f'{g:.2f}' for g in gaps)}) |")
    print("\n| viewers | room | publisher preview FPS | FPS per viewer (mean; min) | renders/s "
          "| CPU % |\n|---|---|---|---|---|---|")
    for row in result["fanout"]:
        for name, r in (("single server", row["single server"]), ("Janus", row["janus"])):
            cpu = (f"server {r['cpu_percent']}" if name == "single server" else
                   f"Janus {r['janus_cpu_percent']}, node {r['node_cpu_percent']}, "
                   f"gateway {r['gateway_cpu_percent']}")  # fmt: skip
            renders = r["server_renders_per_s"]
            print(f"| {row['viewers']} | {name} | {r['preview_fps']} | "
                  f"{np.mean(r['viewer_fps']):.1f}; {min(r['viewer_fps'])} | {renders} | {cpu} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="offers,sessions,failover,fanout")
    ap.add_argument("--viewers", default="1,5,10", help="room fan-out: viewers per level")
    ap.add_argument("--offers", type=int, default=10)
    ap.add_argument("--offer-gap", type=float, default=1.0,
                    help="seconds between a hangup and the next offer")
    ap.add_argument("--slots", default="1,2,4", help="sessions per node to measure")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--failovers", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default="out/bench_cluster.json")
    args = ap.parse_args()
    args.slots = [int(x) for x in args.slots.split(",") if x]
    args.viewers = [int(x) for x in args.viewers.split(",") if x]
    enter_private_netns()
    restrict_ice_to_loopback()
    aiortc.rtcrtpreceiver.JitterBuffer = MarkerJitterBuffer
    with av.open(str(asset_root() / "video" / "grid_corpus" / "bbaf2n.mpg")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with tempfile.TemporaryDirectory(prefix="bench_cluster_") as tmp:
        result = run(args, frames, Path(tmp))
    report(result, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"size": args.size, "seconds": args.seconds,
                               "offer_gap_s": args.offer_gap, **result}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
