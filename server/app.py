"""The live retargeting service: aiortc for media, websockets for signalling and the page.

One port serves the page (``client_web/``), target thumbnails and the signalling socket
(``/ws``). Each browser session gets its own ``Retargeter`` (tracker + renderer) on its own
worker thread; the output track always works on the newest received frame.

Signalling messages (JSON): client -> server ``offer``, ``target``, ``mode``, ``sliders``,
``calibrate``, ``ping``; the server answers every one of them with exactly one message
(``answer``, ``target``, ``mode``, ``sliders``, ``calibrate``, ``pong`` or ``error``) and
also sends ``welcome`` first and ``stats`` about once a second during a call. Bad input
gets an ``error`` reply and a log line; the other sessions keep running.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import mimetypes
import signal
import ssl
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aioice.ice
import av
import cv2
import numpy as np
import torch
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from avatars.builder import AvatarBuilder, AvatarError, PhotoLimits, decode_photo, photo_hash
from avatars.store import ID_PATTERN, AvatarStore, StoreError
from engines.dataset.build import sample_dataset_dir
from engines.dataset.loader import Dataset, DatasetError
from engines.emotion.facs import EMOTIONS
from engines.emotion.models import EmotionMode, EmotionModels, default_emotion_models
from engines.encoder.network import N_INPUTS, encoder_onnx
from engines.face.ict import ICTFaceModel
from engines.inference.backend import load_runner
from engines.inference.batcher import InferenceBatcher
from engines.render.renderer import MeshRenderer, RenderConfig
from engines.retarget.retargeter import Retargeter, Target, default_target
from engines.tracking.tracker import DEFAULT_READER, TrackerConfig

log = logging.getLogger("vn3d.server")

WEB_ROOT = Path(__file__).resolve().parent.parent / "client_web"
MODES = ("track", "emotion", "sliders")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_sessions: int = 4
    max_message_bytes: int = 64 * 1024  # larger signalling messages close the socket (1009)
    token: str | None = None  # when set, /ws?token=... is required
    ice_loopback: bool = False  # gather and accept only 127.0.0.1 candidates (tests, local)
    ice_servers: list[str] = field(default_factory=list)  # stun:/turn: URLs; none by default
    size: int = 512  # rendered output size (square)
    cert: str | None = None  # with key: serve https and wss
    key: str | None = None
    web_root: Path = WEB_ROOT
    stats_interval_s: float = 1.0
    stamp_frames: bool = False  # benchmarks: write each source frame's index into the output
    avatar_store: str | None = None  # default: $VN3D_AVATARS or ~/.local/share/vn3d/avatars
    datasets: list[str] = field(default_factory=list)  # built datasets whose subjects are targets
    sample_gallery: bool = True  # also the sample dataset, when built (`vn3d dataset sample`)
    max_upload_bytes: int = 8 * 1024 * 1024  # a portrait sent over the socket for an avatar
    # sessions that track+render at the same time (see App.render_gate); more only adds GIL
    # contention: Mesa's llvmpipe already rasterises each frame on every core
    render_slots: int = 1
    reader: str = DEFAULT_READER  # "mediapipe" or "encoder" (see engines/tracking/tracker.py)
    backend: str = "auto"  # the encoder's: tensorrt, onnxruntime-cuda, onnxruntime-cpu


class ProtocolError(Exception):
    """A client message the server refuses; becomes an ``error`` reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def restrict_ice_to_loopback() -> None:
    """aioice offers no loopback candidates: gather on 127.0.0.1 only (tests, local use)."""
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"]


def loopback_candidates_only(sdp: str) -> str:
    """Drop remote candidates that are not on loopback (and mDNS ``.local`` names)."""
    keep = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) < 5 or parts[4] not in ("127.0.0.1", "::1"):
                continue
        keep.append(line)
    return "\r\n".join(keep) + "\r\n"


