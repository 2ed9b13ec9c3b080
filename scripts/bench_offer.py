"""How long answering an offer holds the event loop: aiortc parses the SDP and makes the
answer on the server's loop, so the project caps offers (4 media sections, 32 candidates,
``server/peer.py``) instead of moving the peer connection off it. This measures the answer
time and the worst stall a 1 ms ticker on the same loop sees, for a browser-like offer
(one video section, its host candidates) and for an offer at the caps — in a process that
holds what the server holds (an ``App``, prepared), with Python's garbage collector as it
is and after ``gc.freeze()`` (what ``vn3d serve`` does once started): a full collection of
the server's ~290k startup objects stalls the loop ~100 ms whatever it is doing.

Runs inside a private network namespace (only loopback exists), like bench_server.

    python scripts/bench_offer.py [--repeats 30] [--out out/bench_offer.json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import enter_private_netns

from server.app import App
from server.config import ServerConfig
from server.ice import restrict_ice_to_loopback
from server.peer import MAX_CANDIDATES, MAX_MEDIA_SECTIONS, offer_sdp


async def client_offer(sections: int, candidates: int | None) -> str:
    """A real aiortc offer with ``sections`` video sections, padded to ``candidates``."""
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for _ in range(sections):
        client.addTransceiver("video")
    await client.setLocalDescription(await client.createOffer())
    sdp = client.localDescription.sdp
    await client.close()
    if candidates is None:
        return sdp
    lines = sdp.split("\r\n")
    have = [ln for ln in lines if ln.startswith("a=candidate:")]
    extra = [f"a=candidate:pad{i} 1 udp 100 127.0.0.1 {6000 + i} typ host"
             for i in range(candidates - len(have))]
    at = lines.index(have[0])
    return "\r\n".join(lines[:at] + extra + lines[at:])


async def ticker(stalls: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        stalls.append(time.perf_counter() - t - 0.001)


async def answer_once(sdp: str) -> tuple[float, float]:
    """(answer ms, worst loop stall ms) for one offer, the server's steps."""
    stalls: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.ensure_future(ticker(stalls, stop))
    await asyncio.sleep(0.01)
    t = time.perf_counter()
    checked = offer_sdp({"type": "offer", "sdp": sdp}, loopback=True)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    await pc.setRemoteDescription(RTCSessionDescription(checked, "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    took = time.perf_counter() - t
    stop.set()
    await tick
    await pc.close()
    return took * 1e3, max(stalls) * 1e3


async def run(repeats: int, gc_state: str) -> list[dict]:
    cases = [("browser-like (1 section)", 1, None),
             (f"at the caps ({MAX_MEDIA_SECTIONS} sections, {MAX_CANDIDATES} candidates)",
              MAX_MEDIA_SECTIONS, MAX_CANDIDATES)]
    rows = []
    for name, sections, candidates in cases:
        sdp = await client_offer(sections, candidates)
        runs = np.array([await answer_once(sdp) for _ in range(repeats)])  # (R, 2)
        rows.append({"gc": gc_state, "offer": name, "sdp_bytes": len(sdp),
                     "answer_median_ms": round(float(np.median(runs[:, 0])), 2),
                     "stall_median_ms": round(float(np.median(runs[:, 1])), 2),
                     "stall_p95_ms": round(float(np.percentile(runs[:, 1], 95)), 2),
                     "stall_max_ms": round(float(runs[:, 1].max()), 2)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default="out/bench_offer.json")
    args = ap.parse_args()
    enter_private_netns()
    restrict_ice_to_loopback()
    app = App(ServerConfig(sample_gallery=False, avatar_store=tempfile.mkdtemp()))
    app.prepare()  # the heap of a started server
    print(f"{len(gc.get_objects())} objects tracked by the garbage collector")
    rows = asyncio.run(run(args.repeats, "as is"))
    gc.collect()
    gc.freeze()
    rows += asyncio.run(run(args.repeats, "frozen after start"))
    print("| garbage collector | offer | SDP bytes | answer median ms | "
          "loop stall median / p95 / max ms |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['gc']} | {r['offer']} | {r['sdp_bytes']} | {r['answer_median_ms']} | "
              f"{r['stall_median_ms']} / {r['stall_p95_ms']} / {r['stall_max_ms']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"repeats": args.repeats, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
