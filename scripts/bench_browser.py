"""The live page in a real browser: headless Chromium with a GRID clip as its fake camera,
against `vn3d serve` on loopback, for ``--seconds`` after the page goes live (the first
``--warmup`` seconds ignored). Reports what a user would feel:

- frames the browser sent (its encoder), the server rendered (its stats), the browser
  received, decoded and displayed (the avatar video's playback quality), per second;
- the server's receipt-to-render latency (median and p95 over the run) and its stages;
- the CPU share of the server process and of the browser (all its processes), on this
  machine's cores;
- a screenshot of the page at the end, beside the JSON (to look at).

The page is the shipped one; the bench only watches it (the peer connections it makes are
recorded by a script injected before the page runs, to read their WebRTC statistics).
Runs inside a private network namespace (loopback only); as root it re-executes itself
under `unshare --net`. Prints a table and writes JSON; never a pass/fail gate.

    python scripts/bench_browser.py [--seconds 30] [--clip bbaf2n.mpg] [--fps 30] [--size 512]
        [--avatar PHOTO --hair STYLE] [--serve-args "..."] [--out out/bench_browser.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import CLK, cpu_seconds, enter_private_netns, free_port, start_server

from engines.files.assets import asset_root
from engines.files.video_writer import write_y4m

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
RECORD_PEERS_JS = """
window.__vn3dPeers = [];
const Original = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  const pc = new Original(...args);
  window.__vn3dPeers.push(pc);
  return pc;
};
window.RTCPeerConnection.prototype = Original.prototype;
"""
SAMPLE_JS = """
const done = arguments[arguments.length - 1];
const v = document.getElementById('avatar');
const q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
const out = {t: performance.now() / 1000, state: window.vn3d && window.vn3d.state,
             stats: window.vn3d && window.vn3d.lastStats,
             shown: q ? q.totalVideoFrames - q.droppedVideoFrames : null,
             dropped_at_display: q ? q.droppedVideoFrames : null,
             sent: 0, received: 0, decoded: 0, dropped_decoder: 0};
const peers = (window.__vn3dPeers || []).filter(p => p.connectionState === 'connected');
Promise.all(peers.map(p => p.getStats())).then(reports => {
  for (const report of reports) report.forEach(s => {
    if (s.kind !== 'video') return;
    if (s.type === 'outbound-rtp') out.sent += s.framesSent || 0;
    if (s.type === 'inbound-rtp') {
      out.received += s.framesReceived || 0;
      out.decoded += s.framesDecoded || 0;
      out.dropped_decoder += s.framesDropped || 0;
    }
  });
  done(out);
}, () => done(out));
"""


def chromium(camera: Path, profile: Path):
    """Headless Chromium (Debian's) with the clip as camera, nothing off loopback."""
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must not download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--no-first-run", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--user-data-dir={profile}",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}",
                "--allow-loopback-in-peer-connection",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
                "--disable-features=WebRtcHideLocalIpsWithMdns", "--window-size=1280,900",
                "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))


def browser_cpu_seconds() -> float:
    """CPU seconds of every Chromium process on the machine (the bench runs one browser)."""
    total = 0.0
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            if b"chromium" in Path(f"/proc/{pid}/cmdline").read_bytes():
                total += cpu_seconds(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    return total


def avatar_target(photo: str, hair: str, store: Path) -> str:
    """Build an avatar from ``photo`` with ``hair`` into ``store``; its id."""
    out = subprocess.run([sys.executable, "-m", "vn3d.cli", "avatar", "build", photo, "--hair",
                          hair, "--store", str(store)], capture_output=True, text=True,
                         check=True).stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("avatar "))


def pick_target(driver, target_id: str) -> None:
    """Click a target in the page's strip once the picker lists it."""
    deadline = time.monotonic() + 60
    while True:
        buttons = driver.find_elements("css selector", f'button.target[data-id="{target_id}"]')
        if buttons:
            buttons[0].click()
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the page never listed the target {target_id}")
        time.sleep(0.2)


def watch(driver, seconds: float, warmup: float) -> list[dict]:
    """One sample a second from the page once it is live."""
    driver.find_element("id", "start").click()
    deadline = time.monotonic() + 60
    while driver.execute_script("return window.vn3d && window.vn3d.state") != "live":
        if time.monotonic() > deadline:
            raise RuntimeError("the page did not go live within 60 s")
        time.sleep(0.2)
    time.sleep(warmup)
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(driver.execute_async_script(SAMPLE_JS))
        time.sleep(1.0)
    return samples


