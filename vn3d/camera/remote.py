"""Remote mode: this machine's frames go to a ``vn3d serve`` over WebRTC (the page's own
protocol: welcome, offer, answer) and the avatar video it sends back goes to the virtual
camera, for users whose machine is too slow to track and render."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator

import av
import numpy as np
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from server.ice import loopback_candidates_only
from vn3d.camera.local import CameraReport
from vn3d.camera.sink import CameraLike, letterbox
from vn3d.camera.sources import FrameSource, SourceError


class RemoteError(RuntimeError):
    """The server refused the call or went away; the message is the server's when it sent one."""


class SourceTrack(VideoStreamTrack):
    """The source's frames as a WebRTC track, read on a worker thread, paced at 30 fps."""

    def __init__(self, source: FrameSource) -> None:
        super().__init__()
        self._frames: Iterator[tuple[np.ndarray, float]] = source.frames()
        self.ended_error: Exception | None = None

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        try:
            rgb, _ = await asyncio.get_running_loop().run_in_executor(None, next, self._frames)
        except (StopIteration, SourceError) as exc:
            self.ended_error = exc
            self.stop()
            raise MediaStreamError("the source ended") from exc  # ends the sender
        frame = av.VideoFrame.from_ndarray(rgb, "rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


async def _answer(ws) -> dict:
    while True:
        msg = json.loads(await ws.recv())
        if msg.get("type") == "answer":
            return msg
        if msg.get("type") == "error":
            raise RemoteError(f"the server refused the call: {msg.get('code')}: "
                              f"{msg.get('message')}")


async def _ask_background(ws, background: tuple[int, int, int], timeout_s: float) -> None:
    """Have the server render the head on the camera's background, so the whole frame is
    one colour around it (a chroma key keys it all out); an older server without the
    ``background`` message keeps its own."""
    await ws.send(json.dumps({"type": "background",
                              "colour": "#" + "".join(f"{c:02x}" for c in background)}))
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        if msg.get("type") == "background" or msg.get("code") == "unknown_type":
            return
        if msg.get("type") == "error":
            raise RemoteError(f"the server refused the background: {msg.get('code')}: "
                              f"{msg.get('message')}")


async def run_remote(url: str, source: FrameSource, camera: CameraLike,
                     background: tuple[int, int, int], max_frames: int | None = None,
                     loopback: bool = False, progress=None,
                     timeout_s: float = 60.0) -> CameraReport:  # fmt: skip
    """Call the server at ``url`` (ws://host:port/ws, with ?token=... when it needs one),
    send the source, write every avatar frame it returns to the camera. Ends when the
    source ends, after ``max_frames``, or with ``RemoteError`` when the server refuses,
    goes away or sends nothing for ``timeout_s``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    outgoing = SourceTrack(source)
    pc.addTrack(outgoing)
    incoming: asyncio.Future = asyncio.get_running_loop().create_future()

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind == "video" and not incoming.done():
            incoming.set_result(track)

    sent = 0
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        try:
            ws = await websockets.connect(url)
        except (OSError, websockets.InvalidURI, websockets.InvalidHandshake) as exc:
            raise RemoteError(f"cannot reach {url}: {exc}") from exc
        async with ws:
            welcome = json.loads(await ws.recv())
            if welcome.get("type") != "welcome":
                raise RemoteError(f"the server refused the connection: {welcome.get('code')}: "
                                  f"{welcome.get('message')}")
            await _ask_background(ws, background, timeout_s)
            await pc.setLocalDescription(await pc.createOffer())
            sdp = pc.localDescription.sdp
            await ws.send(json.dumps({"type": "offer", "sdpType": "offer",
                                      "sdp": loopback_candidates_only(sdp) if loopback else sdp}))
            answer = await asyncio.wait_for(_answer(ws), timeout_s)
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            track = await asyncio.wait_for(incoming, timeout_s)
            drain = asyncio.ensure_future(_drain(ws))
            try:
                idle_since = time.monotonic()
                while max_frames is None or sent < max_frames:
                    try:
                        frame = await asyncio.wait_for(track.recv(), 1.0)
                    except (TimeoutError, MediaStreamError) as exc:
                        if outgoing.ended_error is not None:
                            break  # the source ended: so does the call
                        if drain.done():
                            raise RemoteError("the server closed the connection") from exc
                        if isinstance(exc, MediaStreamError):
                            raise RemoteError(f"the avatar stream stopped: {exc!r}") from exc
                        if time.monotonic() - idle_since > timeout_s:
                            raise RemoteError(f"no avatar frame for {timeout_s:.0f} s") from exc
                        continue
                    idle_since = time.monotonic()
                    image = letterbox(frame.to_ndarray(format="rgb24"), camera.width,
                                      camera.height, background)  # fmt: skip
                    await loop.run_in_executor(None, camera.send, image)
                    sent += 1
                    if progress is not None:
                        progress(sent)
            finally:
                drain.cancel()
                with contextlib.suppress(Exception):
                    await ws.send(json.dumps({"type": "hangup"}))
    finally:
        await pc.close()
    return CameraReport(sent, time.monotonic() - t0, None)  # the server tracks the faces


async def _drain(ws) -> None:
    """Read (and drop) the server's stats messages; returns when the socket closes."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async for _ in ws:
            pass
