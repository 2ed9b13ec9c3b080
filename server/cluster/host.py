"""A session host: one call slot of a worker node, as a Ray actor (``ray.remote`` is
applied by the gateway's pool, so this module needs no Ray to import).

It holds what a process's sessions share (``SessionRuntime``: the face model, the
catalogue on the shared avatar store, the emotion models), loaded once when the actor
starts, and then hosts one call at a time: the gateway hands it the page's offer and
choices, it answers with its own node's ICE candidates, and the camera and avatar video
flow between the page and this node directly. The gateway polls it for the page's
``stats`` and long-polls :meth:`SessionHost.alive`, whose failure tells it the host died.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from avatars.catalogue import UnknownTargetError
from avatars.restyle import restyle_target
from engines.retarget.target import Target
from server.cluster.choices import Choices
from server.cluster.janus import JanusError, JanusSession
from server.config import ServerConfig
from server.ice import ice_configuration, restrict_ice_to_loopback
from server.peer import answer_offer
from server.protocol import ProtocolError
from server.runtime import SessionRuntime
from server.session import Session

log = logging.getLogger("vn3d.server")
ALIVE_POLL_S = 30.0  # how long one alive() call waits before it returns
PUBLISH_S = 10.0  # how long a publication into a room may take to connect


async def connected(pc: RTCPeerConnection, timeout: float = PUBLISH_S) -> None:
    """Until ``pc`` is connected (``TimeoutError`` after ``timeout``, or if it fails)."""
    done = asyncio.Event()

    @pc.on("connectionstatechange")
    def check() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            done.set()

    check()
    await asyncio.wait_for(done.wait(), timeout)
    if pc.connectionState != "connected":
        raise TimeoutError(f"the publication's connection {pc.connectionState}")


class SessionHost:
    def __init__(self, config: ServerConfig) -> None:
        if config.ice_loopback:
            restrict_ice_to_loopback()
        self.config = config
        self.runtime = SessionRuntime(config)
        self.runtime.load_emotion_models()
        self.ice = ice_configuration(config)  # STUN/TURN: a relay for a node behind NAT
        self.relay = MediaRelay()
        self.session: Session | None = None
        self.publication: tuple[JanusSession, RTCPeerConnection] | None = None  # in a room

    async def where(self) -> dict:
        """Which node and process this host is (the gateway's placement and the logs)."""
        import ray  # only ever called inside a Ray actor

        return {"node": ray.get_runtime_context().get_node_id(),
                "address": ray.util.get_node_ip_address(),
                "pid": os.getpid()}  # fmt: skip

    async def alive(self) -> None:
        """Returns after ``ALIVE_POLL_S``; raises in the caller (the gateway's pool) the
        moment the host dies meanwhile."""
        await asyncio.sleep(ALIVE_POLL_S)

    async def offer(self, user: str | None, sdp: str, choices: Choices) -> str:
        """Answer a page's checked offer (``server.peer.offer_sdp``); a call already here
        ends first. The call is this host's (polled, chosen for) once answered."""
        await self.hangup()
        session = self.runtime.new_session(user)
        try:
            await self._apply(session, choices)
            answer = await answer_offer(session, sdp, self.ice, self.relay)
        except BaseException:
            await session.close()
            raise
        self.session = session
        return answer

    async def choose(self, choices: Choices) -> None:
        """Bring the call to the page's choices."""
        if self.session is not None:
            await self._apply(self.session, choices)

    async def _apply(self, session: Session, choices: Choices) -> None:
        """A target was checked by the gateway for this user; loading and restyling it
        runs off the event loop."""
        if choices.target_id != session.target_id or choices.hair != session.hair:
            try:  # (an avatar deleted since the gateway checked it)
                session.target = await asyncio.get_running_loop().run_in_executor(
                    None, self._target, choices, session.user)
            except UnknownTargetError as exc:
                raise ProtocolError("unknown_target", str(exc)) from exc
            session.target_id, session.hair = choices.target_id, choices.hair
        session.mode = choices.mode
        session.sliders = np.asarray(choices.sliders, np.float32)
        session.background = choices.background

    def _target(self, choices: Choices, user: str | None) -> Target:
        target = self.runtime.catalogue.get(choices.target_id, user)
        style, colour = choices.hair
        if style is None and colour is None:
            return target
        return restyle_target(target, self.runtime.model, style, colour)

    async def calibrate(self, kind: str, frames: int) -> None:
        if self.session is not None:
            self.session.calibration = (kind, frames)

    async def poll(self, elapsed: float) -> dict:
        """The call's ``stats`` for the last ``elapsed`` seconds (None before it
        connects) and why it should end, if it should (the call is ended here)."""
        session = self.session
        if session is None:  # hung up, or an offer still being answered
            return {"stats": None, "ended": None}
        if session.pc is None:  # the page's connection failed or closed
            await self.hangup()
            return {"stats": None, "ended": "the call's connection closed"}
        stats = session.stats(elapsed) if session.pc.connectionState == "connected" else None
        problem = session.call_problem(time.monotonic(), self.config.call_timeout_s)
        if problem is not None:
            await self.hangup()
        return {"stats": stats, "ended": problem}

    async def publish(self, url: str, room: int, pin: str, display: str) -> int:
        """Publish the call's avatar (and microphone) into a Janus VideoRoom; its feed id
        (what the room's other pages subscribe to, from Janus). A publication already
        made ends first."""
        await self.unpublish()
        session = self.session
        if session is None or session.avatar_track is None:
            raise ProtocolError("no_call", "start the camera call first: rooms show its avatar")
        janus = await JanusSession.open(url)
        pc = RTCPeerConnection(self.ice)
        self.publication = (janus, pc)
        try:
            handle = await janus.attach()
            joined, _ = await janus.message(handle, {"request": "join", "ptype": "publisher",
                                                     "room": room, "pin": pin,
                                                     "display": display})  # fmt: skip
            pc.addTrack(self.relay.subscribe(session.avatar_track, buffered=False))
            if session.audio_track is not None:
                pc.addTrack(self.relay.subscribe(session.audio_track, buffered=False))
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"type": "offer", "sdp": pc.localDescription.sdp}
            _, answer = await janus.message(handle, {"request": "publish"}, jsep=offer)
            if answer is None:
                raise JanusError("Janus sent no answer to the publication")
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await connected(pc)  # Janus lists a feed to subscribers once its media is up
        except (JanusError, OSError, TimeoutError) as exc:
            await self.unpublish()
            raise ProtocolError("internal", f"the room's media server: {exc}"[:300]) from exc
        return joined["id"]

    async def unpublish(self) -> None:
        if self.publication is not None:
            (janus, pc), self.publication = self.publication, None
            await pc.close()
            await janus.close()  # the session's end takes the publisher out of the room

    async def hangup(self) -> None:
        """End the call (and its publication), if any; the host is free for the next one."""
        await self.unpublish()
        if self.session is not None:
            session, self.session = self.session, None
            await session.close()

    async def close(self) -> None:
        await self.hangup()
        self.runtime.close()
