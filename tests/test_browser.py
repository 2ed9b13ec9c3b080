"""The live service in a real browser: `vn3d serve` + headless Chromium + a fake camera.

Runs only inside a private network namespace, where `lo` is the only interface, so that
no WebRTC or browser traffic can leave the machine (see the suite's netns run):

    unshare --net -- sh -c 'ip link set lo up && .venv/bin/pytest -m netns tests/test_browser.py'

The fake camera is a Y4M file made at test time from a GRID clip. The tests share one
server and one page: the page goes live, a second client throws malformed messages at the
server while the page keeps playing, a second page is turned away as busy at its offer
(the server has one call slot, the first page's), and last
SIGTERM stops the server (the page then says it lost the connection).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from chromium import CHROMEDRIVER, CHROMIUM, chrome

from engines.files.assets import asset_root
from engines.files.video_writer import write_y4m

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[1]
GRID_CLIP = "video/grid_corpus/bbaf2n.mpg"
SERVER_START_TIMEOUT_S = 60.0
LIVE_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 10.0


# -- helpers ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class Server:
    """`python -m vn3d.cli serve` as a subprocess, its output in a log file."""

    def __init__(self, port: int, log: Path, extra: tuple[str, ...] = ("--max-sessions", "1")
                 ) -> None:  # fmt: skip
        self.port = port
        self.log = log
        self.extra = extra
        self.url = f"http://127.0.0.1:{port}/"
        self.proc: subprocess.Popen | None = None
        self.ready_s = 0.0

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "vn3d.cli", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--ice-loopback", *self.extra,
            "--avatar-store", str(self.log.parent / "avatar_store"),
        ]  # fmt: skip
        t0 = time.monotonic()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = t0 + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"vn3d serve exited with {self.proc.returncode} before answering; log:\n"
                    + _tail(self.log)
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url, timeout=2) as r:
                if r.status == 200:
                    self.ready_s = time.monotonic() - t0
                    return
            time.sleep(0.25)
        self.kill()
        pytest.fail(
            f"vn3d serve did not answer {self.url} within {SERVER_START_TIMEOUT_S:.0f} s; log:\n"
            + _tail(self.log)
        )

    def terminate(self) -> float:
        """SIGTERM; returns seconds to exit, or fails (and kills it) after STOP_TIMEOUT_S."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"vn3d serve still running {STOP_TIMEOUT_S:.0f} s after SIGTERM; log:\n"
                + _tail(self.log)
            )
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)  # a loaded machine takes a while to tear a big process down


def _chrome(camera: Path, profile: Path, fake_ui: str = ""):
    return chrome((
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--use-fake-ui-for-media-stream" + (f"={fake_ui}" if fake_ui else ""),
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
        "--allow-loopback-in-peer-connection",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--window-size=1280,900",
        "--autoplay-policy=no-user-gesture-required",
    ))


# A video element's current frame as a small grey image (list of rows), drawn via a canvas.
GRAB_JS = """
const v = document.getElementById(arguments[0]);
if (!v || !v.videoWidth) return null;
const w = 96, h = 72;
const c = document.createElement('canvas');
c.width = w; c.height = h;
const g = c.getContext('2d', {willReadFrequently: true});
g.drawImage(v, 0, 0, w, h);
const d = g.getImageData(0, 0, w, h).data;
const out = [];
for (let y = 0; y < h; y++) {
  const row = [];
  for (let x = 0; x < w; x++) {
    const i = 4 * (y * w + x);
    row.push(Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]));
  }
  out.push(row);
}
return {w: v.videoWidth, h: v.videoHeight, px: out};
"""

PLAYBACK_JS = """
const v = document.getElementById('avatar');
const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {totalVideoFrames: -1};
return {t: v.currentTime, frames: q.totalVideoFrames, state: window.vn3d && window.vn3d.state,
        stats: window.vn3d && window.vn3d.lastStats, nstats: window.vn3d && window.vn3d.statsCount,
        error: window.vn3d && window.vn3d.lastError, socket: window.vn3d && window.vn3d.socket,
        message: document.getElementById('message').textContent};
"""


