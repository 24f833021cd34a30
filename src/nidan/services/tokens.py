"""Personal access tokens and app passwords: create (shown once), list, revoke; an administrator revokes them all.

Git clients, registries and old mail clients cannot type a code: once 2FA is on, they use one of these instead of
the password. A personal access token carries the scopes its owner chose; an app password carries every scope a
user may hold, for clients that cannot be told one (Azure's app passwords).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from nidan.core.access_tokens import (
    MAX_LIVE_TOKENS,
    NON_ADMIN_SCOPES,
    PREFIXES,
    TOKEN_PURPOSE,
    AccessToken,
    TokenKind,
    clean_name,
    expiry,
    parse_scopes,
)
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, User
from nidan.core.tokens import new_token
from nidan.errors import TokenLimitReached, TokenNotFound
from nidan.services import accounts, audit, authority
from nidan.services.context import ServiceContext


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: AccessToken
    #: The secret itself: shown this once, never stored.
    secret: str = field(repr=False)


def create(
    ctx: ServiceContext,
    user: User,
    *,
    kind: TokenKind,
    name: str,
    scopes: Iterable[str] | None,
    expires_on: date | None,
    client: ClientInfo,
) -> CreatedToken:
    """A new token for ``user`` (the caller has checked a recent verification); audited with its id and scopes."""
    chosen = NON_ADMIN_SCOPES if kind is TokenKind.APP_PASSWORD else parse_scopes(scopes or [])
    cleaned = clean_name(name)
    now = ctx.clock.now()
    expires_at = expiry(expires_on, now, ctx.token_max_lifetime_days)
    secret = new_token(ctx.random_bytes, prefix=PREFIXES[kind])
    with ctx.uow() as uow:
        uow.users.lock(user.id)  # two creations at once must not both take the last free place
        if uow.access_tokens.count_live(user.id, now) >= MAX_LIVE_TOKENS:
            raise TokenLimitReached()
        token = uow.access_tokens.add(
            user.id, kind, cleaned, ctx.hash_token(secret, TOKEN_PURPOSE), chosen, now, expires_at
        )
        details: dict[str, Detail] = {
            "token_id": token.id,
            "kind": kind.value,
            "scopes": " ".join(s.value for s in chosen),
            "expires_at": expires_at.isoformat() if expires_at else None,
        }
        audit.record(ctx, uow, EventType.TOKEN_CREATED, client=client, actor=user, subject=user, details=details)
        uow.commit()
    return CreatedToken(token, secret)


def list_tokens(ctx: ServiceContext, user: User) -> Sequence[AccessToken]:
    with ctx.uow() as uow:
        return uow.access_tokens.list_live(user.id)


def revoke(ctx: ServiceContext, user: User, token_id: int, *, client: ClientInfo) -> AccessToken:
    """Revoke one of the user's own tokens; another user's token is "not found", like one that never existed."""
    with ctx.uow() as uow:
        token = uow.access_tokens.revoke(user.id, token_id, ctx.clock.now())
        if token is None:
            raise TokenNotFound()
        details: dict[str, Detail] = {"token_id": token.id, "kind": token.kind.value}
        audit.record(ctx, uow, EventType.TOKEN_REVOKED, client=client, actor=user, subject=user, details=details)
        uow.commit()
    return token


def revoke_all(
    ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None = None
) -> tuple[User, int]:
    """An administrator (``actor``; ``None``: the command line) revokes every token and app password of a user,
    e.g. after a lost phone or laptop; audited with the reason. Returns the user and how many were revoked."""
    reason = audit.checked_reason(reason)
    user = accounts.find_user(ctx, username)
    with ctx.uow() as uow:
        authority.require_user_manager(uow, actor, user)
        revoked = uow.access_tokens.revoke_all(user.id, ctx.clock.now())
        details: dict[str, Detail] = {"tokens": revoked, "reason": reason}
        audit.record(ctx, uow, EventType.TOKENS_REVOKED_ALL, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return user, revoked
