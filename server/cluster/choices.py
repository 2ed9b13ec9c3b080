"""What a page has chosen for its avatar, carried from the gateway to the session host that
renders it (on every offer, so a call that moves to another host keeps them)."""

from __future__ import annotations

from dataclasses import dataclass

from server.session import Session


@dataclass(frozen=True)
class Choices:
    target_id: str
    mode: str
    sliders: tuple[float, ...]
    background: tuple[float, float, float]
    hair: tuple[str | None, tuple[float, float, float] | None]

    @classmethod
    def of(cls, session: Session) -> Choices:
        return cls(session.target_id, session.mode,
                   tuple(float(v) for v in session.sliders), tuple(session.background),
                   session.hair)  # fmt: skip