def _playback(driver) -> dict:
    return driver.execute_script(PLAYBACK_JS)


def _wait_for(driver, what: str, pred, timeout: float) -> dict:
    """Polls the page until pred(playback info) holds; fails naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    info = _playback(driver)
    while not pred(info):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s: {info}\n{_browser_log(driver)}")
        time.sleep(0.2)
        info = _playback(driver)
    return info


def _avatar_pixels(driver) -> np.ndarray:
    """A small grab of the live avatar video."""
    return np.asarray(driver.execute_script(GRAB_JS, "avatar")["px"], dtype=np.float32)


def _motion(driver, before: np.ndarray) -> float:
    """How much the talking head alone changes the avatar grab from ``before`` (its
    largest mean change over 2 s)."""
    motion = 0.0
    for _ in range(4):
        time.sleep(0.5)
        motion = max(motion, float(np.abs(_avatar_pixels(driver) - before).mean()))
    return motion


def _changed(driver, before: np.ndarray, bar: float, timeout: float = 30) -> float:
    """The avatar grab's mean change from ``before`` once it is over ``bar`` (or the last
    one read when ``timeout`` s pass first)."""
    deadline = time.monotonic() + timeout
    change = 0.0
    while time.monotonic() < deadline and change <= bar:
        time.sleep(0.5)
        change = float(np.abs(_avatar_pixels(driver) - before).mean())
    return change


def _screenshot(driver, workdir: Path, name: str) -> None:
    """Save the page; a copy goes to out/ for looking at."""
    shot = workdir / name
    assert driver.save_screenshot(str(shot))
    with contextlib.suppress(OSError):
        (REPO / "out").mkdir(exist_ok=True)
        shutil.copyfile(shot, REPO / "out" / name)


def _browser_log(driver) -> str:
    try:
        return "\n".join(f"{e['level']} {e['message']}" for e in driver.get_log("browser"))
    except Exception as exc:  # the log is a diagnostic only
        return f"(no browser log: {exc})"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def camera_file(workdir: Path) -> Path:
    clip = asset_root() / GRID_CLIP
    if not clip.is_file():  # a broken checkout, not a reason to skip
        pytest.fail(f"GRID clip missing: {clip.resolve()} (asset root {asset_root()})")
    dst = workdir / "camera.y4m"
    assert write_y4m(clip, dst) > 25
    return dst


@pytest.fixture(scope="module")
def server(workdir: Path, ict):
    # a one-person sample gallery where the server looks for it by default, as `make run`
    # leaves it (the full one has 22 people)
    from engines.dataset.build import SAMPLE_ENV, build_sample_dataset
    from engines.emotion.models import default_emotion_models

    gallery = workdir / "london-sample"
    build_sample_dataset(ict, default_emotion_models(ict.expression_names).erm, gallery,
                         limit=1)
    hidden = os.environ.get(SAMPLE_ENV)
    os.environ[SAMPLE_ENV] = str(gallery)  # the server subprocess inherits it
    srv = Server(_free_port(), workdir / "server.log")
    try:
        srv.start()
    finally:  # the in-process servers of other tests keep not seeing a gallery
        if hidden is None:
            os.environ.pop(SAMPLE_ENV, None)
        else:
            os.environ[SAMPLE_ENV] = hidden
    print(f"\nserver answered after {srv.ready_s:.1f} s")
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def page(server: Server, camera_file: Path, workdir: Path):
    """The page, started and live: #avatar plays and window.vn3d.state == 'live'."""
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).is_file():
            pytest.fail(f"{exe} missing: apt-get install -y chromium chromium-driver")
    t0 = time.monotonic()
    driver = _chrome(camera_file, workdir / "profile")
    try:
        t_browser = time.monotonic() - t0
        driver.get(server.url)
        t_load = time.monotonic() - t0
        driver.find_element("id", "start").click()
        t_click = time.monotonic()
        first_t = None
        info = {}
        while time.monotonic() - t_click < LIVE_TIMEOUT_S:
            info = _playback(driver)
            if first_t is None and info["t"] > 0:
                first_t = info["t"]
            if first_t is not None and info["t"] > first_t and info["state"] == "live":
                break
            if info["state"] == "error":
                break
            time.sleep(0.2)
        else:
            pytest.fail(
                f"page not live {LIVE_TIMEOUT_S:.0f} s after Start: {info}\nbrowser log:\n"
                f"{_browser_log(driver)}\nserver log:\n{_tail(server.log)}"
            )
        assert info["state"] == "live", (
            f"page state {info}\nbrowser log:\n{_browser_log(driver)}\n"
            f"server log:\n{_tail(server.log)}"
        )
        t_live = time.monotonic() - t_click
        print(
            f"browser {t_browser:.2f} s, page loaded {t_load:.2f} s, "
            f"live {t_live:.2f} s after Start"
        )
        yield driver
    finally:
        driver.quit()