class Session:
    """One browser: its peer connection, mode, sliders and a Retargeter on its own thread."""

    def __init__(self, app: App, ws: ServerConnection) -> None:
        self.app, self.ws = app, ws
        self.id = uuid.uuid4().hex[:12]
        self.pc: RTCPeerConnection | None = None
        self.mode = "track"
        self.sliders = np.zeros(6, np.float32)
        self.target_id = app.default_target
        self.calibrate_frames = 0
        # who the page says it is (a random key it keeps): owns its uploaded avatars
        request = getattr(ws, "request", None)
        query = parse_qs(urlsplit(request.path).query) if request is not None else {}
        self.user = query.get("user", [""])[0][:64] or None
        self.upload: bytearray | None = None
        self.upload_meta: dict = {}
        # the GL context and MediaPipe graph live on this one thread
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"s-{self.id}")
        self.retargeter: Retargeter | None = None
        self.emotion: EmotionMode | None = None
        self.last_emotion: tuple[str, float] | None = None
        self.frames_out = 0
        self.dropped = 0  # source frames replaced by a newer one before being rendered
        self.stage_ms: list[dict[str, float]] = []
        self.latency_ms: list[float] = []
        self.face = "lost"

    # -- runs on the session thread -------------------------------------------------------
    def process(self, frame: av.VideoFrame, received_at: float) -> np.ndarray:
        app = self.app
        if self.retargeter is None:
            self.retargeter = Retargeter(
                app.model,
                app.target(self.target_id),
                RenderConfig(app.config.size, app.config.size),
                TrackerConfig(reader=app.config.reader, encoder_fn=app.encoder_batcher),
            )
            if app.emotion_models is not None:
                self.emotion = EmotionMode(app.emotion_models, app.model.expression_names)
        rt = self.retargeter
        if rt.target is not app.target(self.target_id):
            rt.set_target(app.target(self.target_id))
        if self.calibrate_frames:
            rt.tracker.start_neutral_calibration(self.calibrate_frames)
            self.calibrate_frames = 0
        t = float(frame.time) if frame.time is not None else float("nan")
        if not np.isfinite(t):  # a frame without a usable timestamp
            t = time.monotonic()
        timings: dict[str, float] = {}
        if self.mode == "sliders" and app.emotion_models is not None:
            psi, theta = app.emotion_models.sliders(self.sliders.tolist())
            image = rt.render(psi, theta[:3], timings, gaze=theta[3:6])
            self.face = "none"  # no tracking in sliders mode
        else:
            track = rt.tracker.process(frame, t)
            timings.update(rt.tracker.timings_ms)
            self.face = track.status
            if self.mode == "emotion" and self.emotion is not None:
                label, intensity, psi, theta = self.emotion.step(track.expression)
                self.last_emotion = (label, intensity)
                image = rt.render(psi, track.rotation + theta[:3], timings, gaze=theta[3:6])
            else:
                image = rt.render(track.expression, track.rotation, timings)
        self.stage_ms.append(timings)
        self.latency_ms.append(1000 * (time.perf_counter() - received_at))
        self.frames_out += 1
        return image

    def close_engines(self) -> None:
        if self.retargeter is not None:
            self.retargeter.close()
            self.retargeter = None

    # -- runs on the event loop ----------------------------------------------------------
    def stats(self, elapsed: float) -> dict:
        stages: dict[str, float] = {}
        for key in ("track", "filter", "model", "render"):
            values = [s[key] for s in self.stage_ms if key in s]
            if values:
                stages[key] = round(float(np.median(values)), 1)
        msg = {
            "type": "stats",
            "fps": round(self.frames_out / elapsed, 1),
            "stages": stages,
            "face": self.face,
            "mode": self.mode,
            "emotion": (
                {"label": self.last_emotion[0], "intensity": round(self.last_emotion[1], 2)}
                if self.mode == "emotion" and self.last_emotion
                else None
            ),
            "latencyMs": round(float(np.median(self.latency_ms)), 1) if self.latency_ms else None,
            "dropped": self.dropped,
        }
        self.frames_out, self.dropped, self.stage_ms, self.latency_ms = 0, 0, [], []
        return msg

    async def close(self) -> None:
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await pc.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.close_engines)
        self.executor.shutdown(wait=False)


