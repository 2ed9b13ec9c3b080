"""Hairstyle try-on: another style or colour on a live session's target, saved as a new
avatar (the old one kept), and the same from the command line."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from server.protocol import ProtocolError


@pytest.fixture(scope="module")
def app(small_app):
    return small_app


def send(app, session, msg: dict) -> dict:
    return asyncio.run(app.dispatch(session, msg))


def test_a_style_and_a_colour_are_tried_on_the_live_target(app) -> None:
    session = app.new_session("u" * 20)
    assert "buzz" in app.welcome(session)["hairstyles"] and "none" in app.welcome(session)[
        "hairstyles"]
    reply = send(app, session, {"type": "hair", "style": "long_straight", "colour": "#ff8000"})
    assert reply == {"type": "hair", "ok": True, "style": "long_straight", "colour": "#ff8000"}
    hair = session.target.hair
    assert hair.shape == (32, 32, 100, 3) and np.isfinite(hair).all()
    assert session.target.hair_rgb == pytest.approx((1.0, 128 / 255, 0.0))
    long_reach = hair[..., 1].min()
    send(app, session, {"type": "hair", "style": "buzz"})  # the colour stays
    assert session.target.hair[..., 1].min() > long_reach + 5  # short: ends far higher
    assert session.target.hair_rgb == pytest.approx((1.0, 128 / 255, 0.0))
    send(app, session, {"type": "hair", "style": "none"})
    assert session.target.hair is None
    send(app, session, {"type": "target", "id": "default"})  # a new target: its own hair
    assert session.hair == (None, None)


@pytest.mark.parametrize("msg", [
    {"type": "hair"},
    {"type": "hair", "style": "mohawk"},
    {"type": "hair", "style": 3},
    {"type": "hair", "colour": "red"},
    {"type": "hair", "colour": "#12345"},
])
def test_bad_hair_messages_are_refused(app, msg) -> None:
    session = app.new_session("u" * 20)
    with pytest.raises(ProtocolError) as info:
        send(app, session, msg)
    assert info.value.code == "bad_message"


def test_saving_makes_a_new_avatar_and_keeps_the_old(app, ict, probe_avatar) -> None:
    user = "s" * 20
    old_id = app.store.add(probe_avatar, ict, owner=user)
    session = app.new_session(user)
    with pytest.raises(ProtocolError) as info:  # the default head is not the user's avatar
        send(app, session, {"type": "hair", "style": "buzz"})
        send(app, session, {"type": "hair_save"})
    assert info.value.code == "unknown_target"
    send(app, session, {"type": "target", "id": old_id})
    with pytest.raises(ProtocolError, match="no hair change"):
        send(app, session, {"type": "hair_save"})
    send(app, session, {"type": "hair", "style": "side_part", "colour": "#102030"})
    reply = send(app, session, {"type": "hair_save"})
    assert reply["type"] == "avatar" and reply["id"] != old_id
    assert {old_id, reply["id"]} <= {t["id"] for t in reply["targets"]}
    saved = app.store.load(reply["id"], ict)
    assert saved.hair is not None and saved.hair.name == "side_part"
    assert saved.hair_rgb == pytest.approx((16 / 255, 32 / 255, 48 / 255))
    assert app.store.entry(reply["id"]).owner == user and not app.store.entry(reply["id"]).public
    assert app.store.load(old_id, ict).hair is None  # the old one is kept as it was
    other = app.new_session("o" * 20)  # nobody else sees it
    with pytest.raises(ProtocolError):
        send(app, other, {"type": "target", "id": reply["id"]})


def test_restyle_from_the_command_line(ict, probe_avatar, tmp_path, capsys) -> None:
    from avatars.store import AvatarStore
    from vn3d.cli import main

    store = AvatarStore(tmp_path / "store")
    old_id = store.add(probe_avatar, ict)
    assert main(["avatar", "restyle", old_id, "--hair", "ponytail", "--colour", "#aa5500",
                 "--store", str(tmp_path / "store")]) == 0
    new_id = capsys.readouterr().out.split()[1].rstrip(":")
    assert {e.id for e in store.entries()} == {old_id, new_id}
    restyled = store.load(new_id, ict)
    assert restyled.hair.name == "ponytail"
    assert restyled.hair_rgb == pytest.approx((170 / 255, 85 / 255, 0.0))
    with pytest.raises(SystemExit, match="unknown hairstyle"):
        main(["avatar", "restyle", old_id, "--hair", "mullet", "--store", str(tmp_path / "store")])


def test_hairstyle_pictures_are_served_and_kept(app, monkeypatch) -> None:
    """``/hairstyles/NAME.png``: each style on the mean head, made once in the background
    (the request is answered at once: 503 until it is made), then from disk."""
    import time

    import cv2

    import avatars.hair.thumbnails as thumbnails
    from engines.files.disk_cache import cache_root

    def picture(name: str) -> np.ndarray:
        deadline = time.monotonic() + 60
        response = app.routes.respond(f"/hairstyles/{name}.png")
        while response.status_code == 503 and time.monotonic() < deadline:
            assert response.headers["Retry-After"] == "2"
            time.sleep(0.2)
            response = app.routes.respond(f"/hairstyles/{name}.png")
        assert response.status_code == 200, name
        return cv2.imdecode(np.frombuffer(response.body, np.uint8), cv2.IMREAD_COLOR)

    t0 = time.monotonic()
    first = app.routes.respond("/hairstyles/bob.png")
    assert first.status_code == 503 and time.monotonic() - t0 < 0.5  # queued, not waited on
    bob, buzz = picture("bob"), picture("buzz")
    assert bob.shape == buzz.shape == (thumbnails.SIZE, thumbnails.SIZE, 3)
    background = np.round(np.array(thumbnails.BACKGROUND[::-1]) * 255)  # BGR
    head = (np.abs(bob - background).sum(2) > 30).mean()
    shaved = (np.abs(buzz - background).sum(2) > 30).mean()
    assert head > shaved + 0.03  # a bob covers more of the picture than a buzz cut
    for bad in ("nope", "none", "BOB", "..%2Fetc"):
        assert app.routes.respond(f"/hairstyles/{bad}.png").status_code == 404, bad
    assert len(list((cache_root() / thumbnails.THUMBNAIL_CACHE).glob("bob-*.png"))) == 1

    def no_render(*args: object) -> None:
        raise AssertionError("the picture on disk should have been used")

    monkeypatch.setattr(thumbnails, "style_picture", no_render)
    again = thumbnails.StyleThumbnails(app.model).png("bob")
    assert again == app.routes.respond("/hairstyles/bob.png").body


def test_the_pictures_are_made_ahead_from_the_command_line(monkeypatch, tmp_path, capsys):
    """``vn3d avatar styles --pictures`` (make run) makes what the page asks for, once."""
    import avatars.hair.styles as styles
    from avatars.hair.thumbnails import THUMBNAIL_CACHE
    from vn3d.cli import main

    monkeypatch.setenv("VN3D_CACHE", str(tmp_path))
    monkeypatch.setattr(styles, "list_styles", lambda: ["buzz", "bob"])
    assert main(["avatar", "styles", "--pictures"]) == 0
    assert "2 made now" in capsys.readouterr().out
    assert len(list((tmp_path / THUMBNAIL_CACHE).glob("*.png"))) == 2
    assert main(["avatar", "styles", "--pictures"]) == 0
    assert "0 made now" in capsys.readouterr().out


def test_live_sessions_draw_hair_as_the_shell_unless_told_strands(app) -> None:
    import argparse

    from server.config import add_arguments, config_from_args

    assert app.new_session("s" * 20).ctx.render_config.hair_shell
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert not config_from_args(parser.parse_args([])).hair_strands
    assert config_from_args(parser.parse_args(["--hair-strands"])).hair_strands
