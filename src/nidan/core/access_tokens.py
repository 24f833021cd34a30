"""Personal access tokens, app passwords and relying applications' API keys: scopes, shapes and lifetimes.

A token's secret is 256 bits behind a recognisable prefix (``nidan_pat_``, ``nidan_app_``, ``nidan_key_``) so that
secret scanners can spot a leaked one; only its keyed hash is stored (``nidan.core.tokens``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from nidan.core.tokens import looks_like_token
from nidan.errors import InvalidInput
from nidan.texts import _, ngettext


class Scope(StrEnum):
    """What a token opens. The gate (``/auth/basic?scope=``) names the scope a route needs."""

    READ_REPOSITORY = "read_repository"
    WRITE_REPOSITORY = "write_repository"
    READ_REGISTRY = "read_registry"
    WRITE_REGISTRY = "write_registry"
    API = "api"


#: An app password carries every scope a user may hold: for clients that cannot be told one.
NON_ADMIN_SCOPES: tuple[Scope, ...] = tuple(Scope)


class TokenKind(StrEnum):
    PERSONAL = "personal_access_token"
    APP_PASSWORD = "app_password"  # noqa: S105 (a kind's name, not a password)


PREFIXES: dict[TokenKind, str] = {TokenKind.PERSONAL: "nidan_pat_", TokenKind.APP_PASSWORD: "nidan_app_"}
APP_KEY_PREFIX = "nidan_key_"
#: The keyed-hash purposes: a token of one kind never stands in for another.
TOKEN_PURPOSE = "access_token"  # noqa: S105
APP_KEY_PURPOSE = "app_key"
#: Live tokens one user may hold: enough for every machine and client, few enough to review.
MAX_LIVE_TOKENS = 100
NAME_MAX_LENGTH = 100


@dataclass(frozen=True, slots=True)
class AccessToken:
    id: int
    user_id: int
    kind: TokenKind
    name: str
    scopes: tuple[Scope, ...]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def grants(self, scope: Scope) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class Application:
    """A relying application registered by an administrator to call the verify API."""

    id: int
    name: str
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None


def kind_of(secret: str) -> TokenKind | None:
    """Which kind of token ``secret`` is shaped like (prefix and length), if any; nothing is looked up."""
    for kind, prefix in PREFIXES.items():
        if looks_like_token(secret, prefix=prefix):
            return kind
    return None


def parse_scopes(requested: Iterable[str]) -> tuple[Scope, ...]:
    """The requested scopes in a canonical order; an unknown or missing scope is a clear 422."""
    chosen: set[Scope] = set()
    for value in requested:
        try:
            chosen.add(Scope(value))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidInput(
                _("Unknown scope %(scope)s. Choose from: %(known)s.", scope=repr(value), known=known)
            ) from None
    if not chosen:
        raise InvalidInput(_("Choose at least one scope for the token."))
    return tuple(s for s in Scope if s in chosen)


def encode_scopes(scopes: Iterable[Scope]) -> str:
    return " ".join(s.value for s in scopes)


def decode_scopes(stored: str) -> tuple[Scope, ...]:
    """Stored scopes; one this version does not know (written by a newer one) grants nothing here."""
    known = {s.value for s in Scope}
    return tuple(Scope(v) for v in stored.split() if v in known)


def clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned.isprintable():
        raise InvalidInput(_("The name may not contain control characters."))
    if not cleaned:
        raise InvalidInput(_("Give the token a name, e.g. the machine or program it is for."))
    if len(cleaned) > NAME_MAX_LENGTH:
        raise InvalidInput(_("The name is too long: at most %(max)d characters.", max=NAME_MAX_LENGTH))
    return cleaned


def expiry(requested: date | None, now: datetime, max_lifetime_days: int) -> datetime | None:
    """When a token asked to expire on ``requested`` (at 00:00 UTC that day, as GitLab does) really expires.

    With a cap (``max_lifetime_days`` > 0) a token without a date expires at the cap, and a later date is
    refused; without one (0) a token may live until revoked.
    """
    today = now.astimezone(UTC).date()
    latest = today + timedelta(days=max_lifetime_days) if max_lifetime_days > 0 else None
    if requested is None:
        return None if latest is None else _midnight(latest)
    if requested <= today:
        raise InvalidInput(_("The expiry date must be in the future (after %(today)s).", today=today.isoformat()))
    if latest is not None and requested > latest:
        raise InvalidInput(
            ngettext(
                "Tokens may live at most %(n)d day here: choose an expiry date on or before %(latest)s.",
                "Tokens may live at most %(n)d days here: choose an expiry date on or before %(latest)s.",
                max_lifetime_days,
                latest=latest.isoformat(),
            )
        )
    return _midnight(requested)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)
