"""ICE on loopback only (``--ice-loopback``: tests in a private network namespace, and
single-machine use): aioice gathers on 127.0.0.1, and remote candidates elsewhere are
dropped from offers."""

from __future__ import annotations

import aioice.ice


def restrict_ice_to_loopback() -> None:
    """aioice offers no loopback candidates: gather on 127.0.0.1 only."""
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
