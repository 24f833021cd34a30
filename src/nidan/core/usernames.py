"""Usernames: case-insensitive, NFKC-normalised, a small safe alphabet.

Every face and service reaches a username through these two functions, so a name that creates an account is the
same name that signs in with it, at the API, the pages, the Basic gate and the verify API alike.
"""

from __future__ import annotations

import re
import unicodedata

#: A username's key (and an application's name): the one rule, also stated in the OpenAPI document.
USERNAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
_USERNAME = re.compile(USERNAME_PATTERN)


def normalised_username(username: str) -> str:
    """The username as the person meant it: NFKC (full-width letters and spaces become plain ones), without the
    spaces around it that a copy and paste often brings along. Its case is kept, for display."""
    return unicodedata.normalize("NFKC", username).strip()


def username_key(username: str) -> str | None:
    """The case-insensitive key of a username, or ``None`` when it is not a valid username."""
    key = normalised_username(username).casefold()
    return key if _USERNAME.match(key) else None
