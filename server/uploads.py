"""Avatars from portraits sent over the signalling socket (the websockets HTTP hook serves
GET only): ``avatar_begin`` {name, bytes, public}, then ``avatar_chunk`` {seq, data:
base64} pieces in order (each under the message limit), then ``avatar_end`` {sha256}; the
build runs on one builder thread for the whole server and the avatar goes into the store,
owned by its uploader. Quotas per user (avatars, bytes, builds per hour) and for the whole
store are checked before an upload starts and again before its build."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from avatars.builder import AvatarBuilder, AvatarError, PhotoLimits, decode_photo
from avatars.flame_avatar import FlameAvatarBuilder
from avatars.store import AvatarStore
from engines.face.model import FaceModel
from engines.files.assets import AssetMissingError, sha256_bytes
from engines.files.registered import DECA_MODEL, FLAME_UVS
from engines.flame_encoders.photo_to_flame import load_photo_to_flame
from server.protocol import ProtocolError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
MB = 1024 * 1024


@dataclass
class Upload:
    """One session's portrait on its way in."""

    size: int  # bytes announced by avatar_begin
    name: str
    public: bool
    data: bytearray = field(default_factory=bytearray)
    pieces: int = 0  # pieces received; the next must carry this seq


@dataclass(frozen=True)
class Quotas:
    avatars_per_user: int = 20
    bytes_per_user: int = 200 * MB
    builds_per_hour: int = 12
    store_bytes: int = 2048 * MB


def begin_upload(msg: dict, max_bytes: int) -> Upload:
    """Check an ``avatar_begin`` message; the upload it starts."""
    size = msg.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ProtocolError("bad_message", "avatar_begin needs 'bytes' (an integer)")
    if size > max_bytes:
        raise ProtocolError("too_large", f"the photo is larger than {max_bytes // MB} MB")
    name = msg.get("name")
    name = name.strip()[:48] if isinstance(name, str) and name.strip() else "my avatar"
    return Upload(size, name, msg.get("public") is True)


def add_chunk(upload: Upload, msg: dict) -> int:
    """Append an ``avatar_chunk``'s piece (in order); the bytes received so far."""
    seq = msg.get("seq")
    if seq != upload.pieces or isinstance(seq, bool):
        raise ProtocolError("bad_message", f"piece {str(seq)[:16]} out of order: "
                            f"expected seq {upload.pieces}")
    try:
        piece = base64.b64decode(msg.get("data", ""), validate=True)
    except (ValueError, TypeError) as exc:
        raise ProtocolError("bad_message", "avatar_chunk data must be base64") from exc
    upload.data += piece
    upload.pieces += 1
    if len(upload.data) > upload.size:
        raise ProtocolError("too_large", "more bytes than avatar_begin announced")
    return len(upload.data)


def finished_photo(upload: Upload, msg: dict) -> bytes:
    """The photo an ``avatar_end`` closes: every byte announced, matching its sha256."""
    if len(upload.data) != upload.size:
        raise ProtocolError("bad_message", f"got {len(upload.data)} of {upload.size} bytes")
    digest = msg.get("sha256")
    if not (isinstance(digest, str) and SHA256.match(digest)):
        raise ProtocolError("bad_message", "avatar_end needs the photo's sha256 (hex)")
    data = bytes(upload.data)
    if sha256_bytes(data) != digest:
        raise ProtocolError("bad_message", "the photo that arrived does not match its sha256")
    return data


def builds_unavailable(model: FaceModel) -> str | None:
    """Why a server on ``model`` cannot build avatars from portraits, or None when it can
    (ICT always; FLAME with DECA's checkpoint and UV template, looked for, not loaded)."""
    if model.name == "ict":
        return None
    missing = []
    for file in (DECA_MODEL, FLAME_UVS):
        try:
            file.find()
        except AssetMissingError:
            missing.append(f"{file.what} ({file.candidate()[0]})")
    return f"{model.name} avatars need {' and '.join(missing)}" if missing else None


def make_builder(model: FaceModel) -> AvatarBuilder | FlameAvatarBuilder:
    """The portrait -> avatar builder for ``model`` (on the builder thread)."""
    if model.name == "ict":
        return AvatarBuilder(model)
    reader, _ = load_photo_to_flame()  # MICA when found, else DECA's shape
    return FlameAvatarBuilder(model, reader)