class RetargetTrack(MediaStreamTrack):
    """The avatar video: each output frame is the target rendered from the newest input.

    Where latency can pile up, and what bounds it here:

    * decoded frames: ``_read_source`` takes every decoded frame from the source track as
      soon as aiortc delivers it and keeps only the newest; one that is replaced before it
      is rendered is dropped and counted (``dropped`` in the session's ``stats``). Encoded
      VP8 frames cannot be skipped (inter-coded), decoded ones can, at no cost.
    * the frame is chosen when the render starts, not when it is requested: a session
      waiting for ``App.render_gate`` renders whatever is newest once its turn comes.
    * UDP: aiortc reads RTP on the event loop. Rendering holds the GIL for long stretches
      (moderngl calls into Mesa's llvmpipe do not release it); with a render per session
      running at once the loop got the GIL too seldom to drain the sockets, and the
      kernel receive buffers (~400 KB each) held seconds of video. The gate caps how many
      renders run at once (``ServerConfig.render_slots``), so the loop keeps up.
    """

    kind = "video"

    def __init__(self, source: MediaStreamTrack, session: Session) -> None:
        super().__init__()
        self.source, self.session = source, session
        self._lock = threading.Lock()  # _pending is set on the loop, taken on the session thread
        self._pending: tuple[av.VideoFrame, float] | None = None  # newest frame not yet rendered
        self._ended = False
        self._new = asyncio.Event()
        self._pump = asyncio.ensure_future(self._read_source())

    def _offer(self, frame: av.VideoFrame) -> None:
        """Make ``frame`` the next one to render; a frame it replaces is dropped."""
        with self._lock:
            if self._pending is not None:
                self.session.dropped += 1
            self._pending = (frame, time.perf_counter())
        self._new.set()

    def _take(self) -> tuple[av.VideoFrame, float]:
        with self._lock:
            pending, self._pending = self._pending, None
        assert pending is not None  # only recv() takes, and it waits for a pending frame
        return pending

    async def _read_source(self) -> None:
        """Take each decoded frame as it arrives; keep only the newest (never a queue)."""
        try:
            while True:
                self._offer(await self.source.recv())
        except Exception:  # the source ended (MediaStreamError) or the call closed
            self._ended = True
            self._new.set()

    def _render_newest(self) -> tuple[av.VideoFrame, np.ndarray]:
        """On the session thread: wait for a render slot, then render the newest frame."""
        with self.session.app.render_gate:
            frame, received_at = self._take()
            return frame, self.session.process(frame, received_at)

    async def recv(self) -> av.VideoFrame:
        while self._pending is None:
            if self._ended or self.readyState != "live":
                self.stop()
                raise MediaStreamError
            await self._new.wait()
            self._new.clear()
        loop = asyncio.get_running_loop()
        frame, image = await loop.run_in_executor(self.session.executor, self._render_newest)
        if self.session.app.config.stamp_frames:
            write_stamp(image, frame_index(frame))
        out = av.VideoFrame.from_ndarray(image, format="rgb24")
        out.pts, out.time_base = frame.pts, frame.time_base
        return out

    def stop(self) -> None:
        super().stop()
        self._pump.cancel()
        self._new.set()  # a recv() waiting for a frame ends too