# -- tests --------------------------------------------------------------------------------------


def test_page_goes_live_with_a_rendered_avatar(page, server: Server, workdir: Path):
    driver = page
    # stats arrive about once a second while media flows; let a few come (steadier numbers)
    # (every stats message's FPS is kept: a starved machine can stall for a second, so one
    # window may read 0, but they must not all)
    deadline = time.monotonic() + 15
    info = _playback(driver)
    fps_seen = [info["stats"]["fps"]] if info["stats"] else []
    while time.monotonic() < deadline and (info["nstats"] < 3 or max(fps_seen, default=0) == 0):
        time.sleep(0.25)
        info = _playback(driver)
        if info["stats"]:
            fps_seen.append(info["stats"]["fps"])
    assert info["stats"], f"no stats message arrived: {info}\nserver log:\n{_tail(server.log)}"
    assert max(fps_seen, default=0) > 0, (fps_seen, info["stats"])
    print(f"stats: {json.dumps(info['stats'])}")

    # the overlay shows them
    fps_text = driver.find_element("css selector", '#stats [data-stat="fps"]').text
    assert fps_text not in ("", "–"), fps_text

    _screenshot(driver, workdir, "browser_screenshot.png")

    avatar = driver.execute_script(GRAB_JS, "avatar")
    local = driver.execute_script(GRAB_JS, "local")
    assert avatar is not None, "no frame in #avatar"
    assert local is not None, "no frame in the local preview"
    a = np.asarray(avatar["px"], dtype=np.float32)
    b = np.asarray(local["px"], dtype=np.float32)
    print(
        f"avatar {avatar['w']}x{avatar['h']} std {a.std():.1f}; "
        f"local {local['w']}x{local['h']} std {b.std():.1f}; "
        f"mean |avatar-local| {np.abs(a - b).mean():.1f}"
    )
    assert a.std() > 8.0, f"the avatar frame is blank (grey std {a.std():.1f})"
    # the server renders a head; it must not just echo the camera (either way round)
    diff = min(np.abs(a - b).mean(), np.abs(a - b[:, ::-1]).mean())
    assert diff > 10.0, f"the avatar frame looks like the camera (mean diff {diff:.1f})"


