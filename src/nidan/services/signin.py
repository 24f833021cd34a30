"""Two-step sign-in: password, then a second factor; sessions and their end."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NoReturn

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, MfaChallenge, User
from nidan.core.passwords import HashPassword, PasswordSteps, VerifyPassword, run_now
from nidan.core.policy import Enrolment, enrolment
from nidan.core.ports import UnitOfWork
from nidan.core.tokens import looks_like_token, new_token
from nidan.core.usernames import username_key
from nidan.errors import (
    AuthenticationRequired,
    InvalidCode,
    InvalidCredentials,
    MethodNotAvailable,
    MfaSetupRequired,
    MfaTokenInvalid,
    ReauthenticationRequired,
)
from nidan.services import audit, factors, organisations, throttling
from nidan.services.context import ServiceContext

SESSION_PREFIX = "nidan_s_"
#: A sign-in that must set up 2FA before anything else: the token allows only that (and signing out).
ENROLMENT_PREFIX = "nidan_e_"
SESSION_PURPOSE = "session"
MFA_PURPOSE = "mfa"
FULL = "full"
ENROLMENT = "enrolment"
#: Long enough to find the phone and install an app; the setup needs no further step-up within it.
ENROLMENT_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Authenticated:
    session_token: str = field(repr=False)
    user: User
    #: An organisation requires 2FA and the user has none yet: the grace period ends then (remind them).
    two_factor_due: datetime | None = None


@dataclass(frozen=True, slots=True)
class SetupRequired:
    """2FA must be set up before anything else; ``setup_token`` allows only that."""

    setup_token: str = field(repr=False)
    user: User
    #: ``policy`` (an organisation requires it) or ``administrator`` (asked to register again, or reset).
    reason: str


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
    #: May only set up 2FA (and sign out): an organisation or an administrator requires it first.
    enrolment_only: bool = False


def _open_session(ctx: ServiceContext, uow: UnitOfWork, user: User, client: ClientInfo, *, purpose: str = FULL) -> str:
    """A brand-new session token at every sign-in, so no token chosen before sign-in survives it (fixation)."""
    enrolment_only = purpose == ENROLMENT
    token = new_token(ctx.random_bytes, prefix=ENROLMENT_PREFIX if enrolment_only else SESSION_PREFIX)
    now = ctx.clock.now()
    lifetime = ENROLMENT_LIFETIME if enrolment_only else ctx.session_lifetime
    uow.sessions.add(
        user.id,
        ctx.hash_token(token, SESSION_PURPOSE),
        now,
        now + lifetime,
        client.ip,
        client.user_agent,
        purpose,
    )
    uow.users.record_sign_in(user.id, now)
    return token


def open_enrolment(
    ctx: ServiceContext, uow: UnitOfWork, user: User, client: ClientInfo, reason: str, via: str
) -> SetupRequired:
    """An enrolment-only session for ``user`` in ``uow`` (the caller commits): it may only set up 2FA."""
    token = _open_session(ctx, uow, user, client, purpose=ENROLMENT)
    details: dict[str, Detail] = {"reason": reason, "method": via}
    audit.record(ctx, uow, EventType.SIGN_IN_SETUP_REQUIRED, client=client, actor=user, subject=user, details=details)
    return SetupRequired(token, user, reason)


#: Throttle key for a username that cannot exist: such attempts still count per address, under one name.
INVALID_USERNAME_KEY = "~invalid"


LoginResult = Authenticated | MfaRequired | SetupRequired


def login(ctx: ServiceContext, *, username: str, password: str, client: ClientInfo) -> LoginResult:
    """The first step of signing in, the password checked in this thread (see ``login_steps``)."""
    return run_now(ctx.passwords, login_steps(ctx, username=username, password=password, client=client))


def login_steps(ctx: ServiceContext, *, username: str, password: str, client: ClientInfo) -> PasswordSteps[LoginResult]:
    """``login`` as steps: it yields the password's argon2id work (``VerifyPassword``, then ``HashPassword`` when
    the stored hash has older parameters) and is sent each answer, so that a face with an event loop awaits the
    hashing threads without holding a thread of its own meanwhile. No transaction is open while it waits.

    The attempt takes a turn first (``throttling.take_turn``: it may yield ``Pause`` while others' attempts settle),
    and its last transaction settles it; an attempt that ends otherwise (an error, the generator closed) counts as a
    failure, so breaking one off is no free guess."""
    key = username_key(username)
    subjects = throttling.password_subjects(ctx, key or INVALID_USERNAME_KEY, client.ip)
    reservation = yield from throttling.take_turn(ctx, subjects)
    settled = False
    try:
        with ctx.uow() as uow:
            user = uow.users.get_by_username_key(key) if key else None
        # Unknown users are verified against a dummy hash: the same answer in about the same time.
        matched = yield VerifyPassword(user.password_hash if user else None, password)
        if not matched or user is None:
            with ctx.uow() as uow:
                # Whether the name exists is for administrators' eyes; what was typed is not kept (a password, maybe).
                known: dict[str, Detail] = {"username_known": user is not None}
                throttling.record_escalations(ctx, uow, reservation, client, user)
                audit.record(
                    ctx, uow, EventType.SIGN_IN_PASSWORD_FAILED, client=client, actor=None, subject=user, details=known
                )
                uow.commit()
            settled = True
            raise InvalidCredentials()
        rehashed: str | None = None
        if ctx.passwords.needs_rehash(user.password_hash):
            new_hash = yield HashPassword(password)
            assert isinstance(new_hash, str)
            rehashed = new_hash
        # Each way out below commits last: nothing can fail once the turn is settled.
        with ctx.uow() as uow:
            throttling.settle_success(ctx, uow, reservation)
            if rehashed:
                uow.users.set_password_hash(user.id, rehashed)
            methods = factors.available_methods(uow, user.id)
            if not methods:
                return _without_second_factor(ctx, uow, user, client)
            mfa_token = new_token(ctx.random_bytes)
            now = ctx.clock.now()
            uow.mfa_challenges.add(user.id, ctx.hash_token(mfa_token, MFA_PURPOSE), now, now + ctx.mfa_token_lifetime)
            uow.commit()
        return MfaRequired(mfa_token, methods)
    except BaseException:
        if not settled:
            throttling.abandon(ctx, reservation)
        raise


def _without_second_factor(
    ctx: ServiceContext, uow: UnitOfWork, user: User, client: ClientInfo
) -> Authenticated | SetupRequired:
    """The password was right and the user has no second factor: what their organisations ask decides the rest
    (the caller's transaction is committed here)."""
    now = ctx.clock.now()
    decision = enrolment(
        organisations.requirement_of(uow, user.id),
        has_two_factor=False,
        registration_required=user.registration_required_at is not None,
        grace_started_at=user.two_factor_grace_started_at,
        now=now,
    )
    if decision.grace_starts:
        uow.users.start_grace(user.id, now)
    if decision.action is Enrolment.SETUP:
        reason = "administrator" if user.registration_required_at is not None else "policy"
        required = open_enrolment(ctx, uow, user, client, reason, via="password")
        uow.commit()
        return required
    session_token = _open_session(ctx, uow, user, client)
    details: dict[str, Detail] = {"method": "password"}
    if decision.grace_ends_at is not None:
        details["two_factor_due"] = decision.grace_ends_at.isoformat()
    audit.record(ctx, uow, EventType.SIGN_IN_SUCCEEDED, client=client, actor=user, subject=user, details=details)
    uow.commit()
    return Authenticated(session_token, user, decision.grace_ends_at)


def complete_mfa(
    ctx: ServiceContext, *, mfa_token: str, method: Method, code: str, client: ClientInfo
) -> Authenticated | SetupRequired:
    if not looks_like_token(mfa_token):
        raise MfaTokenInvalid()
    token_hash = ctx.hash_token(mfa_token, MFA_PURPOSE)
    with ctx.uow() as uow:
        found = uow.mfa_challenges.get_valid(token_hash, ctx.clock.now(), ctx.mfa_token_max_attempts)
        if found is None:
            raise MfaTokenInvalid()
        subject = throttling.second_factor_of(ctx, uow, found.user_id)
        offered = factors.recovery_codes_on_offer(uow, found.user_id) if method is Method.RECOVERY_CODE else None
    if method is Method.TOTP:
        return _complete_with_totp(ctx, token_hash, found.user_id, subject, code, client)
    # The user's backoff is asked before anything is evaluated; a blocked attempt does not spend the token's tries.
    reservation = throttling.reserve(ctx, [subject])
    # The code's argon2id runs here, against the set read above, before the write opens (never while it holds
    # SQLite's writer turn or a row lock). The write claims the attempt and spends the code by a conditional
    # UPDATE: only an attempt the token still allows is answered, and a code spent meanwhile is refused.
    matched = factors.match_recovery_code(ctx, offered, code) if offered is not None else factors.NO_MATCH
    with ctx.uow() as uow:
        challenge = uow.mfa_challenges.claim_attempt(token_hash, ctx.clock.now(), ctx.mfa_token_max_attempts)
        user = uow.users.get(found.user_id)
        if challenge is None or user is None:
            raise MfaTokenInvalid()
        if method not in factors.available_methods(uow, user.id):
            uow.commit()  # the attempt still counts
            raise MethodNotAvailable()
        result = factors.check(ctx, uow, user.id, method, code, matched)
        if not result.ok:
            _refuse_code(ctx, uow, user, result, reservation, client)
        throttling.settle_success(ctx, uow, [subject])
        return _second_factor_passed(ctx, uow, user, challenge, result, client)


def _complete_with_totp(
    ctx: ServiceContext, token_hash: bytes, user_id: int, subject: throttling.Subject, code: str, client: ClientInfo
) -> Authenticated | SetupRequired:
    """An authenticator code in ONE transaction under the user's lock, as the verify API checks one: the backoff
    is read, the attempt claimed, the code checked and spent, the outcome counted and audited together. Exactly as
    strict as the reservation (which keeps argon2, for recovery codes, out of a held lock) with one write
    transaction fewer. Every outcome but a pass counts as a failure, as a reservation would have counted it."""
    with ctx.uow() as uow:
        uow.users.lock(user_id)
        # Refused before anything is counted or claimed: a blocked attempt does not spend the token's tries.
        before = throttling.refuse_if_blocked(uow, subject, ctx.clock.now())
        challenge = uow.mfa_challenges.claim_attempt(token_hash, ctx.clock.now(), ctx.mfa_token_max_attempts)
        user = uow.users.get(user_id)
        if challenge is None or user is None:
            throttling.count_under_lock(ctx, uow, subject)
            uow.commit()
            raise MfaTokenInvalid()
        credential = uow.totp.get_active(user.id)
        if credential is None:
            throttling.count_under_lock(ctx, uow, subject)
            uow.commit()  # the attempt still counts
            raise MethodNotAvailable()
        result = factors.check_totp(ctx, uow, credential, code)
        if not result.ok:
            _refuse_code(ctx, uow, user, result, throttling.count_under_lock(ctx, uow, subject), client)
        if before.failures:  # earlier failures: this success resets them
            throttling.settle_success(ctx, uow, [subject])
        return _second_factor_passed(ctx, uow, user, challenge, result, client)


def _refuse_code(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User,
    result: factors.FactorCheck,
    counted: throttling.Reservation,
    client: ClientInfo,
) -> NoReturn:
    """A wrong second factor: recorded (clock drift, escalations, the audit event), committed, refused."""
    # Recorded for the user and admins to see later; never told here, where it would help an attacker.
    factors.record_clock_observation(ctx, uow, user.id, result)
    throttling.record_escalations(ctx, uow, counted, client, user)
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


def _second_factor_passed(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User,
    challenge: MfaChallenge,
    result: factors.FactorCheck,
    client: ClientInfo,
) -> Authenticated | SetupRequired:
    """The code was right: spend the sign-in attempt and open the session, in ``uow`` (committed here)."""
    # Spent in the same transaction as the factor: if another request won the token, neither is spent.
    if not uow.mfa_challenges.consume(challenge.id, ctx.clock.now()):
        raise MfaTokenInvalid()
    if user.registration_required_at is not None:
        # Proved with the old factor; an administrator asked for the methods to be registered again.
        required = open_enrolment(ctx, uow, user, client, "administrator", via=result.method.value)
        uow.commit()
        return required
    session_token = _open_session(ctx, uow, user, client)
    factors.record_success(ctx, uow, user, result, EventType.SIGN_IN_SUCCEEDED, client)
    uow.commit()
    return Authenticated(session_token, user)


def _purpose_of(token: str) -> str | None:
    if looks_like_token(token, prefix=SESSION_PREFIX):
        return FULL
    if looks_like_token(token, prefix=ENROLMENT_PREFIX):
        return ENROLMENT
    return None


def current_session(ctx: ServiceContext, session_token: str) -> CurrentSession:
    """The session, full or enrolment-only (see ``full_session`` for everything but setting up 2FA)."""
    purpose = _purpose_of(session_token)
    if purpose is None:
        raise AuthenticationRequired()
    with ctx.uow() as uow:
        session = uow.sessions.get_valid(ctx.hash_token(session_token, SESSION_PURPOSE), ctx.clock.now())
        user = uow.users.get(session.user_id) if session else None
    if session is None or user is None or session.purpose != purpose:
        raise AuthenticationRequired()
    if purpose == ENROLMENT and not _still_enrolling(ctx, user):
        raise AuthenticationRequired()  # 2FA is set up meanwhile: a setup token must never replace it
    return CurrentSession(session.id, user, session.verified_at, enrolment_only=purpose == ENROLMENT)


def _still_enrolling(ctx: ServiceContext, user: User) -> bool:
    if user.registration_required_at is not None:
        return True
    with ctx.uow() as uow:
        return uow.totp.get_active(user.id) is None


def full_session(ctx: ServiceContext, session_token: str) -> CurrentSession:
    """A session that may do everything its user may; an enrolment-only one is told to set up 2FA first."""
    session = current_session(ctx, session_token)
    if session.enrolment_only:
        raise MfaSetupRequired()
    return session


def logout(ctx: ServiceContext, session_token: str, client: ClientInfo | None = None) -> None:
    if _purpose_of(session_token) is None:
        raise AuthenticationRequired()
    token_hash = ctx.hash_token(session_token, SESSION_PURPOSE)
    with ctx.uow() as uow:
        session = uow.sessions.get_valid(token_hash, ctx.clock.now())
        user = uow.users.get(session.user_id) if session else None
        if user is None or not uow.sessions.revoke(token_hash, ctx.clock.now()):
            raise AuthenticationRequired()
        audit.record(ctx, uow, EventType.SESSION_REVOKED, client=client, actor=user, subject=user)
        uow.commit()


def finish_enrolment(ctx: ServiceContext, session: CurrentSession, client: ClientInfo) -> Authenticated:
    """2FA was just set up with an enrolment session: it ends, and a full session (verified now) begins."""
    with ctx.uow() as uow:
        if not uow.sessions.revoke_by_id(session.session_id, ctx.clock.now()):
            raise AuthenticationRequired()
        # Any other setup sign-in (made before this one finished) must not set 2FA up again over this one.
        uow.sessions.revoke_enrolments(session.user.id, ctx.clock.now())
        token = _open_session(ctx, uow, session.user, client)
        details: dict[str, Detail] = {"method": "totp_setup"}
        user = session.user
        audit.record(ctx, uow, EventType.SIGN_IN_SUCCEEDED, client=client, actor=user, subject=user, details=details)
        uow.commit()
    return Authenticated(token, user)


def require_recent_verification(ctx: ServiceContext, session: CurrentSession) -> None:
    """Sensitive actions need a verification (sign-in or step-up) within the step-up window."""
    verified = session.verified_at
    if verified is None or ctx.clock.now() - verified > ctx.step_up_window:
        raise ReauthenticationRequired()
