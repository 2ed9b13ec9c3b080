"""The avatar store: a folder of checked avatars, one sub-folder per entry.

    <root>/<id>/            the avatar's files (avatars/files.py layout)
    <root>/<id>/store.json  owner and visibility (store-side, not part of the avatar)
    <root>/<id>/download.zip  the files as one zip, made on the first download

Ownership and visibility belong to the entry, never to the content. The store's own
avatars (owner None: built or imported on this machine's command line) get the first 16
hex digits of the sha256 of their manifest as id, so the same avatar imported twice is
one entry. Every avatar with an owner (an upload) gets a random id: the same photo
uploaded by two people is two entries, each private to its owner unless made public, and
an id says nothing about the photo. ``store.json`` must be a regular file (never a link);
an entry without a readable one is not listed and not visible to anyone. An id from outside
must match ``[0-9a-f]{16}`` before it is joined to the root, and the resolved folder must
lie inside the root and not be a link: ``../``, absolute paths and symlinks never reach
the file system. Imports are checked completely (manifest, checksums, arrays) before
anything is written; writes go to a temporary folder inside the root and are renamed
into place, so a failed or interrupted import leaves the store as it was.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from avatars.builder import Avatar
from avatars.files import (
    MANIFEST,
    AvatarFileError,
    avatar_files,
    avatar_from_files,
    check_files,
    read_avatar,
    read_files,
    zip_bytes,
)
from engines.face.model import FaceModel
from engines.files.assets import sha256_bytes

ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")
ENV_VAR = "VN3D_AVATARS"
META = "store.json"
DOWNLOAD = "download.zip"  # the entry's zip, made on the first download


class StoreError(ValueError):
    """A store operation was refused (bad id, unknown avatar, ...); says why."""


def default_root() -> Path:
    """``$VN3D_AVATARS``, else ``~/.local/share/vn3d/avatars``."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path.home() / ".local" / "share" / "vn3d" / "avatars"


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    hairstyle: str | None
    owner: str | None  # None: the store's own (CLI-built) avatars
    public: bool
    model: str = "ict"  # the face model the avatar is for (its manifest's)

    def visible_to(self, user: str | None) -> bool:
        return self.public or self.owner is None or (user is not None and self.owner == user)


class AvatarStore:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self._real_root = self.root.resolve()

    # -- paths ---------------------------------------------------------------------------
    def folder(self, avatar_id: str) -> Path:
        """The folder of an existing avatar; StoreError for a bad or unknown id."""
        if not isinstance(avatar_id, str) or not ID_PATTERN.match(avatar_id):
            raise StoreError(f"not an avatar id: {avatar_id!r} (16 hex digits)")
        path = self.root / avatar_id
        if path.is_symlink() or not path.is_dir():
            raise StoreError(f"no avatar {avatar_id} in the store")
        if path.resolve().parent != self._real_root:
            raise StoreError(f"avatar {avatar_id} lies outside the store")
        return path

    # -- reading -------------------------------------------------------------------------
    def entries(self, user: str | None = None, everyone: bool = False) -> list[Entry]:
        """Avatars ``user`` may see (all of them with ``everyone``), newest first."""
        out = []
        folders = sorted(self.root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in folders:
            if not ID_PATTERN.match(path.name) or path.is_symlink() or not path.is_dir():
                continue
            try:
                entry = self.entry(path.name)
            except (StoreError, OSError, ValueError):
                continue
            if everyone or entry.visible_to(user):
                out.append(entry)
        return out

    def entry(self, avatar_id: str) -> Entry:
        folder = self.folder(avatar_id)
        manifest = json.loads((folder / MANIFEST).read_text())
        meta = self._meta(folder)
        return Entry(
            avatar_id, str(manifest.get("name", "avatar")), manifest.get("hairstyle"),
            meta.get("owner"), bool(meta.get("public", False)), str(manifest.get("model", "ict")),
        )

    def _meta(self, folder: Path) -> dict:
        """An entry's store.json: a regular file holding an object, or StoreError."""
        path = folder / META
        if path.is_symlink() or not path.is_file():
            raise StoreError(f"{folder.name} has no store record")
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise StoreError(f"{folder.name} has a damaged store record")
        return meta

    def usage(self, owner: str | None) -> tuple[int, int, int]:
        """(avatars, bytes) held by ``owner``, and the bytes of the whole store: one walk."""
        count = owned = total = 0
        for path in self.root.iterdir():
            if not ID_PATTERN.match(path.name) or path.is_symlink() or not path.is_dir():
                continue
            size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
            total += size
            try:
                mine = self._meta(path).get("owner") == owner
            except (StoreError, OSError, ValueError):
                mine = False
            if mine:
                count, owned = count + 1, owned + size
        return count, owned, total

    def load(self, avatar_id: str, model: FaceModel) -> Avatar:
        return read_avatar(self.folder(avatar_id), model)

    def zip(self, avatar_id: str) -> bytes:
        """The avatar's files as a zip: made (and checked) once, then read from disk."""
        folder = self.folder(avatar_id)
        cached = folder / DOWNLOAD
        if cached.is_file() and not cached.is_symlink():
            return cached.read_bytes()
        files = read_files(folder)
        check_files(files)
        data = zip_bytes(files)
        tmp = folder / f".{DOWNLOAD}.{secrets.token_hex(4)}"
        tmp.write_bytes(data)
        os.replace(tmp, cached)  # atomic: a reader sees the old state or the whole zip
        return data

    def glb(self, avatar_id: str) -> bytes:
        path = self.folder(avatar_id) / "avatar.glb"
        if not path.is_file() or path.is_symlink():
            raise StoreError(f"avatar {avatar_id} has no GLB")
        return path.read_bytes()

    # -- writing -------------------------------------------------------------------------
    def add(
        self, avatar: Avatar, model: FaceModel, owner: str | None = None, public: bool = False
    ) -> str:
        """Store a built avatar; returns its id."""
        return self._put(avatar_files(avatar, model), owner, public)

    def import_avatar(
        self, source: Path | bytes, model: FaceModel, owner: str | None = None,
        public: bool = False,
    ) -> str:
        """Import a folder, a zip path or zip bytes after checking all of it."""
        files = read_files(source)
        avatar_from_files(files, model)  # every check before anything is written
        return self._put(files, owner, public)

    def _put(self, files: dict[str, bytes], owner: str | None, public: bool) -> str:
        check_files(files)
        # the store's own: one entry per content; an upload: its own entry, with an id that
        # says nothing about the photo
        avatar_id = sha256_bytes(files[MANIFEST])[:16] if owner is None else secrets.token_hex(8)
        final = self.root / avatar_id
        if final.exists():
            return avatar_id
        tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=self.root))
        try:
            for name, data in files.items():
                (tmp / name).write_bytes(data)
            (tmp / META).write_text(json.dumps({"owner": owner, "public": public}))
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.is_dir():  # another import of the same avatar won the race
                return avatar_id
            raise
        return avatar_id

    def set_public(self, avatar_id: str, public: bool) -> None:
        folder = self.folder(avatar_id)
        meta = self._meta(folder)
        meta["public"] = public
        tmp = folder / f".{META}.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, folder / META)

    def delete(self, avatar_id: str) -> None:
        folder = self.folder(avatar_id)
        trash = self.root / f".delete-{avatar_id}"
        os.rename(folder, trash)  # atomic: the id is gone at once
        shutil.rmtree(trash, ignore_errors=True)


__all__ = [
    "AvatarFileError", "AvatarStore", "Entry", "StoreError", "default_root"
]
