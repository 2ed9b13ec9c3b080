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
from selenium.webdriver.support.ui import Select
from test_browser import (
    GRAB_JS,
    Server,
    _browser_log,
    _chrome,
    _free_port,
    _screenshot,
    _tail,
)

from engines.files.assets import asset_root
from engines.files.video_writer import write_y4m

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


def wait(driver, what: str, pred, server: Server, timeout: float = TIMEOUT_S,
         script: str = ROOM_JS) -> dict:  # fmt: skip
    """Poll ``script`` in the page until ``pred`` holds of what it returns."""
    deadline = time.monotonic() + timeout
    info = driver.execute_script(script)
    while not pred(info):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s: {info}\n{_browser_log(driver)}\n"
                        f"server log:\n{_tail(server.log)}")  # fmt: skip
        time.sleep(0.2)
        info = driver.execute_script(script)
    return info


@pytest.fixture(scope="module")
def cameras(tmp_path_factory) -> list[Path]:
    out = []
    for name in CLIPS:
        dst = tmp_path_factory.mktemp("cam") / "camera.y4m"
        assert write_y4m(asset_root() / "video" / "grid_corpus" / name, dst) > 25
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


AVATAR_JS = """
const v = window.vn3dAvatar;
const video = document.getElementById('avatar');
return {state: v && v.state, watching: v && v.watching, background: v && v.background,
        error: v && v.error, text: document.body.innerText.trim(),
        frames: video.getVideoPlaybackQuality().totalVideoFrames};
"""


def wait_avatar(driver, what: str, pred, server: Server) -> dict:
    return wait(driver, what, pred, server, script=AVATAR_JS)


def page_pixels(driver) -> np.ndarray:
    import cv2

    png = np.frombuffer(driver.get_screenshot_as_png(), np.uint8)
    return cv2.imdecode(png, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32)  # (H, W, 3) RGB


def test_the_avatar_only_view_for_obs(server, cameras, tmp_path):
    """A picks the green screen and copies the avatar-only link; a second browser (OBS's
    Browser Source, 1280x720) shows only A's avatar, full-frame, the whole page green around
    the head, no text. A reloads its page and starts again: the view follows it (same
    handle, new session), still green."""
    drivers = []
    try:
        a = _chrome(cameras[0], tmp_path / "a")
        drivers.append(a)
        a.get(server.url)
        a.find_element("id", "room-create").click()
        info = wait(a, "A in a room", lambda i: i["room"] and i["room"]["room"], server)
        Select(a.find_element("id", "room-background")).select_by_visible_text("green screen")
        link = a.find_element("id", "room-obs-link").get_attribute("value")
        assert "/avatar.html?" in link and f"room={info['room']['room']}" in link
        assert "participant=" in link
        a.execute_script("document.getElementById('room-group').scrollIntoView()")
        _screenshot(a, tmp_path, "room_obs_panel.png")  # to look at

        obs = _chrome(cameras[1], tmp_path / "obs")  # its camera is never asked for
        drivers.append(obs)
        obs.set_window_size(1280, 720)
        obs.get(link)
        seen = wait_avatar(obs, "the view plays A", lambda i: i["state"] == "playing"
                           and i["background"] == "#00ff00" and i["frames"] > 30, server)
        assert seen["watching"] == info["room"]["you"] and seen["text"] == ""
        time.sleep(1.0)
        page = page_pixels(obs)
        h, w, _ = page.shape
        green = np.array([0, 255, 0], np.float32)
        assert np.abs(page[:, : w // 6] - green).mean() < 2  # the page around the video
        square = page[:, (w - h) // 2 : (w + h) // 2]  # the video, full height
        assert np.abs(square[: h // 10, : h // 10] - green).mean() < 15  # rendered on green
        head = square[h // 4 : 3 * h // 4, h // 3 : 2 * h // 3]
        assert np.abs(head - green).mean() > 100  # a head, not a green frame
        _screenshot(obs, tmp_path, "avatar_only_view.png")

        a.refresh()  # same browser profile: same user key, same background choice
        a.find_element("id", "start").click()  # the ?room= link joins again
        again = wait(a, "A back in the room", lambda i: i["room"] and i["room"]["room"]
                     == info["room"]["room"], server)  # fmt: skip
        assert again["room"]["you"] != info["room"]["you"]
        wait_avatar(obs, "the view follows A", lambda i: i["state"] == "playing"
                    and i["watching"] == again["room"]["you"], server)  # fmt: skip
        time.sleep(1.5)
        square = page_pixels(obs)[:, (w - h) // 2 : (w + h) // 2]
        assert np.abs(square[: h // 10, : h // 10] - green).mean() < 15
    finally:
        for d in drivers:
            d.quit()
