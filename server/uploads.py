"""Avatars from portraits sent over the signalling socket (the websockets HTTP hook serves
GET only): ``avatar_begin`` {name, bytes, public}, then ``avatar_chunk`` {data: base64}
pieces (each under the message limit), then ``avatar_end``; the build runs on one builder
thread for the whole server and the avatar goes into the store, owned by its uploader."""

from __future__ import annotations

import asyncio
import base64
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from avatars.builder import AvatarBuilder, AvatarError, PhotoLimits, decode_photo
from avatars.store import AvatarStore
from engines.face.model import FaceModel
from engines.files.assets import sha256_bytes
from server.protocol import ProtocolError


@dataclass
class Upload:
    """One session's portrait on its way in."""

    size: int  # bytes announced by avatar_begin
    name: str
    public: bool
    data: bytearray = field(default_factory=bytearray)


def begin_upload(msg: dict, max_bytes: int) -> Upload:
    """Check an ``avatar_begin`` message; the upload it starts."""
    size = msg.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ProtocolError("bad_message", "avatar_begin needs 'bytes' (an integer)")
    if size > max_bytes:
        raise ProtocolError("too_large", f"the photo is larger than {max_bytes // 2**20} MB")
    name = msg.get("name")
    name = name.strip()[:48] if isinstance(name, str) and name.strip() else "my avatar"
    return Upload(size, name, msg.get("public") is True)


def add_chunk(upload: Upload, msg: dict) -> int:
    """Append an ``avatar_chunk``'s piece; the bytes received so far."""
    try:
        piece = base64.b64decode(msg.get("data", ""), validate=True)
    except (ValueError, TypeError) as exc:
        raise ProtocolError("bad_message", "avatar_chunk data must be base64") from exc
    upload.data += piece
    if len(upload.data) > upload.size:
        raise ProtocolError("too_large", "more bytes than avatar_begin announced")
    return len(upload.data)


class AvatarBuilds:
    """Builds avatars one at a time on its own thread (the builder's MediaPipe graph lives
    there) and adds them to the store."""

    def __init__(self, model: FaceModel, store: AvatarStore, max_bytes: int) -> None:
        self.model, self.store, self.max_bytes = model, store, max_bytes
        self.builder: AvatarBuilder | None = None  # made on the builder thread
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar")

    async def build(self, upload: Upload, user: str | None) -> str:
        """The finished upload as an avatar in the store; its id. ``bad_photo`` when the
        portrait cannot be used."""
        if len(upload.data) != upload.size:
            raise ProtocolError("bad_message", f"got {len(upload.data)} of {upload.size} bytes")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self.executor, self._build, bytes(upload.data), upload.name, user, upload.public
            )
        except AvatarError as exc:
            raise ProtocolError("bad_photo", str(exc)) from exc

    def _build(self, data: bytes, name: str, user: str | None, public: bool) -> str:
        image = decode_photo(data, PhotoLimits(max_bytes=self.max_bytes))
        if self.builder is None:
            self.builder = AvatarBuilder(self.model)
        avatar = self.builder.build(image, name, sha256_bytes(data))
        return self.store.add(avatar, self.model, owner=user, public=public)

    async def close(self) -> None:
        if self.builder is not None:  # its MediaPipe graph lives on the builder thread
            builder, self.builder = self.builder, None
            await asyncio.get_running_loop().run_in_executor(self.executor, builder.close)
        self.executor.shutdown(wait=False)
