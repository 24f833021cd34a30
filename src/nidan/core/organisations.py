"""Organisations (workspaces) and their members, as plain records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from nidan.core.models import OrgRole, User
from nidan.core.policy import OrgPolicy
from nidan.errors import InvalidInput
from nidan.texts import _

DEFAULT_SLUG = "default"
#: An organisation's short name: the one rule, also stated in the OpenAPI document.
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
_SLUG = re.compile(SLUG_PATTERN)


@dataclass(frozen=True, slots=True)
class Organisation:
    id: int
    slug: str
    name: str
    created_at: datetime
    policy: OrgPolicy
    members: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    user: User
    role: OrgRole
    #: The organisation manages the account (its owners may reset the user's 2FA); False: an outside collaborator.
    managed: bool


@dataclass(frozen=True, slots=True)
class Membership:
    """One of a user's organisations, seen from the user."""

    organisation: Organisation
    role: OrgRole
    managed: bool


def checked_slug(slug: str) -> str:
    cleaned = slug.strip().lower()
    if not _SLUG.match(cleaned):
        raise InvalidInput(
            _(
                "An organisation's short name is 1 to 64 characters: a-z, 0-9 and '-', starting and ending with a "
                "letter or digit (e.g. 'platform-team')."
            )
        )
    return cleaned


def checked_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned.isprintable():
        raise InvalidInput(_("An organisation's name may not contain control characters."))
    if not 0 < len(cleaned) <= 200:
        raise InvalidInput(_("An organisation's name is 1 to 200 characters."))
    return cleaned
