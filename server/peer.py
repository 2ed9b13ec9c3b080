"""The call: an offer in, a peer connection whose outgoing video is the session's avatar
(``RetargetTrack``) on the incoming camera track, the answer out. The avatar goes out
through a ``MediaRelay`` proxy, so a room's subscribers can share it (server/rooms.py);
a microphone, when the offer has one, is kept for them."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

from server.ice import loopback_candidates_only
from server.protocol import ProtocolError
from server.retarget_track import RetargetTrack
from server.session import Session

# an offer is parsed on the event loop by aiortc: bound its work (a browser's has 1-3
# media sections and a few candidates; one with 540 sections took the loop ~1 s)
MAX_MEDIA_SECTIONS = 4
MAX_CANDIDATES = 32


def offer_sdp(msg: dict, loopback: bool) -> str:
    """An ``offer`` message's SDP, checked and bounded before aiortc parses it (on the
    event loop); with ``loopback``, only its 127.0.0.1 candidates."""
    sdp = msg.get("sdp")
    if not isinstance(sdp, str) or msg.get("sdpType", "offer") != "offer":
        raise ProtocolError("bad_sdp", "offer needs 'sdp' (a string) and sdpType 'offer'")
    if "m=video" not in sdp:
        raise ProtocolError("bad_sdp", "the offer has no video")
    lines = sdp.splitlines()
    if sum(ln.startswith("m=") for ln in lines) > MAX_MEDIA_SECTIONS:
        raise ProtocolError("bad_sdp", f"at most {MAX_MEDIA_SECTIONS} media sections (m=)")
    if sum(ln.startswith("a=candidate:") for ln in lines) > MAX_CANDIDATES:
        raise ProtocolError("bad_sdp", f"at most {MAX_CANDIDATES} ICE candidates")
    return loopback_candidates_only(sdp) if loopback else sdp


_drains: set[asyncio.Task] = set()  # the event loop keeps only weak references to tasks


def relay_microphone(relay: MediaRelay, track: MediaStreamTrack) -> asyncio.Task:
    """Start relaying a microphone: a proxy that reads and drops, so the track is consumed
    (and does not queue up) while nobody listens; subscribers' proxies share the reads.
    The task ends with the track."""
    drain = relay.subscribe(track, buffered=False)

    async def read() -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await drain.recv()

    task = asyncio.ensure_future(read())
    _drains.add(task)
    task.add_done_callback(_drains.discard)
    return task


async def answer_offer(session: Session, sdp: str, ice: RTCConfiguration,
                       relay: MediaRelay) -> str:  # fmt: skip
    """The answer SDP to a checked offer (``offer_sdp``); a new offer replaces the call."""
    await session.end_call()  # a new offer replaces the call (reconnects)
    pc = RTCPeerConnection(ice)
    session.pc = pc
    session.call_started_at = time.monotonic()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":  # rendered once; the preview and subscribers share it
            session.avatar_track = RetargetTrack(track, session)
            pc.addTrack(relay.subscribe(session.avatar_track, buffered=False))
        elif track.kind == "audio":  # for the room; never sent back to its speaker
            session.audio_track = track
            relay_microphone(relay, track)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed") and session.pc is pc:
            session.pc = None
            await pc.close()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # aiortc raises ValueError and others on bad SDP
        session.pc = None
        await pc.close()
        reason = str(exc) or type(exc).__name__
        raise ProtocolError("bad_sdp", f"cannot use this offer: {reason}"[:300]) from exc
    return pc.localDescription.sdp