def summarise(samples: list[dict], cpu: dict[str, float]) -> dict:
    first, last = samples[0], samples[-1]
    span = last["t"] - first["t"]

    def rate(key: str) -> float:
        return round((last[key] - first[key]) / span, 1)

    stats = [s["stats"] for s in samples[1:] if s.get("stats")]
    latency = [s["latencyMs"] for s in stats if s.get("latencyMs") is not None]
    p95 = [s["latencyP95Ms"] for s in stats if s.get("latencyP95Ms") is not None]
    stages = {k: round(float(np.median([s["stages"][k] for s in stats if k in s["stages"]])), 1)
              for k in ("track", "model", "render") if any(k in s["stages"] for s in stats)}
    return {
        "seconds": round(span, 1),
        "sent_fps": rate("sent"),
        "rendered_fps": round(float(np.mean([s["fps"] for s in stats])), 1) if stats else None,
        "received_fps": rate("received"), "decoded_fps": rate("decoded"),
        "displayed_fps": rate("shown"),
        "dropped_in_server_per_s": round(sum(s["dropped"] for s in stats) / span, 1),
        "dropped_by_decoder": last["dropped_decoder"] - first["dropped_decoder"],
        "dropped_at_display": last["dropped_at_display"] - first["dropped_at_display"],
        "server_latency_median_ms": round(float(np.median(latency)), 1) if latency else None,
        "server_latency_p95_ms": round(float(np.max(p95)), 1) if p95 else None,
        "stage_median_ms": stages,
        **{f"{k}_cpu_percent": round(v, 1) for k, v in cpu.items()},
    }


def run(args, camera: Path, work: Path) -> dict:
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    extra = ["--max-sessions", "1", "--size", str(args.size), *args.serve_args.split()]
    avatar = None
    if args.avatar:
        store = work / "store"
        avatar = avatar_target(args.avatar, args.hair, store)
        extra += ["--avatar-store", str(store)]
    port = free_port()
    server = start_server(port, extra)
    driver = chromium(camera, work / "profile")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                               {"source": RECORD_PEERS_JS})
        driver.get(f"http://127.0.0.1:{port}/")
        if avatar:  # picked in the page's target strip, as a user would
            pick_target(driver, avatar)
        cpu0 = (cpu_seconds(server.pid), browser_cpu_seconds(), time.perf_counter())
        samples = watch(driver, args.seconds, args.warmup)
        wall = time.perf_counter() - cpu0[2]
        driver.save_screenshot(str(Path(args.out).with_suffix(".png")))  # to look at
        cpu = {"server": 100 * (cpu_seconds(server.pid) - cpu0[0]) / wall,
               "browser": 100 * (browser_cpu_seconds() - cpu0[1]) / wall}
    finally:
        driver.quit()
        server.terminate()
        server.wait(30)
    return summarise(samples, cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds ignored after live")
    ap.add_argument("--clip", default="bbaf2n.mpg", help="a GRID clip (video/grid_corpus)")
    ap.add_argument("--fps", type=float, default=None,
                    help="the camera's frame rate (default: the clip's, 25; above it, frames "
                    "repeat in their time)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--avatar", default=None, metavar="PHOTO",
                    help="serve an avatar built from this photo (default: the default head)")
    ap.add_argument("--hair", default="auto", help="the avatar's hair (a style, auto, none)")
    ap.add_argument("--serve-args", default="", help="more `vn3d serve` options")
    ap.add_argument("--out", default="out/bench_browser.json")
    args = ap.parse_args()
    enter_private_netns()
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).is_file():
            sys.exit(f"{exe} missing: apt-get install -y chromium chromium-driver")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        camera = work / "camera.y4m"
        write_y4m(asset_root() / "video" / "grid_corpus" / args.clip, camera, fps=args.fps)
        row = run(args, camera, work)
    target = f"avatar from {Path(args.avatar).name} (hair {args.hair})" if args.avatar \
        else "the default head"
    camera_fps = args.fps or 25
    print(f"\n{args.size}² renders of {target}, {args.clip} at {camera_fps:g} fps as the camera, "
          f"{row['seconds']} s "
          f"live after {args.warmup:.0f} s, {os.cpu_count()} cores, clock {CLK} Hz")
    keys = ["sent_fps", "rendered_fps", "received_fps", "decoded_fps", "displayed_fps",
            "dropped_in_server_per_s", "dropped_by_decoder", "dropped_at_display",
            "server_latency_median_ms", "server_latency_p95_ms", "server_cpu_percent",
            "browser_cpu_percent"]
    print("| " + " | ".join(keys) + " | stages (median ms) |\n|" + "---|" * (len(keys) + 1))
    print("| " + " | ".join(str(row[k]) for k in keys) + f" | {row['stage_median_ms']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target": target, "size": args.size, "clip": args.clip,
                               "camera_fps": camera_fps,
                               "serve_args": args.serve_args, "result": row}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
