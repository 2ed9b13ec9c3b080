"""Cluster mode in a real browser: ``vn3d serve --cluster`` (the gateway, a subprocess), a
Ray head and two ``vn3d worker`` nodes of one slot each, headless Chromium with a fake
camera (private network namespace, like test_browser.py).

The page goes live on a session host; the host's process is SIGKILLed mid-stream and the
page, told to offer again, is live on the other slot within 5 s with its mode kept; the
gateway is stopped and started again and the page reconnects by itself and goes live.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from test_browser import Server, _browser_log, _chrome, _free_port, _screenshot, _tail, _wait_for

from engines.files.assets import asset_root
from engines.files.video_writer import write_y4m
from server.cluster.local import local_cluster

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


def test_the_page_survives_a_host_crash_and_a_gateway_restart(tmp_path, ict) -> None:
    camera = tmp_path / "camera.y4m"
    assert write_y4m(asset_root() / "video/grid_corpus/bbaf2n.mpg", camera) > 25
    with local_cluster(tmp_path) as (address, _):
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
