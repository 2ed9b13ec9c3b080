"""Rooms in real browsers: three headless Chromium pages with different fake cameras and
`vn3d serve --room-size 2` (private network namespace, like test_browser.py).

A creates a room; B opens A's invite link and sees A's avatar (a render of the head, not
A's camera) and gets A's microphone; C, a third, is told the room is full; a wrong room id
is a clear error; A closes its page and B drops A within 5 s.
"""

from __future__ import annotations

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
    _make_y4m,
    _screenshot,
    _tail,
)

from engines.files.assets import asset_root

pytestmark = pytest.mark.netns

CLIPS = ("bbaf2n.mpg", "lwbsza.mpg", "sbia1a.mpg")  # A, B, C
TIMEOUT_S = 60.0

ROOM_JS = """
const v = window.vn3d;
const link = document.getElementById('room-link');
return {state: v.state, room: v.room, remotes: v.remotes, error: v.lastError,
        link: link && !link.hidden ? link.value : null,
        message: document.getElementById('message').textContent,
        tiles: document.querySelectorAll('#room-grid video').length};
"""

AUDIO_JS = """
const v = document.getElementById(arguments[0]);
const s = v && v.srcObject;
return s ? s.getAudioTracks().map(t => t.readyState) : null;
"""


def wait(driver, what: str, pred, server: Server, timeout: float = TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout
    info = driver.execute_script(ROOM_JS)
    while not pred(info):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s: {info}\n{_browser_log(driver)}\n"
                        f"server log:\n{_tail(server.log)}")  # fmt: skip
        time.sleep(0.2)
        info = driver.execute_script(ROOM_JS)
    return info


@pytest.fixture(scope="module")
def cameras(tmp_path_factory) -> list[Path]:
    out = []
    for name in CLIPS:
        dst = tmp_path_factory.mktemp("cam") / "camera.y4m"
        assert _make_y4m(asset_root() / "video" / "grid_corpus" / name, dst) > 25
        out.append(dst)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("rooms")
    srv = Server(_free_port(), work / "server.log",
                 ("--max-sessions", "3", "--room-size", "2", "--size", "160",
                  "--no-sample-gallery"))  # fmt: skip
    srv.start()
    yield srv
    srv.kill()


def grab(driver, video_id: str) -> np.ndarray:
    got = driver.execute_script(GRAB_JS, video_id)
    assert got, f"no frame in #{video_id}"
    return np.asarray(got["px"], np.float32)  # (72, 96) grey


def test_two_people_and_a_third_in_a_room_of_two(server, cameras, tmp_path):
    drivers = []
    try:
        a = _chrome(cameras[0], tmp_path / "a")
        drivers.append(a)
        a.get(server.url)
        a.find_element("id", "room-create").click()  # starts the call, then the room
        info_a = wait(a, "A in a room", lambda i: i["room"] and i["room"]["room"] and i["link"],
                      server)  # fmt: skip
        link, a_id = info_a["link"], info_a["room"]["you"]
        assert f"room={info_a['room']['room']}" in link

        b = _chrome(cameras[1], tmp_path / "b")
        drivers.append(b)
        b.get(link)
        b.find_element("id", "start").click()
        wait(b, "B plays A's avatar",
             lambda i: (i["remotes"].get(a_id) or {}).get("state") == "playing", server)
        wait(a, "A sees B", lambda i: len((i["room"] or {}).get("participants", [])) == 2
             and i["tiles"] == 1, server)  # fmt: skip

        # what B shows of A is the render A sees of itself, not A's camera
        time.sleep(2.0)
        seen = grab(b, f"remote-{a_id}")
        own = grab(a, "avatar")
        camera = grab(a, "local")
        assert np.abs(seen - own).mean() < 25, np.abs(seen - own).mean()
        assert np.abs(seen - camera).mean() > 2 * np.abs(seen - own).mean()
        head = seen[20:52, 32:64].mean()
        assert abs(head - seen[:6, :6].mean()) > 15  # a head on the background
        assert b.execute_script(AUDIO_JS, f"remote-{a_id}") == ["live"]  # A's microphone
        _screenshot(a, tmp_path, "room_a.png")  # copies in out/, to look at
        _screenshot(b, tmp_path, "room_b.png")

        c = _chrome(cameras[2], tmp_path / "c")
        drivers.append(c)
        c.get(link)
        c.find_element("id", "start").click()
        info_c = wait(c, "C told the room is full",
                      lambda i: (i["error"] or {}).get("code") == "room_full", server)
        assert "room is full" in info_c["message"] and info_c["tiles"] == 0
        c.get(server.url + "?room=not-a-room-id")
        c.find_element("id", "start").click()
        info_c = wait(c, "C told the room is unknown",
                      lambda i: (i["error"] or {}).get("code") == "unknown_room", server)
        assert "No such room" in info_c["message"]

        t0 = time.monotonic()
        a.quit()
        drivers.remove(a)
        wait(b, "B drops A", lambda i: i["tiles"] == 0 and a_id not in i["remotes"]
             and len((i["room"] or {}).get("participants", [])) == 1, server,
             timeout=5.0)  # fmt: skip
        print(f"B dropped A {time.monotonic() - t0:.1f} s after A's page closed")
    finally:
        for d in drivers:
            d.quit()
