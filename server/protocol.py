"""The signalling protocol on ``/ws``: JSON text messages, each an object with a ``type``.

The client sends the types in :data:`CLIENT_MESSAGES`; the server answers every one with
exactly one message (its reply type, or ``error``), sends ``welcome`` first and ``stats``
about once a second during a call. An ``error`` carries one of the codes in :data:`ERRORS`.
"""

from __future__ import annotations

import json

import numpy as np
from websockets.asyncio.server import ServerConnection

from engines.emotion.facs import EMOTIONS

# client message -> what it carries -> the server's reply type
CLIENT_MESSAGES = {
    "offer": ("sdp (full SDP after ICE gathering, no trickle), sdpType 'offer'", "answer"),
    "target": ("id: a target id from the welcome's list", "target"),
    "mode": ("mode: track, emotion or sliders", "mode"),
    "sliders": ("values: {emotion: 0..1} for the six emotions", "sliders"),
    "calibrate": ("kind: neutral (default; the resting face) or range (the user's biggest "
                  "expressions), frames: 1..300 (default 15 neutral, 60 range)", "calibrate"),
    "hangup": ("(ends the call and frees its slot; the socket stays)", "hangup"),
    "hair": ("style (a name from welcome's hairstyles, or none) and/or colour (#RRGGBB): "
             "tried on the current target live", "hair"),
    "hair_save": ("(the tried-on hair saved as a new avatar of the user; avatars only)",
                  "avatar"),
    "ping": ("", "pong"),
    "avatar_begin": ("name, bytes (the photo's size), public", "avatar_begin"),
    "avatar_chunk": ("seq (0, 1, 2, ...), data: a base64 piece (32 KB) of the photo",
                     "avatar_chunk"),
    "avatar_end": ("sha256: the whole photo's, hex", "avatar"),
    "create_room": ("(during a call: a new room with this participant in it)", "room"),
    "join_room": ("room: the room's id (from the invite link); without a call, to watch",
                  "room"),
    "leave_room": ("(out of the room; the call goes on)", "room"),
    "background": ("colour (#RRGGBB): the solid colour the avatar is rendered on, for the "
                   "preview and the room (#00ff00 to key it out in OBS)", "background"),
    "subscribe": ("participant: another member's id, sdp: a receive-only offer (video, "
                  "audio) for that member's avatar and microphone", "subscribed"),
}
# sent by the server unasked: stats (about once a second in a call), room (to every member
# whenever a room's members change: room, you, size, participants [{id, target, video,
# call, handle, background}]), reoffer (cluster mode: the host of the call stopped; the
# page offers again, keeping its choices, and lands on a healthy host: reason)

# error code -> when it is sent
ERRORS = {
    "busy": "all call slots are in use (in cluster mode: no session host came free within "
            "--cluster-wait-s): the offer is refused, the socket stays (offer later)",
    "too_many_connections": "the server, or this address, has too many sockets open "
                            "(closes, 1013)",
    "unauthorized": "the server has a token and the request lacks it (closes, 1008)",
    "bad_json": "the message is not valid JSON",
    "bad_message": "a field is missing, of the wrong type or out of range",
    "bad_sdp": "the offer cannot be used (no video, unparsable SDP)",
    "unknown_type": "a message type the server does not know",
    "unknown_target": "no such target, or not one this user may see",
    "unavailable": "the mode needs the emotion models, which could not be loaded",
    "too_large": "an upload is larger than announced or than the server's limit",
    "bad_photo": "the uploaded portrait cannot be made into an avatar (no face, ...)",
    "ict_only": "strand hair is on ICT heads only: a server running another face model "
                "(--model flame) offers none",
    "no_avatar_builds": "this server cannot make avatars from portraits (a FLAME server "
                        "without DECA's files: the message says which)",
    "quota": "this user's avatars, builds per hour, or the whole store are at their limit",
    "internal": "a bug on the server; the session goes on",
    "not_in_cluster": "rooms in cluster mode need Janus, and this gateway has none (--janus)",
    "room_server": "cluster mode: the rooms' media server (Janus) failed or cannot be reached",
    "no_call": "a room needs the camera call first (its avatar is what the room sees)",
    "unknown_room": "no such room: it ended, or the link is wrong",
    "room_full": "the room has --room-size members already",
    "not_in_room": "subscribe before joining or creating a room",
    "unknown_participant": "no such other member in the room, or it has no video yet",
}


class ProtocolError(Exception):
    """A client message the server refuses; becomes an ``error`` reply."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERRORS, code
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple:  # pickled whole (a cluster's host raises it, Ray carries it)
        return ProtocolError, (self.code, str(self))


def parse(raw: str | bytes) -> dict:
    """One message from the socket, checked to be a JSON object with a string ``type``."""
    if isinstance(raw, bytes):
        raise ProtocolError("bad_message", "messages must be JSON text, not binary")
    try:
        msg = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError("bad_json", f"not valid JSON: {exc}"[:200]) from None
    except RecursionError:
        raise ProtocolError("bad_json", "JSON nested too deeply") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("bad_message", "a message is a JSON object with a string 'type'")
    return msg


def ict_only_message(model_name: str) -> str:
    return (f"this server runs the {model_name} head (--model {model_name}): strand hair is "
            "on ICT heads only")


def slider_values(values: object) -> np.ndarray:
    """A ``sliders`` message's values as six intensities (6,) in ``EMOTIONS`` order."""
    if not isinstance(values, dict) or set(values) - set(EMOTIONS):
        raise ProtocolError("bad_message", f"values must map {', '.join(EMOTIONS)} to 0..1")
    out = np.zeros(6, np.float32)
    for i, name in enumerate(EMOTIONS):
        v = values.get(name, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ProtocolError("bad_message", f"{name} must be a number in [0, 1]")
        out[i] = v
    return out


CALIBRATIONS = {"neutral": 15, "range": 60}  # kind -> default frames


def calibration(msg: dict) -> tuple[str, int]:
    """(kind, frames) of a calibrate message."""
    kind = msg.get("kind", "neutral")
    if kind not in CALIBRATIONS:
        raise ProtocolError("bad_message", "kind must be neutral or range")
    frames = msg.get("frames", CALIBRATIONS[kind])
    if not isinstance(frames, int) or isinstance(frames, bool) or not 1 <= frames <= 300:
        raise ProtocolError("bad_message", "frames must be an integer in 1..300")
    return kind, frames


def error(code: str, message: str) -> dict:
    assert code in ERRORS, code
    return {"type": "error", "code": code, "message": message}


async def send(ws: ServerConnection, msg: dict) -> None:
    await ws.send(json.dumps(msg))
