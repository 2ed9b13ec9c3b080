"""Who may do what: the server's token, and each page's user key (it owns the avatars it
uploads). Keys too short to be unguessable are not taken: the server issues a random one
instead, so no two pages ever share a key and no upload is ownerless."""

from __future__ import annotations

import hmac
import re
import secrets

USER_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def token_ok(expected: str | None, given: str) -> bool:
    """Whether ``given`` is the server's token (constant-time); always true without one."""
    return expected is None or hmac.compare_digest(given.encode(), expected.encode())


def valid_user(key: str) -> str | None:
    """``key`` when it is a well-formed user key, else None."""
    return key if USER_KEY.match(key) else None


def user_key(key: str) -> str:
    """The caller's user key, or a fresh random one when it sent none or a weak one."""
    return valid_user(key) or secrets.token_urlsafe(18)
