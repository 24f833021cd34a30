"""The HTTP Basic gate for Git-style clients (forward-auth): a token with the scope, or a password when allowed.

Once 2FA is on, a password alone must open nothing: such clients use a personal access token or an app password.
A password is accepted only from a user without 2FA who is not required to have it, and only while the instance
allows passwords for Git at all. Every refusal gets the same answer (GitLab's message), is counted by a backoff
like sign-in's (per username and address, and per address) but kept apart from it, so a Git client retrying a stale
stored password never blocks its owner's web sign-in, and is audited with the reason (a token by its id, never the
token).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from nidan.core.access_tokens import TOKEN_PURPOSE, Scope, kind_of
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, User
from nidan.core.ports import UnitOfWork
from nidan.core.usernames import username_key
from nidan.errors import BasicAuthDenied
from nidan.services import audit, organisations, second_step, throttling
from nidan.services.context import ServiceContext

#: A token's "last used" is written at most this often: a Git fetch makes several requests in a second.
LAST_USED_PRECISION = timedelta(minutes=1)


class Refusal(StrEnum):
    """Why the gate said no: for the audit log and administrators, never for the client."""

    TOKEN_UNKNOWN = "token_unknown"  # noqa: S105 (a reason's name)
    TOKEN_REVOKED = "token_revoked"  # noqa: S105
    TOKEN_EXPIRED = "token_expired"  # noqa: S105
    SCOPE_MISSING = "scope_missing"
    PASSWORD_INCORRECT = "password_incorrect"  # noqa: S105
    PASSWORD_DISABLED = "password_disabled"  # noqa: S105
    TWO_FACTOR_ENABLED = "two_factor_enabled"
    TWO_FACTOR_REQUIRED = "two_factor_required"
    ACCOUNT_DISABLED = "account_disabled"


@dataclass(frozen=True, slots=True)
class Admitted:
    user: User
    #: ``token`` (with its id) or ``password``.
    via: str
    token_id: int | None = None
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Denied:
    reason: Refusal
    user: User | None
    token_id: int | None = None


def check(ctx: ServiceContext, *, username: str, secret: str, scope: Scope, client: ClientInfo) -> Admitted:
    """Admit ``username``/``secret`` for ``scope`` or raise ``BasicAuthDenied`` (or ``RateLimited`` while the
    username or address is blocked after failures)."""
    key = username_key(username) or throttling.INVALID_USERNAME_KEY
    subjects = throttling.gate_subjects(ctx, key, client.ip)
    if kind_of(secret):
        return _check_token(ctx, secret, scope, subjects, client)
    # A password costs an argon2 hash: it takes its turn first, exactly as at sign-in (parallel clones with the right
    # password all pass; of wrong ones at once, the tolerated number plus one are checked). A sync endpoint: waiting
    # for the turn holds this request thread, as the hash does.
    reservation = throttling.take_turn_now(ctx, subjects)
    try:
        outcome = _by_password(ctx, key, secret)
        with ctx.uow() as uow:
            if isinstance(outcome, Admitted):
                throttling.settle_success(ctx, uow, reservation)
                uow.commit()
                return outcome
            _refuse(ctx, uow, reservation, outcome, scope, client, via="password")
    except BaseException:
        # Only an error before the settling commit gets here: the attempt counts as a failure (no free guesses).
        throttling.abandon(ctx, reservation)
        raise
    raise BasicAuthDenied()


def _check_token(
    ctx: ServiceContext, secret: str, scope: Scope, subjects: list[throttling.Subject], client: ClientInfo
) -> Admitted:
    """A token is looked up first: 256 random bits cannot be guessed, so a valid one is never slowed or blocked by
    the backoff (parallel CI jobs behind one address), and its success resets no counter (else anyone holding a
    token could wipe the password counters of any username from their address). Only a failure is counted."""
    outcome = _by_token(ctx, secret, scope)
    if isinstance(outcome, Admitted):
        assert outcome.token_id is not None
        now = ctx.clock.now()
        if outcome.last_used_at is None or outcome.last_used_at < now - LAST_USED_PRECISION:
            with ctx.uow() as uow:
                uow.access_tokens.touch(outcome.token_id, now, not_since=now - LAST_USED_PRECISION)
                uow.commit()
        return outcome
    reservation = throttling.reserve(ctx, subjects)  # while blocked: RateLimited, and nothing more is written
    with ctx.uow() as uow:
        _refuse(ctx, uow, reservation, outcome, scope, client, via="token")
    raise BasicAuthDenied()


def _refuse(
    ctx: ServiceContext,
    uow: UnitOfWork,
    reservation: throttling.Reservation,
    denied: _Denied,
    scope: Scope,
    client: ClientInfo,
    *,
    via: str,
) -> None:
    """Log the block the failure earned (if any) and the refusal with its reason, and commit."""
    throttling.record_escalations(ctx, uow, reservation, client, denied.user)
    details: dict[str, Detail] = {"via": via, "reason": denied.reason.value, "scope": scope.value}
    if denied.token_id is not None:
        details["token_id"] = denied.token_id
    if denied.user is None:
        details["username_known"] = False
    audit.record(ctx, uow, EventType.BASIC_AUTH_FAILED, client=client, actor=None, subject=denied.user, details=details)
    uow.commit()


def _by_token(ctx: ServiceContext, secret: str, scope: Scope) -> Admitted | _Denied:
    """Tokens identify their owner, so the username typed beside one is not checked (as GitLab and GitHub do)."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        token = uow.access_tokens.find(ctx.hash_token(secret, TOKEN_PURPOSE))
        owner = uow.users.get(token.user_id) if token else None
    if token is None or owner is None:
        return _Denied(Refusal.TOKEN_UNKNOWN, None)
    if token.revoked_at is not None:
        return _Denied(Refusal.TOKEN_REVOKED, owner, token.id)
    if token.expired(now):
        return _Denied(Refusal.TOKEN_EXPIRED, owner, token.id)
    if not token.grants(scope):
        return _Denied(Refusal.SCOPE_MISSING, owner, token.id)
    if owner.disabled:  # revoked when it was disabled; one made or missed meanwhile is refused all the same
        return _Denied(Refusal.ACCOUNT_DISABLED, owner, token.id)
    return Admitted(owner, "token", token.id, token.last_used_at)


def _by_password(ctx: ServiceContext, key: str, password: str) -> Admitted | _Denied:
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key)
    if not ctx.passwords.verify(user.password_hash if user else None, password) or user is None:
        return _Denied(Refusal.PASSWORD_INCORRECT, user)
    # Only a correct password reaches these, and they get the same answer: nothing here tells an attacker more.
    if user.disabled:
        return _Denied(Refusal.ACCOUNT_DISABLED, user)
    if not ctx.password_authentication_for_git:
        return _Denied(Refusal.PASSWORD_DISABLED, user)
    with ctx.uow() as uow:
        has_two_factor = second_step.has_second_factor(ctx, uow, user)
        required = organisations.requirement_of(uow, user.id).required
    if has_two_factor:
        return _Denied(Refusal.TWO_FACTOR_ENABLED, user)
    if required:
        return _Denied(Refusal.TWO_FACTOR_REQUIRED, user)
    return Admitted(user, "password")