def _garbage() -> list[str | bytes]:
    """About 50 malformed messages, each of which must be answered with an error."""
    msgs: list[str | bytes] = [
        # not JSON
        "",
        " ",
        "{",
        "}",
        "[1, 2",
        "not json",
        "{'type': 'ping'}",
        '{"type": "ping",}',
        '{"type": ping}',
        "\x00\x01\x02",
        "NaN-ish garbage \ud7ff",
        '"unterminated',
        "{" * 1000,
        b"\xff\xfe\xfd binary",
        b"\x00" * 64,
        # JSON, but not an object with a string type
        "null",
        "true",
        "0",
        "-1.5e300",
        '"offer"',
        "[]",
        '[{"type": "ping"}]',
        "{}",
        '{"type": null}',
        '{"type": 42}',
        '{"type": ["offer"]}',
        '{"type": {"x": 1}}',
        '{"typ": "ping"}',
        # unknown types
        '{"type": "hello"}',
        '{"type": "OFFER"}',
        '{"type": "welcome"}',
        '{"type": "stats"}',
        '{"type": "error", "code": "busy"}',
        '{"type": "' + "x" * 5000 + '"}',
        # known types, bad fields
        '{"type": "offer"}',
        '{"type": "offer", "sdp": 12}',
        '{"type": "offer", "sdp": null}',
        '{"type": "offer", "sdp": "", "sdpType": "offer"}',
        '{"type": "offer", "sdp": "this is not sdp", "sdpType": "offer"}',
        '{"type": "offer", "sdp": "v=0\\r\\nbroken", "sdpType": "answer"}',
        '{"type": "target"}',
        '{"type": "target", "id": 7}',
        '{"type": "target", "id": "no-such-target"}',
        '{"type": "target", "id": "../../etc/passwd"}',
        '{"type": "mode"}',
        '{"type": "mode", "mode": "dance"}',
        '{"type": "mode", "mode": 1}',
        '{"type": "sliders"}',
        '{"type": "sliders", "values": "happy"}',
        '{"type": "sliders", "values": [0.5, 0.5]}',
        '{"type": "sliders", "values": {"happy": "very"}}',
        '{"type": "calibrate", "frames": "many"}',
    ]
    return msgs


