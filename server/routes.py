"""HTTP on the service's one port: a route table, as aiortc's example server has.

    GET /ws                              the signalling WebSocket (handshake goes on)
    GET /targets/<id>.png                a shared target's thumbnail
    GET /avatars/<id>.png|zip|glb?user=  an avatar's thumbnail or files: its owner's, or
                                         anyone's when public (and ?token= when set); zip
                                         and GLB downloads are rate-limited per user (429)
    GET /<file>                          the page: files under client_web/ only

Anything else, or a file outside the page's folder, is 404; a path with a NUL byte or
longer than ``MAX_PATH`` is 400. Nothing else is exposed.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from avatars.hair.thumbnails import StyleThumbnails
from avatars.store import AvatarStore, StoreError
from server.access import token_ok, valid_user
from server.targets import TargetPicker

Query = dict[str, list[str]]
MAX_PATH = 2048  # longer request paths are refused (400)
HTTP_THREADS = 2
Handler = Callable[[re.Match, Query], Response]


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


ANONYMOUS = ""  # downloads without a user key (public avatars) share one allowance


# folders of client_web/ that are not the page: the stand-alone GLB viewer (an example
# for users, and the tests' three.js harness) with its npm packages
NOT_SERVED = {"viewer"}


class RateLimit:
    """At most ``count`` events per ``window_s`` seconds per key (a sliding window)."""

    def __init__(self, count: int, window_s: float) -> None:
        self.count, self.window_s = count, window_s
        self._times: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()  # handlers run on several threads

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            times = self._times[key]
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.count:
                return False
            times.append(now)
            return True


def first(query: Query, key: str) -> str:
    return query.get(key, [""])[0]


class HttpRoutes:
    """``process_request`` for websockets' server: a response, or None for the socket.
    Every handler runs on a small thread pool, never on the event loop: zips, thumbnails
    and file reads take milliseconds to seconds, and the loop carries every live call."""

    def __init__(self, web_root: Path, picker: TargetPicker, store: AvatarStore,
                 token: str | None = None, downloads_per_minute: int = 30,
                 styles: StyleThumbnails | None = None) -> None:
        self.web_root = web_root.resolve()
        self.styles = styles  # None: no hair on this server's head
        self.downloads = RateLimit(downloads_per_minute, 60.0)
        self.picker, self.store, self.token = picker, store, token
        self.pool = ThreadPoolExecutor(max_workers=HTTP_THREADS, thread_name_prefix="http")
        self.routes: list[tuple[re.Pattern, Handler]] = [
            (re.compile(r"/targets/(?P<id>[^/]+)\.png"), self.target_thumbnail),
            (re.compile(r"/hairstyles/(?P<name>[a-z0-9_]+)\.png"), self.style_thumbnail),
            (re.compile(r"/avatars/(?P<id>[0-9a-f]{16})\.(?P<ext>png|zip|glb)"), self.avatar_file),
            (re.compile(r"/(?P<file>.*)"), self.page_file),
        ]

    async def __call__(self, connection: ServerConnection, request: Request
                       ) -> Response | None:
        if urlsplit(request.path).path == "/ws":
            return None  # the WebSocket handshake goes on
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.respond, request.path)

    def respond(self, path: str) -> Response:
        """The response to ``GET path`` (on the HTTP pool)."""
        if "\x00" in path or len(path) > MAX_PATH:
            return http_response(HTTPStatus.BAD_REQUEST, b"bad request\n", "text/plain")
        url = urlsplit(path)
        query = parse_qs(url.query)
        for pattern, handler in self.routes:
            if match := pattern.fullmatch(url.path):
                return handler(match, query)
        return not_found()

    def target_thumbnail(self, match: re.Match, query: Query) -> Response:
        png = self.picker.thumbnail(unquote(match["id"]), None)
        if png is None or not png:
            return not_found()
        return http_response(HTTPStatus.OK, png, "image/png")

    def style_thumbnail(self, match: re.Match, query: Query) -> Response:
        png = self.styles.png(match["name"]) if self.styles is not None else None
        if png is None:
            return not_found()
        if not png:  # queued: the page asks again (Retry-After), no thread waits for it
            response = http_response(HTTPStatus.SERVICE_UNAVAILABLE, b"being made\n",
                                     "text/plain")
            response.headers["Retry-After"] = "2"
            return response
        return http_response(HTTPStatus.OK, png, "image/png")

    def avatar_file(self, match: re.Match, query: Query) -> Response:
        if not token_ok(self.token, first(query, "token")):
            return http_response(HTTPStatus.UNAUTHORIZED, b"a valid token is required\n",
                                 "text/plain")
        avatar_id, ext = match["id"], match["ext"]
        user = valid_user(first(query, "user"))
        if not self.picker.catalogue.visible_avatar(avatar_id, user):
            return not_found()
        try:
            if ext == "png":
                png = self.picker.thumbnail(avatar_id, user)
                return http_response(HTTPStatus.OK, png, "image/png") if png else not_found()
            if not self.downloads.allow(user or ANONYMOUS):
                return http_response(HTTPStatus.TOO_MANY_REQUESTS,
                                     b"too many downloads: try again in a minute\n", "text/plain")
            if ext == "zip":
                return http_response(HTTPStatus.OK, self.store.zip(avatar_id), "application/zip")
            return http_response(HTTPStatus.OK, self.store.glb(avatar_id), "model/gltf-binary")
        except (StoreError, ValueError):
            return not_found()

    def page_file(self, match: re.Match, query: Query) -> Response:
        try:
            file = (self.web_root / (match["file"] or "index.html")).resolve()
            if not file.is_relative_to(self.web_root) or not file.is_file():
                return not_found()
            if file.relative_to(self.web_root).parts[0] in NOT_SERVED:  # however spelt
                return not_found()
        except (OSError, ValueError):  # a name too long for the file system, and the like
            return not_found()
        mime = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return http_response(HTTPStatus.OK, file.read_bytes(), mime)
