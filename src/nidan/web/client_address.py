"""The client's address: the socket peer, unless that peer is a trusted proxy; then ``X-Forwarded-For``'s right-most
entry that is not itself a trusted proxy. A header from anyone else changes nothing."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str | None:
    """``forwarded_for`` holds every ``X-Forwarded-For`` header value in order of appearance."""
    if peer is None or not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            # A garbled entry cannot be attributed; everything left of it is the client's own claim.
            return peer
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer
