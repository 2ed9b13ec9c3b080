"""Server load: N concurrent synthetic WebRTC clients on loopback (N = 1, 2, 4, 8), each
sending a GRID clip at 25 fps to `vn3d serve --stamp-frames`. Reports per-session received
FPS, end-to-end latency (a frame's send time to the arrival of its render, matched through
the index the server stamps into the avatar video) and CPU use (server process, client
process), as a table and JSON.

The synthetic clients are aiortc peers. aiortc's video jitter buffer hands a frame to the
decoder only when the first packet of the *next* frame arrives (it ignores the RTP marker
bit), which adds one output-frame interval to every measurement: ~0.5 s when a loaded
server sends 2 fps. A browser decodes a frame once its last (marker) packet is in, so the
clients do that too (``MarkerJitterBuffer``); ``--aiortc-jitter`` keeps aiortc's own.

Runs inside a private network namespace (only loopback exists); as root it re-executes
itself under `unshare --net` when needed.

    python scripts/bench_server.py [--clients 1,2,4,8] [--seconds 12] [--size 512]
        [--reader R] [--landmarker tflite|onnx]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

import aiortc.rtcrtpreceiver
import av
import numpy as np
import websockets
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.utils import uint16_add

from engines.files.assets import asset_root
from engines.tracking.landmarkers import DEFAULT_LANDMARKER, LANDMARKERS
from engines.tracking.tracker import DEFAULT_READER, READERS
from server.ice import loopback_candidates_only, restrict_ice_to_loopback
from server.stamps import read_stamp

FPS = 25
CLK = os.sysconf("SC_CLK_TCK")


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, but a video frame is complete at its marker packet (as in a
    browser) instead of when the next frame starts arriving."""

    def add(self, packet):  # -> (pli_flag, JitterFrame | None)
        pli_flag, frame = super().add(packet)
        if frame is not None or not (self._is_video and packet.marker):
            return pli_flag, frame
        packets = []  # from the oldest packet held up to this one: all of this frame?
        for count in range(self.capacity):
            held = self._packets[uint16_add(self._origin, count) % self.capacity]
            if held is None or held.timestamp != packet.timestamp:
                return pli_flag, None
            packets.append(held)
            if held is packet:
                self.remove(count + 1)
                data = b"".join(x._data for x in packets)
                return pli_flag, JitterFrame(data=data, timestamp=packet.timestamp)
        return pli_flag, None