def _recv_reply(ws, timeout: float = 10.0) -> dict:
    """The next reply that is not a pong or stats message."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no reply")
        raw = ws.recv(timeout=left)
        msg = json.loads(raw)
        if msg.get("type") not in ("pong", "stats"):
            return msg


def _connect(port: int):
    from websockets.sync.client import connect

    return connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, max_size=2**20)


@contextlib.contextmanager
def _connect_session(port: int):
    """A connection that got its welcome (sockets need no call slot)."""
    with _connect(port) as ws:
        first = _recv_reply(ws)
        assert first["type"] == "welcome", first
        yield ws


# one scenario from the first bad message to the check that the video still plays: split
# up, the steps would lose the live page state they share (a little over 80 lines)
def test_malformed_messages_do_not_disturb_the_live_page(page, server: Server):
    from websockets.exceptions import ConnectionClosed

    driver = page
    before = _playback(driver)

    bad = _garbage()
    t0 = time.monotonic()
    with _connect(server.port) as ws:
        welcome = _recv_reply(ws)
        assert welcome["type"] == "welcome", welcome
        for raw in bad:
            ws.send(raw)
            try:
                reply = _recv_reply(ws)
            except TimeoutError:
                pytest.fail(f"no reply to {raw[:80]!r}\nserver log:\n{_tail(server.log)}")
            except ConnectionClosed as exc:
                pytest.fail(f"server closed the socket on {raw[:80]!r}: {exc}")
            assert reply.get("type") == "error", f"{raw[:80]!r} -> {reply}"
            assert isinstance(reply.get("code"), str) and reply["code"], reply
            assert isinstance(reply.get("message"), str), reply
        print(f"{len(bad)} malformed messages answered in {time.monotonic() - t0:.2f} s")
        # still a working session afterwards
        ws.send('{"type": "ping"}')
        assert json.loads(ws.recv(timeout=10))["type"] in ("pong", "stats")

        # the one call slot is the live page's: a second page gets in, but its Start is
        # turned away as busy; it says so, stops its camera and keeps its socket
        first_window = driver.current_window_handle
        driver.switch_to.new_window("window")
        try:
            driver.get(server.url)
            _wait_for(driver, "second page connected", lambda i: i["socket"] == "open", 10)
            driver.find_element("id", "start").click()
            busy = _wait_for(
                driver, "second page shows the busy message", lambda i: "busy" in i["message"], 15
            )
            assert "its one live session is in use" in busy["message"], busy
            assert busy["state"] == "error" and busy["error"]["code"] == "busy", busy
            camera = "return document.getElementById('local').srcObject"
            assert driver.execute_script(camera) is None  # the camera is off again
            assert driver.find_element("id", "start").is_enabled()
            time.sleep(1.5)
            assert driver.execute_script("return window.vn3d.socket") == "open"
        finally:
            driver.close()
            driver.switch_to.window(first_window)

    # an oversized message (a 100 KB SDP) closes that socket (1009) or is refused
    huge = json.dumps(
        {
            "type": "offer",
            "sdp": "v=0\r\n" + "a=x-junk:" + "y" * 100_000 + "\r\n",
            "sdpType": "offer",
        }
    )
    assert len(huge) > 100_000
    with _connect_session(server.port) as ws:
        ws.send(huge)
        try:
            reply = _recv_reply(ws)
            assert reply.get("type") == "error", reply
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
            assert code == 1009, f"closed with {code} (expected 1009, message too big)"

    # the server still serves new clients
    with _connect_session(server.port):
        pass

    # and the first page kept playing
    time.sleep(1.0)
    mid = _playback(driver)
    time.sleep(1.5)
    after = _playback(driver)
    assert after["state"] == "live", after
    assert after["t"] > mid["t"] > before["t"], (before, mid, after)
    if after["frames"] >= 0:
        assert after["frames"] > mid["frames"], f"avatar frames stopped: {mid} -> {after}"
    assert after["error"] is None, after["error"]


def test_mode_switch_and_target_reach_the_server(page, server: Server):
    driver = page
    welcome = driver.execute_script("return window.vn3d.welcome")
    modes = {m["id"]: m for m in welcome["modes"]}
    assert set(modes) == {"track", "emotion", "sliders"}, welcome["modes"]
    for mid, m in modes.items():  # an unavailable mode is shown disabled, with its reason
        label = driver.find_element("id", f"mode-{mid}").find_element("xpath", "..")
        disabled = driver.execute_script(
            "return arguments[0].disabled", label.find_element("css selector", "input")
        )
        assert disabled == (m.get("available") is False), (mid, m)
        if disabled:
            assert label.get_attribute("title") == (
                m.get("reason") or "not available on this server"
            )
    driver.find_element("id", "calibrate-range").click()
    deadline = time.monotonic() + 10
    while not (ack := driver.execute_script("return window.vn3d.lastCalibrate || null")):
        assert time.monotonic() < deadline, "no reply to the range calibration"
        time.sleep(0.2)
    assert ack["ok"] is True and ack["kind"] == "range" and ack["frames"] == 90, ack

    thumbs = driver.find_elements("css selector", "#targets .target")
    assert len(thumbs) == len(welcome["targets"]) >= 1
    thumbs[0].click()
    assert "selected" in thumbs[0].get_attribute("class")

    if modes["sliders"].get("available") is False:
        print(f"sliders mode unavailable here: {modes['sliders'].get('reason')}")
        return
    driver.find_element("id", "mode-sliders").find_element("xpath", "..").click()
    driver.execute_script(
        "const s = document.querySelector('#sliders input[data-emotion=happy]');"
        "s.value = '0.8'; s.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    n = _playback(driver)["nstats"]
    _wait_for(
        driver,
        "stats report the sliders mode",
        lambda i: i["nstats"] > n + 1 and (i["stats"] or {}).get("mode") == "sliders",
        10,
    )
    driver.find_element("id", "mode-track").find_element("xpath", "..").click()
    n = _playback(driver)["nstats"]
    info = _wait_for(
        driver,
        "stats report the track mode",
        lambda i: i["nstats"] > n + 1 and (i["stats"] or {}).get("mode") == "track",
        10,
    )
    assert info["error"] is None, info["error"]
    assert info["state"] == "live", info


def test_a_gallery_subject_is_a_live_target(page, server: Server, workdir: Path):
    """The sample gallery's subjects are in the picker; choosing one switches the live
    video to that person's head."""
    driver = page
    tid = "sample:london_001"
    thumb = driver.find_element("css selector", f".target[data-id='{tid}']")
    before = _avatar_pixels(driver)
    thumb.click()
    n = _playback(driver)["nstats"]
    _wait_for(driver, "stats after the switch", lambda i: i["nstats"] > n + 2, 15)
    assert thumb.get_attribute("aria-selected") == "true"
    after = _avatar_pixels(driver)
    assert np.abs(after - before).mean() > 5.0, "the video did not change to the subject"
    _screenshot(driver, workdir, "browser_gallery.png")
    driver.find_element("css selector", ".target[data-id='default']").click()
    n = _playback(driver)["nstats"]  # back to the default head before the next test
    _wait_for(driver, "stats after switching back", lambda i: i["nstats"] > n + 2, 15)
    back = _avatar_pixels(driver)
    assert np.abs(back - after).mean() > 5.0, "the video did not switch back"


