"""Opaque bearer tokens (sessions, sign-in challenges, setup links) and their keyed hashes.

Tokens carry 256 bits from the injected randomness; only HMAC-SHA-256 under the server's hashing key is stored,
so a stolen database yields nothing usable and lookups stay a single indexed equality.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable

TOKEN_BYTES = 32
#: url-safe base64 of TOKEN_BYTES, unpadded.
_TOKEN_BODY = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token(random_bytes: Callable[[int], bytes], *, prefix: str = "") -> str:
    body = base64.urlsafe_b64encode(random_bytes(TOKEN_BYTES)).decode("ascii").rstrip("=")
    return prefix + body


def token_hash(hash_key: bytes, token: str, *, purpose: str) -> bytes:
    """Keyed hash of ``token``; ``purpose`` separates kinds so one kind never stands in for another."""
    return hmac.new(hash_key, f"{purpose}\x00{token}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def looks_like_token(value: str, *, prefix: str = "") -> bool:
    """Cheap shape check before any lookup: url-safe base64 of the expected length after ``prefix``."""
    if not value.startswith(prefix):
        return False
    return _TOKEN_BODY.fullmatch(value, len(prefix)) is not None