class ClipTrack(MediaStreamTrack):
    """The GRID clip, looped, paced at 25 fps; remembers when each frame index was sent."""

    kind = "video"

    def __init__(self, frames: list[np.ndarray], sent: dict[int, float]) -> None:
        super().__init__()
        self.frames, self.sent, self.i, self.t0 = frames, sent, 0, None

    async def recv(self) -> av.VideoFrame:
        if self.t0 is None:
            self.t0 = time.perf_counter()
        wait = self.t0 + self.i / FPS - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = av.VideoFrame.from_ndarray(self.frames[self.i % len(self.frames)], "rgb24")
        frame.pts, frame.time_base = self.i * (90000 // FPS), Fraction(1, 90000)
        self.sent[self.i] = time.perf_counter()
        self.i += 1
        return frame


async def client(url: str, frames: list[np.ndarray], seconds: float, warmup: float) -> dict:
    sent: dict[int, float] = {}
    received: list[tuple[float, int]] = []
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(ClipTrack(frames, sent))
    tasks = []

    @pc.on("track")
    def on_track(track) -> None:
        async def pull() -> None:
            while True:
                f = await track.recv()
                received.append((time.perf_counter(), read_stamp(f.to_ndarray(format="rgb24"))))

        tasks.append(asyncio.ensure_future(pull()))

    async with websockets.connect(url) as ws:
        welcome = json.loads(await ws.recv())
        if welcome["type"] != "welcome":
            raise RuntimeError(f"server refused: {welcome}")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = loopback_candidates_only(pc.localDescription.sdp)
        await ws.send(json.dumps({"type": "offer", "sdp": sdp, "sdpType": "offer"}))
        while (msg := json.loads(await ws.recv()))["type"] != "answer":
            pass
        await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
        server_latency: list[float] = []
        stages: dict[str, list[float]] = {}  # the server's per-second stage medians, ms
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            with contextlib.suppress(TimeoutError):
                msg = json.loads(await asyncio.wait_for(ws.recv(), left))
                if msg["type"] == "stats" and msg.get("latencyMs") is not None:
                    server_latency.append(msg["latencyMs"])
                    for stage, ms in msg["stages"].items():
                        stages.setdefault(stage, []).append(ms)
    for t in tasks:
        t.cancel()
    await pc.close()
    start = received[0][0] + warmup if received else 0
    window = [(t, k) for t, k in received if t >= start]
    latencies = [1000 * (t - sent[k]) for t, k in window if k in sent and t >= sent[k]]
    span = window[-1][0] - window[0][0] if len(window) > 1 else 0
    return {
        "fps": (len(window) - 1) / span if span else 0.0,
        "latency_ms": latencies,
        "matched": len(latencies) / max(len(window), 1),
        "server_latency_ms": server_latency[1:],  # the first second includes start-up
        "stage_ms": {k: v[1:] for k, v in stages.items()},
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_level(n: int, args, frames) -> dict:
    port = free_port()
    server = start_server(port, ["--max-sessions", str(n), "--size", str(args.size),
                                 "--reader", args.reader, "--landmarker", args.landmarker,
                                 *args.serve_args.split()])
    try:
        url = f"ws://127.0.0.1:{port}/ws"
        cpu0, me0, t0 = cpu_seconds(server.pid), time.process_time(), time.perf_counter()

        drops: dict[str, int] = {}  # socket inode: the most drops seen on it

        async def sample_drops():
            while True:
                for inode, count in udp_drops().items():
                    drops[inode] = max(count, drops.get(inode, 0))
                await asyncio.sleep(0.5)

        async def all_clients():
            sampler = asyncio.ensure_future(sample_drops())
            try:
                return await asyncio.gather(
                    *[client(url, frames, args.seconds, args.warmup) for _ in range(n)]
                )
            finally:
                sampler.cancel()

        results = asyncio.run(all_clients())
        wall = time.perf_counter() - t0
        server_cpu = 100 * (cpu_seconds(server.pid) - cpu0) / wall
        client_cpu = 100 * (time.process_time() - me0) / wall
    finally:
        server.terminate()
        server.wait(30)
    lat = np.concatenate([r["latency_ms"] for r in results]) if results else np.zeros(0)
    return {
        "clients": n,
        "fps_per_session": [round(r["fps"], 1) for r in results],
        "fps_mean": round(float(np.mean([r["fps"] for r in results])), 1),
        "latency_median_ms": round(float(np.median(lat)), 1) if len(lat) else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "stamps_matched": round(float(np.mean([r["matched"] for r in results])), 3),
        "server_latency_median_ms": round(
            float(np.median(np.concatenate([r["server_latency_ms"] for r in results]))), 1
        ),
        "server_cpu_percent": round(server_cpu, 1),
        "client_cpu_percent": round(client_cpu, 1),
        "kernel_udp_drops": sum(drops.values()),
        "stage_median_ms": {
            stage: round(float(np.median([x for r in results for x in r["stage_ms"].get(stage, [])]
                                         or [np.nan])), 1)
            for stage in ("track", "model", "render")
        },
    }


def udp_drops() -> dict[str, int]:
    """Per UDP socket of this network namespace (by inode), the datagrams the kernel
    dropped for a full receive buffer (the last column of /proc/net/udp). The namespace
    is private, so these are this level's server and client sockets; a closed socket takes
    its count with it, so the level samples them while they are open."""
    found = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(name) as f:
            for line in list(f)[1:]:
                fields = line.split()
                found[fields[9]] = int(fields[-1])
    return found


def enter_private_netns() -> None:
    """Go on only where loopback is the sole interface: as root, re-run this command under
    ``unshare --net`` (and exit with its status); otherwise refuse."""
    if {name for _, name in socket.if_nameindex()} == {"lo"}:
        return
    if os.geteuid() != 0:
        sys.exit("run inside a private network namespace (unshare --net), or as root")
    inner = " ".join([sys.executable, *sys.argv])
    sys.exit(subprocess.call(
        ["unshare", "--net", "--", "sh", "-c", f"ip link set lo up && exec {inner}"]))


def start_server(port: int, extra: list[str], log=subprocess.DEVNULL) -> subprocess.Popen:
    """``vn3d serve`` on loopback (ICE on 127.0.0.1, frame stamps); returns once it answers."""
    cmd = [sys.executable, "-m", "vn3d.cli", "serve", "--port", str(port), "--ice-loopback",
           "--stamp-frames", "--no-sample-gallery", *extra]
    server = subprocess.Popen(cmd, stdout=log, stderr=log)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return server
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError("the server did not start") from None
            time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds ignored at the start")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default="out/bench_server.json")
    ap.add_argument("--reader", choices=READERS, default=DEFAULT_READER,
                    help="the server's expression/pose reader")
    ap.add_argument("--landmarker", choices=LANDMARKERS, default=DEFAULT_LANDMARKER,
                    help="the runtime of MediaPipe's networks in the server")
    ap.add_argument("--serve-args", default="",
                    help="more `vn3d serve` options, e.g. \"--render-slots 2\"")
    ap.add_argument(
        "--aiortc-jitter",
        action="store_true",
        help="clients keep aiortc's jitter buffer (adds one output-frame interval)",
    )
    args = ap.parse_args()
    enter_private_netns()
    restrict_ice_to_loopback()  # the clients gather on 127.0.0.1 like the server
    if not args.aiortc_jitter:  # in this process only: the clients, not the server
        aiortc.rtcrtpreceiver.JitterBuffer = MarkerJitterBuffer
    with av.open(str(asset_root() / "video" / "grid_corpus" / "bbaf2n.mpg")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    rows = []
    for n in (int(x) for x in args.clients.split(",")):
        rows.append(run_level(n, args, frames))
        print(f"  {n} clients: {rows[-1]['fps_mean']} fps/session", flush=True)
    print(
        f"\n{args.size}x{args.size} renders, GRID clip at {FPS} fps per client, "
        f"{args.seconds:.0f} s per level ({args.warmup:.0f} s warm-up ignored), clients "
        f"with {'aiortc' if args.aiortc_jitter else 'marker-bit'} jitter buffers"
    )
    print(
        "| clients | FPS per session (mean; each) | latency median / p95 ms | in the server "
        "(receipt to render) median ms | stamps matched | server CPU % | client CPU % | "
        "kernel UDP drops | track / model / render ms |\n|---|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        each = ", ".join(str(x) for x in r["fps_per_session"])
        print(
            f"| {r['clients']} | {r['fps_mean']} ({each}) | {r['latency_median_ms']} / "
            f"{r['latency_p95_ms']} | {r['server_latency_median_ms']} | {r['stamps_matched']} | "
            f"{r['server_cpu_percent']} | {r['client_cpu_percent']} | {r['kernel_udp_drops']} | "
            + " / ".join(str(v) for v in r["stage_median_ms"].values()) + " |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    jitter = "aiortc" if args.aiortc_jitter else "marker"
    out.write_text(json.dumps({"size": args.size, "client_jitter": jitter,
                               "serve_args": args.serve_args, "rows": rows}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