class App:
    """Holds what sessions share: the face model, targets, emotion models, the session table."""

    def __init__(self, config: ServerConfig, target: str = "default") -> None:
        self.config = config
        self.model = ICTFaceModel()
        self.targets: dict[str, Target] = {"default": default_target(self.model)}
        self.names = {"default": "Default head"}
        for path in config.datasets:  # dataset subjects: the gallery, shown to everyone
            self.add_dataset(Dataset(path))
        if config.sample_gallery:
            self.add_sample_gallery()
        if target not in self.targets:
            raise ValueError(f"unknown target {target!r}; known: {', '.join(self.targets)}")
        self.default_target = target
        self.thumbnails: dict[str, bytes] = {}
        self.emotion_models: EmotionModels | None = None
        self.emotion_reason = ""
        self.sessions: dict[str, Session] = {}
        self.store = AvatarStore(config.avatar_store)
        self.avatar_targets: dict[str, Target] = {}  # loaded store avatars, by id
        self.builder: AvatarBuilder | None = None  # made on the builder thread
        self.build_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar")
        # at most render_slots sessions track+render at once (see RetargetTrack)
        self.render_gate = threading.BoundedSemaphore(max(1, config.render_slots))
        if config.ice_loopback:
            restrict_ice_to_loopback()
        # one encoder for every session: requests from all sessions go out in one batch
        self.encoder_batcher: InferenceBatcher | None = None
        if config.reader == "encoder":
            runner = load_runner(encoder_onnx(), config.backend)
            self.encoder_batcher = InferenceBatcher(runner, (N_INPUTS,), max_batch=64,
                                                    max_wait_ms=2.0, name="landmark-encoder")

    def add_dataset(self, dataset: Dataset) -> None:
        for subject in dataset.subjects:
            tid = f"ds-{dataset.root.name}-{subject}"
            self.targets[tid] = dataset.target(subject, self.model)
            self.names[tid] = f"{dataset.root.name}: {subject}"

    def add_sample_gallery(self) -> None:
        """The out-of-the-box gallery, when the set-up step built it; the server runs
        without it (a hint in the log) and a damaged one does not stop it."""
        folder = sample_dataset_dir()
        if not (folder / "manifest.json").is_file():
            log.info("no sample gallery at %s (build it: vn3d dataset sample)", folder)
            return
        try:
            self.add_dataset(Dataset(folder))
        except DatasetError as exc:
            log.warning("sample gallery left out: %s (rebuild: vn3d dataset sample)", exc)
    def prepare(self) -> None:
        """Thumbnails and the emotion models (trained on first use, then cached)."""
        with MeshRenderer(self.model.topology, RenderConfig(160, 160, samples=4)) as r:
            for tid, target in self.targets.items():
                self.thumbnails[tid] = self.thumbnail(target, r)
        try:
            self.emotion_models = default_emotion_models(self.model.expression_names)
        except Exception as exc:  # the service still runs in "track" mode
            self.emotion_reason = f"emotion models unavailable: {exc}"
            log.exception("emotion models unavailable")

    # -- targets and avatars --------------------------------------------------------------
    def target(self, target_id: str) -> Target:
        """A built-in target or a (cached) avatar from the store."""
        if target_id in self.targets:
            return self.targets[target_id]
        if target_id not in self.avatar_targets:
            self.avatar_targets[target_id] = self.store.load(target_id, self.model).target()
        return self.avatar_targets[target_id]

    def visible_avatar(self, avatar_id: object, user: str | None) -> str:
        """The id of a store avatar ``user`` may use; ProtocolError otherwise."""
        if isinstance(avatar_id, str) and ID_PATTERN.match(avatar_id):
            try:
                if self.store.entry(avatar_id).visible_to(user):
                    return avatar_id
            except (StoreError, OSError, ValueError):
                pass
        raise ProtocolError("unknown_target", f"unknown target {str(avatar_id)[:64]!r}")

    def target_list(self, user: str | None) -> list[dict]:
        out = [
            {"id": t, "name": self.names[t], "thumbnail": f"/targets/{t}.png"}
            for t in self.targets
        ]
        for entry in self.store.entries(user):
            out.append(self.avatar_info(entry.id, entry.name, user))
        return out

    def avatar_info(self, avatar_id: str, name: str, user: str | None) -> dict:
        query = self.download_query(user)
        return {
            "id": avatar_id, "name": name, "avatar": True,
            "thumbnail": f"/avatars/{avatar_id}.png{query}",
            "zip": f"/avatars/{avatar_id}.zip{query}", "glb": f"/avatars/{avatar_id}.glb{query}",
        }

    def download_query(self, user: str | None) -> str:
        parts = [f"user={user}"] if user else []
        if self.config.token:
            parts.append(f"token={self.config.token}")
        return "?" + "&".join(parts) if parts else ""

    def avatar_thumbnail(self, avatar_id: str) -> bytes:
        if avatar_id not in self.thumbnails:
            with MeshRenderer(self.model.topology, RenderConfig(160, 160)) as r:
                self.thumbnails[avatar_id] = self.thumbnail(self.target(avatar_id), r)
        return self.thumbnails[avatar_id]

    def thumbnail(self, target: Target, renderer: MeshRenderer) -> bytes:
        """A PNG of the target's neutral head (with its hair), front view."""
        renderer.set_texture(target.texture)
        renderer.set_hair(target.hair, target.hair_rgb)
        with torch.no_grad():
            v = self.model.forward_prepared(
                self.model.prepare_identity(target.shape), *self.model.zero_params(1)[1:]
            )[0]
        ok, png = cv2.imencode(".png", cv2.cvtColor(renderer.render(v), cv2.COLOR_RGB2BGR))
        return png.tobytes() if ok else b""

    def build_avatar(self, data: bytes, name: str, user: str | None, public: bool) -> str:
        """On the builder thread: photo -> avatar -> store; returns the id."""
        image = decode_photo(data, PhotoLimits(max_bytes=self.config.max_upload_bytes))
        if self.builder is None:
            self.builder = AvatarBuilder(self.model)
        avatar = self.builder.build(image, name, photo_hash(data))
        return self.store.add(avatar, self.model, owner=user, public=public)

    async def upload(self, session: Session, msg: dict) -> dict:
        """``avatar_begin`` {name, bytes, public}, ``avatar_chunk`` {data: base64} ...,
        ``avatar_end``: a portrait in pieces (each under the message limit), then a build."""
        kind = msg["type"]
        if kind == "avatar_begin":
            size = msg.get("bytes")
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                raise ProtocolError("bad_message", "avatar_begin needs 'bytes' (an integer)")
            if size > self.config.max_upload_bytes:
                limit = self.config.max_upload_bytes // (1024 * 1024)
                raise ProtocolError("too_large", f"the photo is larger than {limit} MB")
            name = msg.get("name")
            name = name.strip()[:48] if isinstance(name, str) and name.strip() else "my avatar"
            session.upload = bytearray()
            session.upload_meta = {"bytes": size, "name": name, "public": msg.get("public") is True}
            return {"type": "avatar_begin", "ok": True}
        if session.upload is None:
            raise ProtocolError("bad_message", "send avatar_begin first")
        if kind == "avatar_chunk":
            try:
                piece = base64.b64decode(msg.get("data", ""), validate=True)
            except (ValueError, TypeError) as exc:
                session.upload = None
                raise ProtocolError("bad_message", "avatar_chunk data must be base64") from exc
            session.upload += piece
            if len(session.upload) > session.upload_meta["bytes"]:
                session.upload = None
                raise ProtocolError("too_large", "more bytes than avatar_begin announced")
            return {"type": "avatar_chunk", "ok": True, "received": len(session.upload)}
        data, meta, session.upload = bytes(session.upload), session.upload_meta, None
        if len(data) != meta["bytes"]:
            raise ProtocolError("bad_message", f"got {len(data)} of {meta['bytes']} bytes")
        loop = asyncio.get_running_loop()
        try:
            avatar_id = await loop.run_in_executor(
                self.build_executor, self.build_avatar, data, meta["name"], session.user,
                meta["public"],
            )
        except AvatarError as exc:
            raise ProtocolError("bad_photo", str(exc)) from exc
        return {
            "type": "avatar", "ok": True, **self.avatar_info(avatar_id, meta["name"], session.user),
            "targets": self.target_list(session.user),
        }

    def avatar_download(self, path: str, query: dict[str, list[str]]) -> Response:
        """GET /avatars/<id>.png|zip|glb?user=...: for the owner, or anyone when public."""
        if self.config.token and query.get("token", [""])[0] != self.config.token:
            return http_response(HTTPStatus.UNAUTHORIZED, b"a valid token is required\n",
                                 "text/plain")
        stem, _, ext = path[len("/avatars/") :].partition(".")
        user = query.get("user", [""])[0][:64] or None
        try:
            avatar_id = self.visible_avatar(stem, user)
            if ext == "png":
                return http_response(HTTPStatus.OK, self.avatar_thumbnail(avatar_id), "image/png")
            if ext == "zip":
                return http_response(HTTPStatus.OK, self.store.zip(avatar_id), "application/zip")
            if ext == "glb":
                return http_response(HTTPStatus.OK, self.store.glb(avatar_id),
                                     "model/gltf-binary")
        except (ProtocolError, StoreError, ValueError):
            pass
        return not_found()

    # -- HTTP -----------------------------------------------------------------------------
    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/ws":
            return None  # the WebSocket handshake goes on
        if path.startswith("/avatars/"):
            return self.avatar_download(path, parse_qs(urlsplit(request.path).query))
        if path.startswith("/targets/") and path.endswith(".png"):
            png = self.thumbnails.get(path[len("/targets/") : -4])
            return http_response(HTTPStatus.OK, png, "image/png") if png else not_found()
        root = self.config.web_root.resolve()
        file = (root / (path.lstrip("/") or "index.html")).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            return not_found()
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return http_response(HTTPStatus.OK, file.read_bytes(), mime)

    # -- signalling -----------------------------------------------------------------------
    async def handle(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        if self.config.token and query.get("token", [""])[0] != self.config.token:
            await send(ws, error("unauthorized", "a valid token is required (?token=...)"))
            await ws.close(1008, "unauthorized")
            return
        if len(self.sessions) >= self.config.max_sessions:
            n = self.config.max_sessions
            await send(ws, error("busy", f"the server is busy: all {n} sessions are in use"))
            await ws.close(1013, "busy")
            return
        session = Session(self, ws)
        self.sessions[session.id] = session
        log.info("session %s opened (%d active)", session.id, len(self.sessions))
        stats = asyncio.ensure_future(self.send_stats(session))
        try:
            await send(ws, self.welcome(session))
            async for raw in ws:
                try:
                    reply = await self.dispatch(session, parse(raw))
                except ProtocolError as exc:
                    log.warning("session %s: %s: %s", session.id, exc.code, exc)
                    reply = error(exc.code, str(exc))
                except Exception as exc:  # a bug must not take the server down
                    log.exception("session %s: internal error", session.id)
                    reply = error("internal", f"internal error: {type(exc).__name__}")
                if reply is not None:
                    await send(ws, reply)
        except ConnectionClosed:
            pass
        finally:
            stats.cancel()
            del self.sessions[session.id]
            await session.close()
            log.info("session %s closed (%d active)", session.id, len(self.sessions))

    def welcome(self, session: Session) -> dict:
        emotion_ok = self.emotion_models is not None
        return {
            "type": "welcome",
            "session": session.id,
            "targets": self.target_list(session.user),
            "modes": [
                {"id": "track", "available": True},
                {"id": "emotion", "available": emotion_ok, "reason": self.emotion_reason},
                {"id": "sliders", "available": emotion_ok, "reason": self.emotion_reason},
            ],
            "emotions": list(EMOTIONS),
            "target": session.target_id,
            "mode": session.mode,
            "maxSessions": self.config.max_sessions,
        }

    async def dispatch(self, session: Session, msg: dict) -> dict | None:
        kind = msg["type"]
        if kind == "ping":
            return {"type": "pong"}
        if kind == "offer":
            return await self.answer(session, msg)
        if kind == "target":
            target = msg.get("id")
            if not (isinstance(target, str) and target in self.targets):
                target = self.visible_avatar(target, session.user)
                loop = asyncio.get_running_loop()
                try:  # load (and check) it off the event loop
                    await loop.run_in_executor(None, self.target, target)
                except (StoreError, ValueError) as exc:
                    raise ProtocolError("unknown_target", f"avatar {target}: {exc}") from exc
            session.target_id = target
            return {"type": "target", "id": target, "ok": True}
        if kind == "mode":
            mode = msg.get("mode")
            if mode not in MODES:
                raise ProtocolError("bad_message", f"mode must be one of {', '.join(MODES)}")
            if mode != "track" and self.emotion_models is None:
                raise ProtocolError("unavailable", self.emotion_reason)
            session.mode = mode
            return {"type": "mode", "mode": mode, "ok": True}
        if kind == "sliders":
            session.sliders = slider_values(msg.get("values"))
            return {"type": "sliders", "ok": True}
        if kind == "calibrate":
            frames = msg.get("frames", 15)
            if not isinstance(frames, int) or isinstance(frames, bool) or not 1 <= frames <= 300:
                raise ProtocolError("bad_message", "frames must be an integer in 1..300")
            session.calibrate_frames = frames
            return {"type": "calibrate", "ok": True, "frames": frames}
        if kind in ("avatar_begin", "avatar_chunk", "avatar_end"):
            return await self.upload(session, msg)
        if kind == "candidate":
            raise ProtocolError(
                "bad_message", "no trickle ICE: send the offer after gathering completes"
            )
        raise ProtocolError("unknown_type", f"unknown message type {kind[:64]!r}")

    async def answer(self, session: Session, msg: dict) -> dict:
        sdp = msg.get("sdp")
        if not isinstance(sdp, str) or msg.get("sdpType", "offer") != "offer":
            raise ProtocolError("bad_sdp", "offer needs 'sdp' (a string) and sdpType 'offer'")
        if "m=video" not in sdp:
            raise ProtocolError("bad_sdp", "the offer has no video")
        if self.config.ice_loopback:
            sdp = loopback_candidates_only(sdp)
        if session.pc is not None:  # a new offer replaces the call (reconnects)
            old, session.pc = session.pc, None
            await old.close()
        servers = [RTCIceServer(urls=u) for u in self.config.ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        session.pc = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                pc.addTrack(RetargetTrack(track, session))

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
        return {"type": "answer", "sdp": pc.localDescription.sdp, "sdpType": "answer"}

    async def send_stats(self, session: Session) -> None:
        interval = self.config.stats_interval_s
        last = time.perf_counter()
        while True:
            await asyncio.sleep(interval)
            now = time.perf_counter()
            if session.pc is not None:
                with contextlib.suppress(ConnectionClosed):
                    await send(session.ws, session.stats(now - last))
            last = now

    async def close_all(self) -> None:
        for session in list(self.sessions.values()):
            await session.ws.close(1001, "server shutting down")
        if self.builder is not None:  # its MediaPipe graph lives on the builder thread
            builder, self.builder = self.builder, None
            await asyncio.get_running_loop().run_in_executor(self.build_executor, builder.close)
        self.build_executor.shutdown(wait=False)
        if self.encoder_batcher is not None:
            self.encoder_batcher.close()


STAMP_BITS, STAMP_BLOCK = 20, 8  # 2 rows of 10 blocks of 8x8 px, bottom-left corner


def frame_index(frame: av.VideoFrame) -> int:
    """The source frame's index at 25 fps from its timestamp (benchmark stamps)."""
    t = float(frame.time) if frame.time is not None else 0.0
    return round(t * 25) if np.isfinite(t) else 0


def write_stamp(image: np.ndarray, value: int) -> None:
    """Write ``value`` as black/white blocks that survive video compression."""
    h = image.shape[0]
    for bit in range(STAMP_BITS):
        row, col = divmod(bit, STAMP_BITS // 2)
        y, x = h - (2 - row) * STAMP_BLOCK, col * STAMP_BLOCK
        image[y : y + STAMP_BLOCK, x : x + STAMP_BLOCK] = 255 if value >> bit & 1 else 0


def read_stamp(image: np.ndarray) -> int:
    """Inverse of :func:`write_stamp` on a decoded frame."""
    h, value = image.shape[0], 0
    for bit in range(STAMP_BITS):
        row, col = divmod(bit, STAMP_BITS // 2)
        y, x = h - (2 - row) * STAMP_BLOCK, col * STAMP_BLOCK
        block = image[y + 2 : y + STAMP_BLOCK - 2, x + 2 : x + STAMP_BLOCK - 2]
        value |= int(block.mean() > 127) << bit
    return value


def parse(raw: str | bytes) -> dict:
    if isinstance(raw, bytes):
        raise ProtocolError("bad_message", "messages must be JSON text, not binary")
    try:
        msg = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}"[:200]) from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("bad_message", "a message is a JSON object with a string 'type'")
    return msg


def slider_values(values: object) -> np.ndarray:
    if not isinstance(values, dict) or set(values) - set(EMOTIONS):
        raise ProtocolError("bad_message", f"values must map {', '.join(EMOTIONS)} to 0..1")
    out = np.zeros(6, np.float32)
    for i, name in enumerate(EMOTIONS):
        v = values.get(name, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ProtocolError("bad_message", f"{name} must be a number in [0, 1]")
        out[i] = v
    return out


def error(code: str, message: str) -> dict:
    return {"type": "error", "code": code, "message": message}


async def send(ws: ServerConnection, msg: dict) -> None:
    await ws.send(json.dumps(msg))


def http_response(status: HTTPStatus, body: bytes, mime: str) -> Response:
    headers = Headers(
        [
            ("Content-Type", mime),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def not_found() -> Response:
    return http_response(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")


async def run_server(config: ServerConfig, target: str = "default", ready=None) -> None:
    """Serve until SIGINT/SIGTERM; ``ready(url)`` is called once listening."""
    app = App(config, target)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, app.prepare)
    tls = None
    if config.cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(config.cert, config.key)
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        app.handle,
        config.host,
        config.port,
        process_request=app.process_request,
        max_size=config.max_message_bytes,
        ssl=tls,
    ):
        scheme = "https" if tls else "http"
        if ready is not None:
            ready(f"{scheme}://{config.host}:{config.port}/")
        try:
            await stop
        finally:  # also when the serving task is cancelled
            log.info("shutting down: closing %d sessions", len(app.sessions))
            await app.close_all()
