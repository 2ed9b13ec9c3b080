"""ICE: the STUN/TURN servers the server's peer connections gather through
(``--ice-server``, with ``--ice-username``/``--ice-credential`` for TURN: a worker node
behind NAT offers the pages a relay address), and ICE on loopback only
(``--ice-loopback``: tests in a private network namespace, and single-machine use):
aioice gathers on 127.0.0.1, and remote candidates elsewhere are dropped from offers."""

from __future__ import annotations

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

from server.config import ServerConfig


def ice_configuration(config: ServerConfig) -> RTCConfiguration:
    """The configuration of every peer connection the server makes: its ``--ice-server``
    URLs, the TURN ones (``turn:``/``turns:``) with the TURN user and credential."""
    servers = []
    for url in config.ice_servers:
        if url.startswith(("turn:", "turns:")):
            servers.append(RTCIceServer(urls=url, username=config.ice_username,
                                        credential=config.ice_credential))  # fmt: skip
        else:
            servers.append(RTCIceServer(urls=url))
    return RTCConfiguration(iceServers=servers)


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
