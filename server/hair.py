"""Hairstyle try-on in a live session: ``hair`` restyles the session's target (another
style aligned to the same head, another colour) without reconnecting; ``hair_save``
stores the restyled avatar as a new avatar of the user (the old one is kept)."""

from __future__ import annotations

import asyncio

from avatars.restyle import parse_colour, restyle_avatar, restyle_target
from avatars.store import AvatarStore
from engines.face.model import FaceModel
from server.protocol import ProtocolError, ict_only_message
from server.session import Session
from server.targets import TargetPicker
from server.uploads import AvatarBuilds

SAVED_BYTES = 4 * 1024 * 1024  # about what a saved avatar's files take (for the quota)


def hair_choice(msg: dict) -> tuple[str | None, tuple[float, float, float] | None]:
    """A ``hair`` message's style (a name or ``none``; absent: keep) and colour."""
    style, colour = msg.get("style"), msg.get("colour")
    if style is not None and not isinstance(style, str):
        raise ProtocolError("bad_message", "style must be a hairstyle name or 'none'")
    if style is None and colour is None:
        raise ProtocolError("bad_message", "a hair message has a style, a colour or both")
    try:
        return style, None if colour is None else parse_colour(colour)
    except ValueError as exc:
        raise ProtocolError("bad_message", str(exc)) from exc


class HairTryOn:
    def __init__(self, model: FaceModel, picker: TargetPicker, store: AvatarStore,
                 builds: AvatarBuilds) -> None:
        self.model, self.picker, self.store, self.builds = model, picker, store, builds

    def check_head(self) -> None:
        if not self.picker.catalogue.ict_head:
            raise ProtocolError("ict_only", ict_only_message(self.model.name))

    async def apply(self, session: Session, msg: dict) -> dict:
        self.check_head()
        style, colour = hair_choice(msg)
        loop = asyncio.get_running_loop()
        try:  # aligning a style takes ~0.1-0.3 s: off the loop
            session.target = await loop.run_in_executor(
                None, restyle_target, session.target, self.model, style, colour)
        except ValueError as exc:
            raise ProtocolError("bad_message", str(exc)) from exc
        old_style, old_colour = session.hair
        session.hair = (style or old_style, colour or old_colour)
        return {"type": "hair", "ok": True, "style": session.hair[0],
                "colour": None if colour is None else msg["colour"]}

    async def save(self, session: Session, msg: dict) -> dict:
        """The ``avatar`` reply for the restyled avatar, stored as the user's (private)."""
        self.check_head()
        avatar_id = session.target_id
        if session.hair == (None, None):
            raise ProtocolError("bad_message", "no hair change to save (send 'hair' first)")
        if not self.picker.catalogue.visible_avatar(avatar_id, session.user):
            raise ProtocolError("unknown_target", "only an avatar (not a shared head) can be "
                                "saved with new hair")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.builds.check_quota, session.user, SAVED_BYTES)
        style, colour = session.hair

        def restyle_and_store() -> str:
            avatar = restyle_avatar(self.store.load(avatar_id, self.model), self.model,
                                    style, colour)
            return self.store.add(avatar, self.model, session.user, public=False)

        new_id = await loop.run_in_executor(self.builds.executor, restyle_and_store)
        return self.picker.new_avatar_reply(new_id, self.store.entry(new_id).name, session.user)
