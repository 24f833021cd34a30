"""Usernames: case-insensitive, NFKC-normalised, a small safe alphabet."""

from __future__ import annotations

import re
import unicodedata

_USERNAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")


def username_key(username: str) -> str | None:
    """The case-insensitive key of a username, or ``None`` when it is not a valid username."""
    key = unicodedata.normalize("NFKC", username).casefold()
    return key if _USERNAME.match(key) else None
