"""Which address is the client's: only a trusted proxy's X-Forwarded-For is believed, right-most untrusted hop."""

from __future__ import annotations

import pytest

from nidan.web.client_address import client_address, parse_networks

PROXIES = parse_networks(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"])


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "expected"),
    [
        # No trusted proxies: the header is ignored, whoever sends it.
        ("203.0.113.9", ["198.51.100.1"], (), "203.0.113.9"),
        # A stranger's spoofed header changes nothing.
        ("203.0.113.9", ["198.51.100.1"], PROXIES, "203.0.113.9"),
        # A trusted proxy: its right-most untrusted entry is the client.
        ("127.0.0.1", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 10.9.9.9"], PROXIES, "198.51.100.1"),
        # Several headers are read in order, as one list.
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], PROXIES, "198.51.100.1"),
        # Only proxies in the header: the left-most is as far as we can see.
        ("127.0.0.1", ["10.0.0.5, 10.0.0.6"], PROXIES, "10.0.0.5"),
        # A trusted proxy without the header: the proxy itself.
        ("127.0.0.1", [], PROXIES, "127.0.0.1"),
        # Garbage in the chain stops the walk: the peer stands, not the attacker-chosen left part.
        ("127.0.0.1", ["6.6.6.6, not-an-ip"], PROXIES, "127.0.0.1"),
        ("2001:db8::1", ["2001:db9::7"], PROXIES, "2001:db9::7"),
        (None, ["198.51.100.1"], PROXIES, None),
    ],
)
def test_client_address(peer: str | None, headers: list[str], trusted: tuple, expected: str | None) -> None:  # type: ignore[type-arg]
    assert client_address(peer, headers, trusted) == expected
