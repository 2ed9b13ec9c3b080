"""Cluster mode in a real browser: ``vn3d serve --cluster`` (the gateway, a subprocess), a
Ray head and two ``vn3d worker`` nodes of one slot each, headless Chromium with a fake
camera (private network namespace, like test_browser.py).

The page goes live on a session host; the host's process is SIGKILLed mid-stream and the
page, told to offer again, is live on the other slot within 5 s with its mode kept; the
gateway is stopped and started again and the page reconnects by itself and goes live.
With Janus (``--janus``), two pages on two nodes in one room each play the other's avatar.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from test_browser import (
    GRAB_JS,
    Server,
    _browser_log,
    _chrome,
    _free_port,
    _screenshot,
    _tail,
    _wait_for,
)

from engines.files.assets import asset_root
from engines.files.video_writer import write_y4m
from server.cluster.local import local_janus

pytest.importorskip("ray", reason="cluster mode needs the cluster extra (make test installs it)")
pytestmark = pytest.mark.netns
HOSTS_READY_S = 180.0


def wait_for_log(log: Path, pattern: str, count: int, timeout: float) -> list[re.Match]:
    end = time.monotonic() + timeout
    while True:
        found = list(re.finditer(pattern, log.read_text(errors="replace")))
        if len(found) >= count:
            return found
        if time.monotonic() > end:
            pytest.fail(f"{pattern!r} x{count} not in the gateway's log:\n{_tail(log)}")
        time.sleep(0.3)


def playing(driver, after: float) -> bool:
    info = driver.execute_script(
        "const v = document.getElementById('avatar');"
        "return {t: v.currentTime, state: window.vn3d.state};")
    return info["state"] == "live" and info["t"] > after


def tracked(info: dict) -> bool:
    stats = info["stats"] or {}
    return stats.get("face") == "tracked" and stats.get("fps", 0) > 5


def test_the_page_survives_a_host_crash_and_a_gateway_restart(tmp_path, ict, ray_cluster) -> None:
    camera = tmp_path / "camera.y4m"
    assert write_y4m(asset_root() / "video/grid_corpus/bbaf2n.mpg", camera) > 25
    address, _ = ray_cluster
    log = tmp_path / "gateway.log"
    gateway = Server(_free_port(), log, ("--cluster", address, "--size", "256",
                                         "--no-sample-gallery"))  # fmt: skip
    gateway.start()
    driver = None
    try:
        wait_for_log(log, r"session host ready", 2, HOSTS_READY_S)
        driver = _chrome(camera, tmp_path / "profile")
        driver.get(gateway.url)
        _wait_for(driver, "welcome", lambda i: i["socket"] == "open", 30)
        driver.find_element("id", "mode-emotion").find_element("xpath", "..").click()
        driver.find_element("id", "start").click()
        _wait_for(driver, "page live", lambda i: i["state"] == "live" and i["t"] > 0, 60)
        _wait_for(driver, "the host tracks the camera's face", tracked, 30)
        assert not driver.find_element("id", "room-call").is_displayed()  # no rooms yet
        pid = int(wait_for_log(log, r"call on \S+ \(node \w+, pid (\d+)\)", 1, 10)[-1][1])

        os.kill(pid, signal.SIGKILL)  # the host's process, as a crash would
        killed = time.monotonic()
        info = _wait_for(driver, "page asked to offer again",
                         lambda i: driver.execute_script("return window.vn3d.reoffers"), 5)
        t = driver.execute_script("return document.getElementById('avatar').currentTime")
        while not playing(driver, t):
            assert time.monotonic() - killed < 5.0, (
                f"not live again within 5 s: {info}\n{_browser_log(driver)}\n{_tail(log)}")
            time.sleep(0.05)
        gap = time.monotonic() - killed
        calls = wait_for_log(log, r"call on \S+ \(node \w+, pid (\d+)\)", 2, 10)
        assert int(calls[-1][1]) != pid
        _wait_for(driver, "stats from the new host in the kept mode",
                  lambda i: i["stats"] and i["stats"]["mode"] == "emotion", 10)
        print(f"host killed: the page is live again {gap:.2f} s later")

        gateway.terminate()  # the gateway restarts: its hosts go with it
        _wait_for(driver, "page notices", lambda i: "Connection lost" in i["message"], 10)
        restarted = time.monotonic()
        gateway.start()
        _wait_for(driver, "page live after the gateway restart",
                  lambda i: i["state"] == "live", HOSTS_READY_S)
        t = driver.execute_script("return document.getElementById('avatar').currentTime")
        _wait_for(driver, "avatar playing", lambda i: playing(driver, t), 15)
        info = _wait_for(driver, "tracked after the restart", tracked, 30)
        print(f"gateway restarted: the page is live again "
              f"{time.monotonic() - restarted:.1f} s later (new hosts load meanwhile); "
              f"stats {info['stats']}")
        _screenshot(driver, tmp_path, "cluster_page.png")
    finally:
        if driver is not None:
            driver.quit()
        gateway.kill()


ROOM_JS = """
const v = window.vn3d;
return {state: v.state, room: v.room, remotes: v.remotes, error: v.lastError,
        link: document.getElementById('room-link').value,
        obs: !document.getElementById('room-obs-link').hidden,
        tiles: document.querySelectorAll('#room-grid video').length};
"""


def room_wait(driver, what: str, pred, log: Path, timeout: float = 90) -> dict:
    end = time.monotonic() + timeout
    while not pred(info := driver.execute_script(ROOM_JS)):
        if time.monotonic() > end:
            pytest.fail(f"{what}: {info}\n{_browser_log(driver)}\n{_tail(log)}")
        time.sleep(0.2)
    return info


def test_a_room_of_two_pages_on_two_nodes_through_janus(tmp_path, ict, ray_cluster) -> None:
    """Two Chromium pages, their calls on different nodes, in one room: each plays the
    other's avatar, which comes from Janus (the gateway relays no media)."""
    cameras = []
    for name in ("bbaf2n.mpg", "lwbsza.mpg"):
        cameras.append(tmp_path / f"{name}.y4m")
        assert write_y4m(asset_root() / "video/grid_corpus" / name, cameras[-1]) > 25
    address, _ = ray_cluster
    with local_janus(tmp_path / "janus") as (janus, _):
        log = tmp_path / "gateway.log"
        gateway = Server(_free_port(), log, ("--cluster", address, "--janus", janus,
                                             "--size", "160", "--room-size", "2",
                                             "--no-sample-gallery"))  # fmt: skip
        gateway.start()
        drivers = []
        try:
            wait_for_log(log, r"session host ready", 2, HOSTS_READY_S)
            a = _chrome(cameras[0], tmp_path / "a")
            drivers.append(a)
            a.get(gateway.url)
            a.find_element("id", "room-create").click()  # the call, then the room
            info = room_wait(a, "A in a room", lambda i: i["room"] and i["room"]["room"], log)
            assert info["room"]["janus"]["url"] == janus and not info["obs"]
            a_id = info["room"]["you"]
            b = _chrome(cameras[1], tmp_path / "b")
            drivers.append(b)
            b.get(info["link"])
            b.find_element("id", "start").click()
            room_wait(b, "B plays A's avatar from Janus",
                      lambda i: (i["remotes"].get(a_id) or {}).get("state") == "playing", log)
            info_a = room_wait(a, "A plays B's avatar", lambda i: i["tiles"] == 1 and any(
                r.get("state") == "playing" for r in i["remotes"].values()), log)
            b_id = next(iter(info_a["remotes"]))
            nodes = re.findall(r"session (\w+): call on \S+ \(node (\w+)", log.read_text())
            assert dict(nodes)[a_id] != dict(nodes)[b_id], "the two calls share a node"
            time.sleep(2.0)
            seen = np.asarray(b.execute_script(GRAB_JS, f"remote-{a_id}")["px"], np.float32)
            own = np.asarray(a.execute_script(GRAB_JS, "avatar")["px"], np.float32)
            camera = np.asarray(a.execute_script(GRAB_JS, "local")["px"], np.float32)
            assert np.abs(seen - own).mean() < 25, np.abs(seen - own).mean()  # A's render
            assert np.abs(seen - camera).mean() > 2 * np.abs(seen - own).mean()
            _screenshot(a, tmp_path, "cluster_room_a.png")
            _screenshot(b, tmp_path, "cluster_room_b.png")
        finally:
            for d in drivers:
                d.quit()
            gateway.kill()
