"""Two-step sign-in: password, then a second factor; sessions and their end."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, User
from nidan.core.ports import UnitOfWork
from nidan.core.tokens import looks_like_token, new_token
from nidan.core.usernames import username_key
from nidan.errors import (
    AuthenticationRequired,
    InvalidCode,
    InvalidCredentials,
    MethodNotAvailable,
    MfaTokenInvalid,
    ReauthenticationRequired,
)
from nidan.services import audit, factors, throttling
from nidan.services.context import ServiceContext

SESSION_PREFIX = "nidan_s_"
SESSION_PURPOSE = "session"
MFA_PURPOSE = "mfa"


@dataclass(frozen=True, slots=True)
class Authenticated:
    session_token: str = field(repr=False)
    user: User


@dataclass(frozen=True, slots=True)
class MfaRequired:
    mfa_token: str = field(repr=False)
    methods: list[Method]


@dataclass(frozen=True, slots=True)
class CurrentSession:
    session_id: int
    user: User
    #: When the holder last proved who they are (sign-in or step-up).
    verified_at: datetime | None


def _open_session(ctx: ServiceContext, uow: UnitOfWork, user: User, client: ClientInfo) -> str:
    """A brand-new session token at every sign-in, so no token chosen before sign-in survives it (fixation)."""
    token = new_token(ctx.random_bytes, prefix=SESSION_PREFIX)
    now = ctx.clock.now()
    uow.sessions.add(
        user.id,
        ctx.hash_token(token, SESSION_PURPOSE),
        now,
        now + ctx.session_lifetime,
        client.ip,
        client.user_agent,
    )
    uow.users.record_sign_in(user.id, now)
    return token


#: Throttle key for a username that cannot exist: such attempts still count per address, under one name.
INVALID_USERNAME_KEY = "~invalid"


def login(ctx: ServiceContext, *, username: str, password: str, client: ClientInfo) -> Authenticated | MfaRequired:
    key = username_key(username)
    subjects = throttling.password_subjects(ctx, key or INVALID_USERNAME_KEY, client.ip)
    reservation = throttling.reserve(ctx, subjects)
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key) if key else None
    # Unknown users are verified against a dummy hash: the same answer in about the same time.
    if not ctx.passwords.verify(user.password_hash if user else None, password) or user is None:
        with ctx.uow() as uow:
            # Whether the name exists is for administrators' eyes; what was typed is not kept (a password, maybe).
            known: dict[str, Detail] = {"username_known": user is not None}
            throttling.record_escalations(ctx, uow, reservation, client, user)
            audit.record(
                ctx, uow, EventType.SIGN_IN_PASSWORD_FAILED, client=client, actor=None, subject=user, details=known
            )
            uow.commit()
        raise InvalidCredentials()
    rehashed = ctx.passwords.hash(password) if ctx.passwords.needs_rehash(user.password_hash) else None
    with ctx.uow() as uow:
        throttling.settle_success(ctx, uow, subjects)
        if rehashed:
            uow.users.set_password_hash(user.id, rehashed)
        methods = factors.available_methods(uow, user.id)
        if not methods:
            session_token = _open_session(ctx, uow, user, client)
            password_only: dict[str, Detail] = {"method": "password"}
            audit.record(
                ctx, uow, EventType.SIGN_IN_SUCCEEDED, client=client, actor=user, subject=user, details=password_only
            )
            uow.commit()
            return Authenticated(session_token, user)
        mfa_token = new_token(ctx.random_bytes)
        now = ctx.clock.now()
        uow.mfa_challenges.add(user.id, ctx.hash_token(mfa_token, MFA_PURPOSE), now, now + ctx.mfa_token_lifetime)
        uow.commit()
    return MfaRequired(mfa_token, methods)


def complete_mfa(
    ctx: ServiceContext, *, mfa_token: str, method: Method, code: str, client: ClientInfo
) -> Authenticated:
    if not looks_like_token(mfa_token):
        raise MfaTokenInvalid()
    token_hash = ctx.hash_token(mfa_token, MFA_PURPOSE)
    with ctx.uow() as uow:
        found = uow.mfa_challenges.get_valid(token_hash, ctx.clock.now(), ctx.mfa_token_max_attempts)
    if found is None:
        raise MfaTokenInvalid()
    # The user's backoff is asked before anything is evaluated; a blocked attempt does not spend the token's tries.
    subjects = [throttling.second_factor(ctx, found.user_id)]
    reservation = throttling.reserve(ctx, subjects)
    with ctx.uow() as uow:
        challenge = uow.mfa_challenges.claim_attempt(token_hash, ctx.clock.now(), ctx.mfa_token_max_attempts)
        user = uow.users.get(found.user_id)
        if challenge is None or user is None:
            raise MfaTokenInvalid()
        if method not in factors.available_methods(uow, user.id):
            uow.commit()  # the attempt still counts
            raise MethodNotAvailable()
        result = factors.check(ctx, uow, user.id, method, code)
        if not result.ok:
            # Recorded for the user and admins to see later; never told here, where it would help an attacker.
            factors.record_clock_observation(ctx, uow, user.id, result)
            throttling.record_escalations(ctx, uow, reservation, client, user)
            audit.record(
                ctx,
                uow,
                EventType.SIGN_IN_SECOND_FACTOR_FAILED,
                client=client,
                actor=None,
                subject=user,
                details=factors.failure_details(result),
            )
            uow.commit()
            raise InvalidCode()
        # Spent in the same transaction as the factor: if another request won the token, neither is spent.
        if not uow.mfa_challenges.consume(challenge.id, ctx.clock.now()):
            raise MfaTokenInvalid()
        throttling.settle_success(ctx, uow, subjects)
        session_token = _open_session(ctx, uow, user, client)
        factors.record_success(ctx, uow, user, result, EventType.SIGN_IN_SUCCEEDED, client)
        uow.commit()
    return Authenticated(session_token, user)


def current_session(ctx: ServiceContext, session_token: str) -> CurrentSession:
    if not looks_like_token(session_token, prefix=SESSION_PREFIX):
        raise AuthenticationRequired()
    with ctx.uow() as uow:
        session = uow.sessions.get_valid(ctx.hash_token(session_token, SESSION_PURPOSE), ctx.clock.now())
        user = uow.users.get(session.user_id) if session else None
    if session is None or user is None:
        raise AuthenticationRequired()
    return CurrentSession(session.id, user, session.verified_at)


def logout(ctx: ServiceContext, session_token: str, client: ClientInfo | None = None) -> None:
    if not looks_like_token(session_token, prefix=SESSION_PREFIX):
        raise AuthenticationRequired()
    token_hash = ctx.hash_token(session_token, SESSION_PURPOSE)
    with ctx.uow() as uow:
        session = uow.sessions.get_valid(token_hash, ctx.clock.now())
        user = uow.users.get(session.user_id) if session else None
        if user is None or not uow.sessions.revoke(token_hash, ctx.clock.now()):
            raise AuthenticationRequired()
        audit.record(ctx, uow, EventType.SESSION_REVOKED, client=client, actor=user, subject=user)
        uow.commit()


def require_recent_verification(ctx: ServiceContext, session: CurrentSession) -> None:
    """Sensitive actions need a verification (sign-in or step-up) within the step-up window."""
    verified = session.verified_at
    if verified is None or ctx.clock.now() - verified > ctx.step_up_window:
        raise ReauthenticationRequired()