def _wait_for_new_avatar(driver, server: Server, before: str | None,
                         timeout: float = 120) -> tuple[dict, str]:
    """The page's newest avatar once its id is not ``before`` (window.vn3d.avatar), and
    the status line; fails with the server's log when none comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    made = None
    while time.monotonic() < deadline and not (made and made["id"] != before):
        made = driver.execute_script("return window.vn3d.avatar;")
        time.sleep(0.5)
    status = driver.find_element("id", "avatar-status").text
    assert made and made["id"] != before, (
        f"no new avatar after {timeout:.0f} s; status {status!r}\n"
        f"server log:\n{_tail(server.log)}")
    return made, status


def test_make_my_avatar_in_the_page(page, server: Server, workdir: Path):
    """The page's "Make my avatar" sends a portrait; the new avatar becomes the target (the
    live video changes to it) and the page offers its zip and GLB."""
    driver = page
    before = _avatar_pixels(driver)
    bar = max(5.0, 2 * _motion(driver, before))
    photo = (asset_root() / "faces" / "london_set" / "london_018_neutral.jpg").resolve()
    driver.execute_script("document.getElementById('avatar-photo').hidden = false;")
    driver.find_element("id", "avatar-photo").send_keys(str(photo))
    made, status = _wait_for_new_avatar(driver, server, None)
    assert "ready" in status, status
    links = driver.find_elements("css selector", "#avatar-links a")
    hrefs = sorted(a.get_attribute("href") for a in links)
    assert len(hrefs) == 2 and hrefs[0].split("?")[0].endswith(".glb"), hrefs
    for href in hrefs:  # the downloads work from this browser's user key
        with urllib.request.urlopen(href, timeout=10) as r:
            body = r.read()
        assert body[:4] in (b"glTF", b"PK\x03\x04"), href
    selected = driver.find_element("css selector", ".target[aria-selected='true']")
    assert made["id"] in (selected.get_attribute("data-id") or ""), selected.get_attribute(
        "outerHTML"
    )
    change = _changed(driver, before, bar)  # the next frames show the new target
    assert change > bar, f"the avatar video did not change ({change:.2f}, bar {bar:.2f})"
    _screenshot(driver, workdir, "browser_avatar.png")


def _wait_for_picture(driver, button, timeout: float = 60) -> None:
    """Until the style button's picture has loaded (made on the server's first request)."""
    deadline = time.monotonic() + timeout
    while not driver.execute_script(
            "const i = arguments[0].querySelector('img');"
            "return !!i && i.complete && i.naturalWidth > 0;", button):
        if time.monotonic() > deadline:
            pytest.fail(f"no hairstyle picture within {timeout:.0f} s")
        time.sleep(0.25)


def test_try_on_hair_live_and_save_it(page, server: Server, workdir: Path):
    """On the avatar made above: another style and colour change the live video's hair
    without reconnecting; "Save" makes a new avatar whose files carry the new hair."""
    import io
    import zipfile

    driver = page
    made = driver.execute_script("return window.vn3d.avatar;")
    assert made, "needs the avatar made by test_make_my_avatar_in_the_page"
    before = _avatar_pixels(driver)
    motion = _motion(driver, before)
    bar = max(3.0, 2 * motion)
    pictures = driver.find_elements("css selector", ".hairstyle img")
    assert len(pictures) >= 40  # every style but "as built" and "none" has its picture
    style = driver.find_element("css selector", ".hairstyle[data-style='long_straight']")
    driver.execute_script("arguments[0].scrollIntoView();", style)
    _wait_for_picture(driver, style)
    style.click()
    assert style.get_attribute("aria-selected") == "true"
    driver.execute_script(
        "const c = document.getElementById('hair-colour'); c.value = '#d02020';"
        "c.dispatchEvent(new Event('change'));"
    )
    change = _changed(driver, before, bar)  # aligned off the loop, then the next frames
    assert change > bar, f"the live hair did not change ({change:.2f}, motion {motion:.2f})"
    print(f"grab changed {change:.2f} by the hair, {motion:.2f} by the talking head alone")
    assert driver.execute_script("return window.vn3d.socket") == "open"  # no reconnect
    _screenshot(driver, workdir, "browser_hair_tryon.png")
    save = driver.find_element("id", "hair-save")
    assert save.is_enabled()
    save.click()
    deadline = time.monotonic() + 60
    saved = made
    while time.monotonic() < deadline and saved["id"] == made["id"]:
        time.sleep(0.5)
        saved = driver.execute_script("return window.vn3d.avatar;")
    assert saved["id"] != made["id"], f"not saved\n{_tail(server.log)}"
    with urllib.request.urlopen(server.url.rstrip("/") + saved["zip"], timeout=10) as r:
        data = r.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["hairstyle"] == "long_straight", manifest


def test_make_my_avatar_from_the_camera(page, server: Server, workdir: Path):
    """"From my camera" sends the camera's picture as it is now (the fake camera's GRID
    speaker, unmirrored); his avatar is built like an uploaded one and becomes the target."""
    driver = page
    before = driver.execute_script("return window.vn3d.avatar && window.vn3d.avatar.id;")
    button = driver.find_element("id", "avatar-camera")
    assert button.is_enabled(), "the button waits for the camera, which is on"
    button.click()
    made, status = _wait_for_new_avatar(driver, server, before)
    assert made["name"] == "me from the camera" and "ready" in status, (made, status)
    selected = driver.find_element("css selector", ".target[aria-selected='true']")
    assert made["id"] in (selected.get_attribute("data-id") or "")
    _screenshot(driver, workdir, "browser_avatar_from_camera.png")


def test_stop_then_start_again(page, server: Server):
    driver = page
    driver.find_element("id", "stop").click()
    info = _wait_for(driver, "page idle after Stop", lambda i: i["state"] == "idle", 5)
    assert driver.execute_script("return document.getElementById('local').srcObject") is None
    assert driver.execute_script("return window.vn3d.socket") == "open", info  # kept
    t0 = time.monotonic()
    driver.find_element("id", "start").click()
    _wait_for(driver, "page live again after Start", lambda i: i["state"] == "live", 20)
    mid = _wait_for(driver, "avatar frames after Start", lambda i: i["frames"] > 0, 10)
    _wait_for(
        driver,
        "avatar playing after Start",
        lambda i: i["t"] > mid["t"] and i["frames"] > mid["frames"],
        10,
    )
    print(f"live again {time.monotonic() - t0:.2f} s after Stop + Start")


def test_camera_denied_message(server: Server, camera_file: Path, workdir: Path):
    driver = _chrome(camera_file, workdir / "profile-deny", fake_ui="deny")
    try:
        driver.get(server.url)
        driver.find_element("id", "start").click()
        info = _wait_for(driver, "camera-denied message", lambda i: i["state"] == "error", 10)
        assert info["message"].startswith("Camera access was denied"), info
        assert info["error"]["code"] == "camera", info
        assert driver.find_element("id", "start").is_enabled()
    finally:
        driver.quit()


def test_sigterm_stops_the_server_and_the_page_reconnects(page, server: Server):
    driver = page
    took = server.terminate()
    print(f"server exited {took:.2f} s after SIGTERM (rc {server.proc.returncode})")
    info = _wait_for(
        driver, "page says the connection is lost", lambda i: "Connection lost" in i["message"], 10
    )
    assert info["state"] == "connecting", info  # it re-negotiates once the server is back

    # back on the same port: the page reconnects (backoff 1, 2, 4, 8 s ...) and goes live
    t0 = time.monotonic()
    server.start()
    _wait_for(
        driver, "page live again after the server restart", lambda i: i["state"] == "live", 30
    )
    mid = _wait_for(driver, "avatar frames after reconnect", lambda i: i["frames"] > 0, 10)
    after = _wait_for(
        driver,
        "avatar playing after reconnect",
        lambda i: i["t"] > mid["t"] and i["frames"] > mid["frames"],
        10,
    )
    assert "Connection lost" not in after["message"], after
    print(f"page live again {time.monotonic() - t0:.2f} s after the restart began")


def test_a_flame_server_in_the_page(camera_file: Path, workdir: Path, ict):
    """``vn3d serve --model flame --target-file ...``: the page goes live on the FLAME head
    (a FLAME-format file made of ICT's face), lists the target file, and hides what FLAME
    cannot offer (Make my avatar, hair)."""
    from flame_files import flame_from_ict, write_embedding, write_flame_pickle

    root = workdir / "flame"
    arrays, emb, _ = flame_from_ict(ict)
    env = {"VN3D_FLAME_MODEL": str(write_flame_pickle(root / "generic_model.pkl", arrays)),
           "VN3D_FLAME_LANDMARKS": str(write_embedding(root / "landmark_embedding.npy", emb))}
    target = root / "someone.npz"
    np.savez(target, shape=np.random.default_rng(0).normal(size=300).astype(np.float32),
             model="flame")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the server subprocess inherits them
    srv = Server(_free_port(), workdir / "flame_server.log",
                 ("--max-sessions", "1", "--model", "flame", "--target-file", str(target),
                  "--target", "file:someone"))
    try:
        srv.start()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    driver = _chrome(camera_file, workdir / "flame_profile")
    try:
        driver.get(srv.url)
        driver.find_element("id", "start").click()
        _wait_for(driver, "the FLAME page goes live", lambda i: i["state"] == "live",
                  LIVE_TIMEOUT_S)
        _wait_for(driver, "stats from the FLAME session", lambda i: i["nstats"] >= 2, 20)
        ids = [e.get_attribute("data-id")
               for e in driver.find_elements("css selector", ".target")]
        assert ids == ["default", "file:someone"], ids
        for hidden in ("make-avatar", "hair-group"):
            assert not driver.find_element("id", hidden).is_displayed(), hidden
        _wait_for(driver, "frames of the FLAME avatar", lambda i: i["frames"] >= 5, 30)
        px = _avatar_pixels(driver)
        assert px.std() > 10, "the FLAME avatar video is blank"
        _screenshot(driver, workdir, "browser_flame.png")
    finally:
        driver.quit()
        srv.kill()
