"""Room fan-out: one publisher, N viewers (N = 1, 3, 5) on `vn3d serve` (loopback, private
network namespace). The publisher sends a GRID clip at 25 fps and creates a room; each
viewer joins it and subscribes to the publisher's avatar. Reports the frames per second
each viewer receives, the publisher's own preview, the renders the server made (from its
stats), and the server's CPU; the render happens once per publisher when the renders stay
about the same whatever N. Prints a table and writes JSON.

    python scripts/bench_rooms.py [--viewers 1,3,5] [--seconds 10] [--size 256]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

import av
import numpy as np
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import ClipTrack, cpu_seconds, enter_private_netns, free_port, start_server

from engines.files.assets import asset_root
from server.ice import loopback_candidates_only, restrict_ice_to_loopback


async def exchange(ws, msg: dict, want: str) -> dict:
    await ws.send(json.dumps(msg))
    while (reply := json.loads(await ws.recv()))["type"] not in (want, "error"):
        pass
    if reply["type"] == "error":
        raise RuntimeError(f"{msg['type']}: {reply}")
    return reply


def counter(pc: RTCPeerConnection, counts: list[float], tasks: list) -> None:
    @pc.on("track")
    def on_track(track) -> None:
        if track.kind != "video":
            return

        async def pull() -> None:
            with contextlib.suppress(Exception):
                while True:
                    await track.recv()
                    counts.append(time.perf_counter())

        tasks.append(asyncio.ensure_future(pull()))


async def watch_through_server(ws, room: dict, seen: list[float], pcs: list, tasks: list,
                               closers: list) -> None:  # fmt: skip
    """One viewer: subscribe to the publisher's avatar through the server's own room."""
    sub = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pcs.append(sub)
    sub.addTransceiver("video", direction="recvonly")
    counter(sub, seen, tasks)
    await sub.setLocalDescription(await sub.createOffer())
    reply = await exchange(ws, {"type": "subscribe", "participant": room["you"],
                                "sdpType": "offer",
                                "sdp": loopback_candidates_only(sub.localDescription.sdp)},
                           "subscribed")  # fmt: skip
    await sub.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))


async def level(url: str, n: int, frames: list[np.ndarray], seconds: float,
                watch=watch_through_server) -> dict:  # fmt: skip
    """One publisher creates a room, ``n`` viewers join it and ``watch`` its avatar."""
    preview: list[float] = []
    seen: list[list[float]] = [[] for _ in range(n)]
    pcs, sockets, closers = [], [], []
    renders: list[float] = []
    tasks: list[asyncio.Future] = []
    try:
        pub_ws = await websockets.connect(url)
        sockets.append(pub_ws)
        await pub_ws.recv()  # welcome
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.append(pc)
        pc.addTrack(ClipTrack(frames, {}))
        counter(pc, preview, tasks)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await exchange(pub_ws, {"type": "offer", "sdpType": "offer",
                                         "sdp": loopback_candidates_only(pc.localDescription.sdp)},
                                "answer")  # fmt: skip
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        room = await exchange(pub_ws, {"type": "create_room"}, "room")
        for k in range(n):
            ws = await websockets.connect(url)
            sockets.append(ws)
            await ws.recv()
            await exchange(ws, {"type": "join_room", "room": room["room"]}, "room")
            await watch(ws, room, seen[k], pcs, tasks, closers)
        await asyncio.sleep(3.0)  # warm-up
        t0 = time.perf_counter()
        end = t0 + seconds
        while (left := end - time.perf_counter()) > 0:
            with contextlib.suppress(TimeoutError):
                msg = json.loads(await asyncio.wait_for(pub_ws.recv(), left))
                if msg["type"] == "stats":
                    renders.append(msg["fps"])
    finally:
        for task in tasks:
            task.cancel()
        for pc in pcs:
            await pc.close()
        for close in closers:
            await close()
        for ws in sockets:
            await ws.close()

    def fps(times: list[float]) -> float:
        inside = [t for t in times if t0 <= t <= end]
        return len(inside) / seconds

    return {"viewers": n, "preview_fps": round(fps(preview), 1),
            "viewer_fps": [round(fps(s), 1) for s in seen],
            "server_renders_per_s": round(float(np.median(renders)), 1) if renders else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--viewers", default="1,3,5")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="out/bench_rooms.json")
    args = ap.parse_args()
    enter_private_netns()
    restrict_ice_to_loopback()  # the clients gather on 127.0.0.1 like the server
    with av.open(str(asset_root() / "video" / "grid_corpus" / "bbaf2n.mpg")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    rows = []
    for n in (int(x) for x in args.viewers.split(",")):
        port = free_port()
        server = start_server(port, ["--max-sessions", "2", "--room-size", str(n + 1),
                                     "--size", str(args.size)])  # fmt: skip
        try:
            cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
            row = asyncio.run(level(f"ws://127.0.0.1:{port}/ws", n, frames, args.seconds))
            row["server_cpu_percent"] = round(
                100 * (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t0), 1)
        finally:
            server.terminate()
            server.wait(30)
        rows.append(row)
        print(f"{n} viewer(s): {row}")
    print(f"\none publisher at 25 fps, {args.size}² renders, {args.seconds:.0f} s per level")
    print("| viewers | publisher preview FPS | FPS per viewer (each) | server renders/s | "
          "server CPU % |")
    print("|---|---|---|---|---|")
    for r in rows:
        each = ", ".join(f"{x:.1f}" for x in r["viewer_fps"])
        print(f"| {r['viewers']} | {r['preview_fps']:.1f} | {np.mean(r['viewer_fps']):.1f} "
              f"({each}) | {r['server_renders_per_s']} | {r['server_cpu_percent']:.0f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