class AvatarBuilds:
    """Builds avatars one at a time on its own thread (the builder's MediaPipe graph lives
    there), within the quotas, and adds them to the store."""

    def __init__(self, model: FaceModel, store: AvatarStore, max_bytes: int,
                 quotas: Quotas | None = None) -> None:
        self.model, self.store, self.max_bytes = model, store, max_bytes
        self.quotas = quotas or Quotas()
        self.unavailable = builds_unavailable(model)  # why uploads are refused, or None
        self.builder: AvatarBuilder | FlameAvatarBuilder | None = None  # on the builder thread
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar")
        self._started: dict[str, deque[float]] = defaultdict(deque)  # build times per user

    @property
    def available(self) -> bool:
        """Whether portraits can be made into avatars here."""
        return self.unavailable is None

    def check_quota(self, user: str, incoming: int = 0) -> None:
        """``quota`` when ``user`` may not store another avatar of about ``incoming`` bytes."""
        q = self.quotas
        recent = self._started[user]
        while recent and recent[0] < time.monotonic() - 3600:
            recent.popleft()
        if len(recent) >= q.builds_per_hour:
            raise ProtocolError("quota", f"at most {q.builds_per_hour} avatar builds an hour")
        count, size, store_size = self.store.usage(user)
        if count >= q.avatars_per_user:
            raise ProtocolError("quota", f"at most {q.avatars_per_user} avatars per user: "
                                "delete one first")
        if size + incoming > q.bytes_per_user:
            raise ProtocolError("quota", f"at most {q.bytes_per_user // MB} MB of avatars "
                                "per user")
        if store_size + incoming > q.store_bytes:
            raise ProtocolError("quota", "the avatar store is full")

    async def build(self, upload: Upload, photo: bytes, user: str) -> str:
        """The photo as an avatar in the store; its id. ``bad_photo`` when the portrait
        cannot be used, ``quota`` when the user or the store is at a limit."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.check_quota, user, upload.size)
        self._started[user].append(time.monotonic())
        try:
            return await loop.run_in_executor(
                self.executor, self._build, photo, upload.name, user, upload.public
            )
        except AvatarError as exc:
            raise ProtocolError("bad_photo", str(exc)) from exc

    def _build(self, data: bytes, name: str, user: str, public: bool) -> str:
        image = decode_photo(data, PhotoLimits(max_bytes=self.max_bytes))
        if self.builder is None:
            self.builder = make_builder(self.model)
        avatar = self.builder.build(image, name, sha256_bytes(data))
        return self.store.add(avatar, self.model, owner=user, public=public)

    async def close(self) -> None:
        if self.builder is not None:  # its MediaPipe graph lives on the builder thread
            builder, self.builder = self.builder, None
            await asyncio.get_running_loop().run_in_executor(self.executor, builder.close)
        self.executor.shutdown(wait=False)


class Uploads:
    """Each session's upload on its way in, by session id, and the builds they become."""

    def __init__(self, builds: AvatarBuilds, max_bytes: int) -> None:
        self.builds, self.max_bytes = builds, max_bytes
        self.pending: dict[str, Upload] = {}

    async def begin(self, session_id: str, user: str, msg: dict) -> None:
        if self.builds.unavailable:
            raise ProtocolError("no_avatar_builds", self.builds.unavailable)
        upload = begin_upload(msg, self.max_bytes)
        loop = asyncio.get_running_loop()  # refused before any byte is sent when at a quota
        await loop.run_in_executor(None, self.builds.check_quota, user, upload.size)
        self.pending[session_id] = upload

    def chunk(self, session_id: str, msg: dict) -> int:
        upload = self.pending.get(session_id)
        if upload is None:
            raise ProtocolError("bad_message", "send avatar_begin first")
        try:
            return add_chunk(upload, msg)
        except ProtocolError:  # a bad piece ends the upload
            del self.pending[session_id]
            raise

    async def end(self, session_id: str, user: str, msg: dict) -> tuple[str, str]:
        """(the new avatar's id, its name)."""
        upload = self.pending.pop(session_id, None)
        if upload is None:
            raise ProtocolError("bad_message", "send avatar_begin first")
        avatar_id = await self.builds.build(upload, finished_photo(upload, msg), user)
        return avatar_id, upload.name

    def drop(self, session_id: str) -> None:
        self.pending.pop(session_id, None)
