"""The server's settings: one dataclass, from which the ``vn3d serve`` flags are made.

Each field that a user sets from the command line carries its flag's help (and any other
argparse settings) in its metadata; :func:`add_arguments` turns those into flags and
:func:`config_from_args` reads them back, so the two never drift apart.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from engines.face.by_name import FACE_MODEL_HELP, FACE_MODELS
from engines.inference.backend import BACKENDS
from engines.tracking.landmarkers import DEFAULT_LANDMARKER, LANDMARKER_HELP, LANDMARKERS
from engines.tracking.tracker import DEFAULT_READER, READERS

WEB_ROOT = Path(__file__).resolve().parent.parent / "client_web"
READER_HELP = ("how ψ and the head pose are read from the landmarks: mediapipe (its "
               "blendshapes by name), inverse (its blendshapes with the head's response "
               "curves undone), openings (inverse, with the jaw set so the avatar's "
               "mouth opens as far as yours), encoder (the project's "
               "landmark encoder), fit "
               "(experimental: the face model fitted to the landmarks per frame) or deca "
               "(DECA on the frame's face, through the ARKit map: the registered FLAME and "
               "DECA files, ~0.1 s a frame on a CPU); see docs/PERFORMANCE.md")
HAIR_REUSE_HELP = ("with --hair-strands: an avatar's hair is drawn again only when the "
                   "head has turned more than this many degrees since it last was (0: every "
                   "frame; docs/PERFORMANCE.md)")
HAIR_STRANDS_HELP = ("draw an avatar's hair as its strands (exact; ~19 ms a 512² frame on "
                     "Mesa's CPU renderer) instead of one textured shell baked from them "
                     "(the default: ~3 ms; docs/PERFORMANCE.md)")
PIXEL_LIGHTING_HELP = ("light the skin per pixel (exact) instead of per vertex (the "
                       "default: the same look on the ICT head for ~10 %% less CPU a frame "
                       "on Mesa's CPU renderer; docs/PERFORMANCE.md)")
STORE_HELP = "the avatar store folder (default: $VN3D_AVATARS or ~/.local/share/vn3d/avatars)"


def flag(default: Any = MISSING, *, help: str, factory: Any = MISSING, **argparse_kw: Any
         ) -> Any:
    """A field that ``vn3d serve`` exposes as ``--field-name`` (or ``argparse_kw['flag']``)."""
    meta = {"help": help, **argparse_kw}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ServerConfig:
    host: str = flag("127.0.0.1", help="bind address (default: this machine only)")
    port: int = flag(8080, help="the port for the page and signalling")
    max_sessions: int = flag(4, help="calls (live avatars) at once; the next offer is told "
                             "'busy' and may try again later")
    max_sockets: int = flag(64, help="signalling sockets open at once, pages without a call "
                            "included; the next one is refused (too_many_connections)")
    max_sockets_per_ip: int = flag(16, help="sockets one address may hold open at once")
    room_size: int = flag(6, help="people one room (a call of avatars) may hold")
    default_target: str = flag("default", flag="--target", metavar="TARGET",
                               help="the target new sessions start with (a target id)")
    size: int = flag(512, help="rendered video size (square)")
    token: str | None = flag(None, help="require ?token=... for the page's signalling")
    cert: str | None = flag(None, help="TLS certificate (PEM) for https/wss")
    key: str | None = flag(None, help="TLS private key (PEM)")
    ice_servers: list[str] = flag(factory=list, flag="--ice-server", action="append",
                                  metavar="URL",
                                  help="a STUN/TURN server URL, e.g. stun:HOST:3478 or "
                                  "turn:HOST:3478 (repeatable); none by default")
    ice_username: str | None = flag(None, help="the TURN user for the --ice-server turn: URLs")
    ice_credential: str | None = flag(None, help="the TURN password for the turn: URLs")
    ice_loopback: bool = flag(False, action="store_true",
                              help="ICE on 127.0.0.1 only (tests and single-machine use)")
    datasets: list[str] = flag(factory=list, flag="--dataset", action="append", metavar="DIR",
                               help="a built dataset whose subjects join the target picker "
                               "as NAME:SUBJECT (repeatable)")
    sample_gallery: bool = flag(True, flag="--no-sample-gallery", action="store_false",
                                help="leave out the sample gallery (built by "
                                "`vn3d dataset sample`)")
    model: str = flag("ict", choices=FACE_MODELS, help=FACE_MODEL_HELP)
    target_files: list[str] = flag(factory=list, flag="--target-file", action="append",
                                   metavar="NPZ", help="a target .npz (e.g. from `vn3d flame "
                                   "reconstruct --target`) for the picker as file:NAME "
                                   "(repeatable)")
    reader: str = flag(DEFAULT_READER, choices=READERS, help=READER_HELP)
    landmarker: str = flag(DEFAULT_LANDMARKER, choices=LANDMARKERS, help=LANDMARKER_HELP)
    backend: str = flag("auto", choices=["auto", *BACKENDS],
                        help="the runtime of the encoder and of the onnx landmarker (auto: "
                        "TensorRT on a GPU, else ONNX Runtime)")
    hair_strands: bool = flag(False, action="store_true", help=HAIR_STRANDS_HELP)
    hair_reuse_deg: float = flag(0.3, help=HAIR_REUSE_HELP)
    pixel_lighting: bool = flag(False, action="store_true", help=PIXEL_LIGHTING_HELP)
    # sessions that track+render at the same time (see server/retarget_track.py); on a
    # 2-core CPU a second slot gives ~9 % more frames for ~60 % more latency: Mesa's
    # llvmpipe already rasterises on every core
    render_slots: int = flag(1, help="sessions that track and render at the same time "
                             "(1 keeps latency low on CPU renderers)")
    idle_timeout_s: float = flag(60.0, help="a socket without a call that sends nothing this "
                                 "long is closed, freeing its session (the page pings every 10 s)")
    call_timeout_s: float = flag(20.0, help="a call not connected this long after its offer, "
                                 "or whose camera sends nothing this long, is ended")
    avatar_store: str | None = flag(None, help=STORE_HELP)
    max_avatars_per_user: int = flag(20, help="avatars one page (user key) may keep in the "
                                     "store; more are refused with 'quota'")
    max_user_store_mb: int = flag(200, help="megabytes of avatars one user may keep")
    builds_per_hour: int = flag(12, help="avatar builds one user may start per hour")
    max_store_mb: int = flag(2048, help="megabytes the whole avatar store may hold before "
                             "uploads are refused")
    downloads_per_minute: int = flag(30, help="avatar zip/GLB downloads one user key may make "
                                     "a minute (those without a key share one allowance)")
    cluster: str | None = flag(None, metavar="ADDRESS",
                               help="cluster mode: this server is a gateway, and each call runs "
                               "on a session host of the Ray cluster at ADDRESS (host:port of "
                               "its head; `vn3d worker` adds nodes; docs/DEPLOYMENT.md)")
    janus: list[str] = flag(factory=list, action="append", metavar="URL",
                            help="cluster mode: a Janus WebSocket API URL (ws://HOST:8188) for "
                            "rooms; the hosts and the pages connect to it too (repeatable: "
                            "each room goes to the instance with the fewest)")
    janus_admin_key: str | None = flag(None, help="cluster mode: the VideoRoom plugin's "
                                       "admin_key, when Janus requires one to create rooms")
    cluster_wait_s: float = flag(5.0, help="cluster mode: how long an offer waits for a free "
                                 "session host before it is told 'busy'")
    stamp_frames: bool = flag(False, action="store_true",
                              help="benchmarks: stamp each source frame's index into the video")
    # not on the command line
    max_message_bytes: int = 64 * 1024  # larger signalling messages close the socket (1009)
    max_upload_bytes: int = 8 * 1024 * 1024  # a portrait sent over the socket for an avatar
    web_root: Path = WEB_ROOT
    stats_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("--cert and --key go together")
        if self.max_sessions < 1 or self.render_slots < 1 or self.size < 16 or self.size % 2:
            raise ValueError("max sessions and render slots must be >= 1, the size even "
                             "(the video's colour is sampled in 2x2 blocks) and >= 16")
        if not 0.0 <= self.hair_reuse_deg <= 5.0:
            raise ValueError("--hair-reuse-deg must be within 0-5 degrees")
        if self.max_sockets < 1 or self.max_sockets_per_ip < 1:
            raise ValueError("the socket limits must be >= 1")
        if self.cluster_wait_s < 0:
            raise ValueError("--cluster-wait-s must be >= 0")
        if self.idle_timeout_s <= 0 or self.call_timeout_s <= 0:
            raise ValueError("the idle and call timeouts must be > 0 seconds")


def command_line_fields() -> list[Field]:
    return [f for f in fields(ServerConfig) if "help" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per command-line field of :class:`ServerConfig`, with its default."""
    for f in command_line_fields():
        kw = {k: v for k, v in f.metadata.items() if k != "flag"}
        name = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if kw.get("action") not in ("store_true", "store_false"):
            kw.setdefault("type", {"int": int, "float": float}.get(str(f.type)))
            kw = {k: v for k, v in kw.items() if v is not None}
        default = [] if f.default_factory is not MISSING else f.default
        parser.add_argument(name, dest=f.name, default=default, **kw)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The :class:`ServerConfig` that the parsed ``vn3d serve`` flags describe."""
    return ServerConfig(**{f.name: getattr(args, f.name) for f in command_line_fields()})
