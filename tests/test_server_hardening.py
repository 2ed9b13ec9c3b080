"""Hostile input to the server's pieces, without a network: uploads in order and checked,
quotas, user keys, tokens, odd HTTP paths and JSON."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from avatars.store import AvatarStore
from server.access import token_ok, user_key, valid_user
from server.protocol import ProtocolError, parse
from server.uploads import AvatarBuilds, Quotas, Upload, add_chunk, finished_photo

PHOTO = bytes(range(256)) * 300  # 76.8 KB: three pieces


def pieces(data: bytes) -> list[dict]:
    step = 32 * 1024
    return [{"type": "avatar_chunk", "seq": seq, "data": base64.b64encode(data[i : i + step])
             .decode()} for seq, i in enumerate(range(0, len(data), step))]


def test_pieces_in_order_with_the_right_sum_make_the_photo() -> None:
    upload = Upload(len(PHOTO), "me", False)
    for msg in pieces(PHOTO):
        add_chunk(upload, msg)
    end = {"type": "avatar_end", "sha256": hashlib.sha256(PHOTO).hexdigest()}
    assert finished_photo(upload, end) == PHOTO


def test_out_of_order_or_repeated_pieces_are_refused() -> None:
    first, second, third = pieces(PHOTO)
    for order in ([first, third], [first, first], [second], [{**first, "seq": None}]):
        upload = Upload(len(PHOTO), "me", False)
        with pytest.raises(ProtocolError, match="out of order"):
            for msg in order:
                add_chunk(upload, msg)


def test_a_photo_that_does_not_match_its_sum_is_refused() -> None:
    upload = Upload(len(PHOTO), "me", False)
    for msg in pieces(PHOTO):
        add_chunk(upload, msg)
    for digest in (hashlib.sha256(b"other").hexdigest(), "not hex", None):
        with pytest.raises(ProtocolError, match="sha256"):
            finished_photo(upload, {"type": "avatar_end", "sha256": digest})


def test_quotas(ict, tmp_path) -> None:
    store = AvatarStore(tmp_path / "store")
    user = "user-0123456789abcdef"
    AvatarBuilds(ict, store, 1 << 20, Quotas()).check_quota(user, 1000)  # room: no error
    cases = {
        "avatar builds an hour": Quotas(builds_per_hour=0),
        "avatars per user": Quotas(avatars_per_user=0),
        "MB of avatars per user": Quotas(bytes_per_user=999),
        "store is full": Quotas(store_bytes=999),
    }
    for why, quotas in cases.items():
        with pytest.raises(ProtocolError, match=why) as info:
            AvatarBuilds(ict, store, 1 << 20, quotas).check_quota(user, 1000)
        assert info.value.code == "quota"


def test_build_rate_is_counted_per_user(ict, tmp_path) -> None:
    builds = AvatarBuilds(ict, AvatarStore(tmp_path / "store"), 1 << 20,
                          Quotas(builds_per_hour=2))
    upload = Upload(10, "x", False)
    for _ in range(2):  # each build fails on a non-photo, but it was started: it counts
        with pytest.raises(ProtocolError) as info:
            asyncio.run(builds.build(upload, b"not a photo", "user-a-0123456789abc"))
        assert info.value.code == "bad_photo"
    with pytest.raises(ProtocolError, match="builds an hour"):
        builds.check_quota("user-a-0123456789abc")
    builds.check_quota("user-b-0123456789abc")  # another user is not slowed


def test_user_keys_and_tokens() -> None:
    page_key = "0f1e2d3c4b5a69788796a5b4"
    assert user_key(page_key) == page_key and valid_user(page_key) == page_key
    for weak in ("", "anonymous", "alice", "x" * 65, "../../etc/passwd0000", "a b c d e f g h i"):
        assert valid_user(weak) is None
        issued = user_key(weak)
        assert valid_user(issued) == issued and issued != user_key(weak)  # fresh each time
    assert token_ok(None, "") and token_ok("s3cret", "s3cret")
    assert not token_ok("s3cret", "") and not token_ok("s3cret", "s3cre")


def test_deeply_nested_json_is_bad_json_not_internal() -> None:
    with pytest.raises(ProtocolError) as info:
        parse("[" * 100_000 + "]" * 100_000)
    assert info.value.code == "bad_json"


@pytest.fixture(scope="module")
def app(small_app):
    return small_app


@pytest.mark.parametrize(("path", "status"), [
    ("/index.html", 200),
    ("/viewer/index.html", 404),  # the stand-alone viewer and its npm packages: not served
    ("/viewer/node_modules/three/package.json", 404),
    ("/./viewer/index.html", 404),  # the same folder, spelt otherwise
    ("/viewer/./index.html", 404),
    ("/x/../viewer/index.html", 404),
    ("/a\x00b", 400),
    ("/" + "a" * 300, 404),  # a name too long for the file system
    ("/" + "a/" * 2000, 400),  # longer than any path the service has
    ("/%00", 404),
    ("/targets/nobody.png", 404),
    ("/avatars/0123456789abcdef.zip?user=" + "x" * 20, 404),
])
def test_odd_paths_get_a_status_not_a_traceback(app, path, status) -> None:
    response = asyncio.run(app.routes(None, Request(path, Headers())))
    assert response.status_code == status


def test_welcome_gives_the_page_its_user_key(app) -> None:
    session = app.new_session(user_key(""))
    welcome = app.welcome(session)
    assert valid_user(welcome["user"]) == session.user


def test_offers_with_too_many_sections_or_candidates_are_refused(app) -> None:
    from server.peer import MAX_CANDIDATES, MAX_MEDIA_SECTIONS, offer_sdp

    head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    sections = head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * (MAX_MEDIA_SECTIONS + 536)
    candidates = head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + "".join(
        f"a=candidate:{i} 1 udp 1 127.0.0.1 {5000 + i} typ host\r\n"
        for i in range(MAX_CANDIDATES + 68))
    for sdp, why in ((sections, "media sections"), (candidates, "ICE candidates")):
        with pytest.raises(ProtocolError, match=why) as info:
            offer_sdp({"type": "offer", "sdp": sdp}, False)
        assert info.value.code == "bad_sdp"
    fits = head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n" * MAX_MEDIA_SECTIONS
    assert offer_sdp({"type": "offer", "sdp": fits}, False) == fits


class FakePeer:
    def __init__(self, state: str) -> None:
        self.connectionState = state


def test_calls_that_never_connect_or_go_quiet_are_ended(app) -> None:
    session = app.new_session()
    assert session.call_problem(1000.0, 20) is None  # no call
    session.pc, session.call_started_at = FakePeer("connecting"), 1000.0
    assert session.call_problem(1010.0, 20) is None
    assert session.call_problem(1021.0, 20) == "the call did not connect"
    session.pc = FakePeer("connected")
    session.last_frame_at = 1015.0
    assert session.call_problem(1030.0, 20) is None
    assert session.call_problem(1036.0, 20) == "no video from the camera"
    assert not session.idle(5000.0, 60)  # a call, however quiet, is not an idle socket
    session.pc = None
    session.last_message_at = 1000.0
    assert session.idle(1061.0, 60) and not session.idle(1059.0, 60)


def test_downloads_are_rate_limited_per_user(ict, probe_avatar, tmp_path) -> None:
    from avatars.catalogue import TargetCatalogue
    from avatars.store import AvatarStore
    from server.routes import HttpRoutes, RateLimit
    from server.targets import TargetPicker

    store = AvatarStore(tmp_path / "store")
    avatar_id = store.add(probe_avatar, ict)  # the store's own: anyone may download it
    routes = HttpRoutes(tmp_path, TargetPicker(TargetCatalogue(ict, store)), store,
                        downloads_per_minute=2)
    alice, bob = "alice-0123456789abcdef", "bob-0123456789abcdef0"
    statuses = [routes.respond(f"/avatars/{avatar_id}.zip?user={alice}").status_code
                for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert routes.respond(f"/avatars/{avatar_id}.glb?user={bob}").status_code == 200
    assert routes.respond(f"/avatars/{avatar_id}.png?user={alice}").status_code == 200  # thumbs
    limit = RateLimit(1, 0.05)
    assert limit.allow("k") and not limit.allow("k")
    time.sleep(0.06)
    assert limit.allow("k")  # the window slides


def test_every_client_message_in_the_protocol_table_has_a_handler(app) -> None:
    """The documented message table and the server's dispatch name the same messages (and
    a trickle-ICE candidate, which is refused with a reason)."""
    from server.protocol import CLIENT_MESSAGES

    session = app.new_session()
    handled = set()
    for kind in [*CLIENT_MESSAGES, "candidate", "no_such_type"]:
        try:
            asyncio.run(app.dispatch(session, {"type": kind}))
            handled.add(kind)
        except ProtocolError as exc:
            if exc.code != "unknown_type":
                handled.add(kind)
    assert handled == {*CLIENT_MESSAGES, "candidate"}



def test_sockets_are_bounded_in_all_and_per_address() -> None:
    from server.admission import Admission
    from server.config import ServerConfig

    admission = Admission(ServerConfig(max_sockets=3, max_sockets_per_ip=2))
    for _ in range(2):
        assert admission.socket_refusal("10.0.0.1") == ""
        admission.opened("10.0.0.1")
    assert "from your address" in admission.socket_refusal("10.0.0.1")
    assert admission.socket_refusal("10.0.0.2") == ""  # another address still gets in
    admission.opened("10.0.0.2")
    assert "3 sockets open" in admission.socket_refusal("10.0.0.3")  # the server is full
    admission.closed("10.0.0.1")
    assert admission.socket_refusal("10.0.0.1") == ""
    admission.closed("10.0.0.1")
    assert "10.0.0.1" not in admission.sockets_by_address  # nothing kept per gone address


def test_a_call_takes_its_slot_at_the_offer(app) -> None:
    from server.admission import Admission
    from server.config import ServerConfig

    admission = Admission(ServerConfig(max_sessions=2))
    calling, offering, waiting = (app.new_session() for _ in range(3))
    sessions = [calling, offering, waiting]
    admission.check_call(waiting, sessions)  # sockets alone hold no slot
    calling.pc = FakePeer("connected")
    offering.offering = True  # an answer being made holds its slot already
    with pytest.raises(ProtocolError, match="all 2 sessions") as info:
        admission.check_call(waiting, sessions)
    assert info.value.code == "busy"
    admission.check_call(calling, sessions)  # a new offer in a call keeps its slot
    offering.offering = False  # that offer failed: the slot is free again
    admission.check_call(waiting, sessions)


def test_members_leaving_a_room_at_once() -> None:
    """Every socket closing together (a server shutting down, a network drop) makes each
    member leave while the others' connections to it close: no member is skipped, the room
    goes, and nothing raises (it did: a dict changed while iterated, a room deleted twice)."""
    from types import SimpleNamespace

    from aiortc import RTCConfiguration

    from server.rooms import Room, Rooms

    class SlowPeer:
        closed = 0

        async def close(self) -> None:
            await asyncio.sleep(0.01)  # the others leave meanwhile
            SlowPeer.closed += 1

    rooms = Rooms(6, {}, RTCConfiguration(), loopback=True)
    room = Room("r" * 22)
    members = [SimpleNamespace(id=f"s{i}", room_id=room.id, subscriptions={}) for i in range(4)]
    for m in members:
        room.members[m.id] = m
        m.subscriptions.update({o.id: SlowPeer() for o in members if o is not m})
    rooms._rooms[room.id] = room

    async def all_leave() -> None:
        await asyncio.gather(*(rooms.leave(m) for m in members))

    asyncio.run(all_leave())
    assert rooms.count == 0 and not room.members
    assert SlowPeer.closed == 4 * 3  # every subscription closed once
    assert all(m.room_id is None and not m.subscriptions for m in members)
