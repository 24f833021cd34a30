"""Two-step sign-in: password, then a second factor; sessions and their end."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, MfaChallenge, User
from nidan.core.passwords import HashPassword, PasswordSteps, VerifyPassword
from nidan.core.policy import Enrolment, enrolment
from nidan.core.ports import UnitOfWork
from nidan.core.second_step import FactorCheck, Option, Purpose
from nidan.core.tokens import looks_like_token, new_token
from nidan.core.usernames import username_key
from nidan.errors import (
    AccountDisabled,
    AuthenticationRequired,
    InvalidCredentials,
    MfaSetupRequired,
    MfaTokenInvalid,
    NidanError,
    ReauthenticationRequired,
)
from nidan.services import audit, devices, organisations, second_step, throttling
from nidan.services.context import ServiceContext
from nidan.services.password_steps import run_now

SESSION_PREFIX = "nidan_s_"
#: A sign-in that must set up 2FA before anything else: the token allows only that (and signing out).
ENROLMENT_PREFIX = "nidan_e_"
SESSION_PURPOSE = "session"
MFA_PURPOSE = "mfa"
#: What stood in for the second step when a remembered browser did (``Authenticated.second_factor``).
REMEMBERED_DEVICE = "remembered_device"
FULL = "full"
ENROLMENT = "enrolment"
#: A session's "last seen" is noted at most this often.
SEEN_EVERY = timedelta(minutes=5)
#: Long enough to find the phone and install an app; the setup needs no further step-up within it.
ENROLMENT_LIFETIME = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class Authenticated:
    session_token: str = field(repr=False)
    user: User
    #: An organisation requires 2FA and the user has none yet: the grace period ends then (remind them).
    two_factor_due: datetime | None = None
    #: ``remembered_device`` when a remembered browser stood in for the second step.
    second_factor: str | None = None
    #: A remembered browser's token to keep (new, or the successor of the one used) and when it expires.
    device_token: str | None = field(default=None, repr=False)
    device_expires_at: datetime | None = None


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
    #: What the person can prove the second step with, the default first (``second_step.options``).
    options: list[Option]
    default_method: Method | None

    @property
    def methods(self) -> list[Method]:
        """The methods of ``options``, each once (what clients before ``options`` read)."""
        return list(dict.fromkeys(option.method for option in self.options))


@dataclass(frozen=True, slots=True)
class CurrentSession:
    session_id: int
    user: User
    #: When the holder last proved who they are (sign-in or step-up).
    verified_at: datetime | None
    #: May only set up 2FA (and sign out): an organisation or an administrator requires it first.
    enrolment_only: bool = False


def open_session(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User,
    client: ClientInfo,
    *,
    purpose: str = FULL,
    sign_in: bool = True,
    verified: bool = True,
) -> str:
    """A brand-new session token, verified now, in ``uow`` (the caller commits): the one place a session begins
    (sign-in, step-up, the end of a setup), so no token chosen or seen before survives a verification."""
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
        verified=verified,
    )
    if sign_in:  # a step-up verifies a signed-in person again; it is not a sign-in
        uow.users.record_sign_in(user.id, now)
    return token


def open_enrolment(
    ctx: ServiceContext, uow: UnitOfWork, user: User, client: ClientInfo, reason: str, via: str
) -> SetupRequired:
    """An enrolment-only session for ``user`` in ``uow`` (the caller commits): it may only set up 2FA."""
    token = open_session(ctx, uow, user, client, purpose=ENROLMENT)
    details: dict[str, Detail] = {"reason": reason, "method": via}
    audit.record(ctx, uow, EventType.SIGN_IN_SETUP_REQUIRED, client=client, actor=user, subject=user, details=details)
    return SetupRequired(token, user, reason)


LoginResult = Authenticated | MfaRequired | SetupRequired


def login(
    ctx: ServiceContext, *, username: str, password: str, client: ClientInfo, device_token: str | None = None
) -> LoginResult:
    """The first step of signing in, the password checked in this thread (see ``login_steps``)."""
    steps = login_steps(ctx, username=username, password=password, client=client, device_token=device_token)
    return run_now(ctx.passwords, steps)


def login_steps(
    ctx: ServiceContext, *, username: str, password: str, client: ClientInfo, device_token: str | None = None
) -> PasswordSteps[LoginResult]:
    """``login`` as steps: it yields the password's argon2id work (``VerifyPassword``, then ``HashPassword`` when
    the stored hash has older parameters) and is sent each answer, so that a face with an event loop awaits the
    hashing threads without holding a thread of its own meanwhile. No transaction is open while it waits.

    The attempt takes a turn first (``throttling.take_turn``: it may yield ``Pause`` while others' attempts settle),
    and its last transaction settles it; an attempt that ends otherwise (an error, the generator closed) counts as a
    failure, so breaking one off is no free guess."""
    key = username_key(username)
    subjects = throttling.password_subjects(ctx, key or throttling.INVALID_USERNAME_KEY, client.ip)
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
            if user.disabled:
                # Told only now, after the right password: a wrong one is answered as for anyone (401).
                uow.commit()
                settled = True
                raise AccountDisabled()
            if rehashed:
                uow.users.set_password_hash(user.id, rehashed)
            offered = second_step.options(ctx, uow, user)
            if not offered:
                return _without_second_factor(ctx, uow, user, client)
            if device_token is not None:
                remembered = _remembered(ctx, uow, user, device_token, client)
                if remembered is not None:
                    return remembered
            mfa_token = new_token(ctx.random_bytes)
            now = ctx.clock.now()
            uow.mfa_challenges.add(user.id, ctx.hash_token(mfa_token, MFA_PURPOSE), now, now + ctx.mfa_token_lifetime)
            uow.commit()
        chosen = second_step.default_method([o.method for o in offered], user.default_method)
        return MfaRequired(mfa_token, offered, chosen)
    except BaseException:
        if not settled:
            throttling.abandon(ctx, reservation)
        raise


def _remembered(
    ctx: ServiceContext, uow: UnitOfWork, user: User, device_token: str, client: ClientInfo
) -> Authenticated | None:
    """A remembered browser stands in for the second step (its token rotated), committed here; ``None``: it does
    not (unknown, expired, revoked, another user's, copied — never told which), and the second step is asked.
    Never for a user whose second step is hard-locked or whose methods an administrator asked to register again."""
    uow.users.lock(user.id)
    subject = throttling.second_factor_of(ctx, uow, user.id)
    state = uow.throttles.get(subject.scope, subject.key)
    if (state is not None and state.locked_at is not None) or user.registration_required_at is not None:
        return None
    if user.disabled:  # its browsers were forgotten when it was disabled; never admitted meanwhile either
        return None
    admitted = devices.admit(ctx, uow, user.id, device_token, client)
    if admitted is None:
        return None  # a copied token's browser is forgotten, committed with the sign-in attempt that goes on
    # Never a recent verification: sensitive actions still ask for the second step (step-up).
    session_token = open_session(ctx, uow, user, client, verified=False)
    details: dict[str, Detail] = {
        "method": "password",
        "second_factor": REMEMBERED_DEVICE,
        "device_id": admitted.device_id,
    }
    audit.record(ctx, uow, EventType.SIGN_IN_SUCCEEDED, client=client, actor=user, subject=user, details=details)
    uow.commit()
    return Authenticated(
        session_token,
        user,
        second_factor=REMEMBERED_DEVICE,
        device_token=admitted.next_token,
        device_expires_at=admitted.expires_at,
    )


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
    session_token = open_session(ctx, uow, user, client)
    details: dict[str, Detail] = {"method": "password"}
    if decision.grace_ends_at is not None:
        details["two_factor_due"] = decision.grace_ends_at.isoformat()
    audit.record(ctx, uow, EventType.SIGN_IN_SUCCEEDED, client=client, actor=user, subject=user, details=details)
    uow.commit()
    return Authenticated(session_token, user, decision.grace_ends_at)


@dataclass(frozen=True, slots=True)
class PendingSecondStep:
    """A sign-in waiting for its second step, as its page shows it."""

    options: list[Option]
    default_method: Method | None
    #: "Don't ask again on this device for N days" is offered (0: the user's policy does not allow it).
    remember_days: int


def pending(ctx: ServiceContext, mfa_token: str) -> PendingSecondStep | None:
    """What the holder of ``mfa_token`` can prove the second step with; ``None`` when the token is not valid."""
    if not looks_like_token(mfa_token):
        return None
    with ctx.uow() as uow:
        found = uow.mfa_challenges.get_valid(
            ctx.hash_token(mfa_token, MFA_PURPOSE), ctx.clock.now(), ctx.mfa_token_max_attempts
        )
        user = uow.users.get(found.user_id) if found is not None else None
        if user is None:
            return None
        offered = second_step.options(ctx, uow, user)
        days = devices.remember_days(ctx, uow, user.id)
    chosen = second_step.default_method([o.method for o in offered], user.default_method)
    return PendingSecondStep(offered, chosen, days)


def complete_mfa(
    ctx: ServiceContext,
    *,
    mfa_token: str,
    method: Method,
    code: str,
    client: ClientInfo,
    remember_device: bool = False,
) -> Authenticated | SetupRequired:
    """The second step of signing in, proved through the engine (``second_step.prove``)."""
    if not looks_like_token(mfa_token):
        raise MfaTokenInvalid()
    token_hash = ctx.hash_token(mfa_token, MFA_PURPOSE)
    with ctx.uow() as uow:
        found = uow.mfa_challenges.get_valid(token_hash, ctx.clock.now(), ctx.mfa_token_max_attempts)
    if found is None:
        raise MfaTokenInvalid()
    attempt = second_step.Attempt(Purpose.SIGN_IN, client)
    step = _SignInStep(ctx, token_hash, client, remember_device)
    outcome = second_step.prove(ctx, attempt, user_id=found.user_id, method=method, code=code, step=step)
    if isinstance(outcome, second_step.Refused):
        raise outcome.error
    return outcome


class _SignInStep:
    """A sign-in's second step: each attempt spends one of its token's tries; a pass spends the token and opens
    the session (or the setup an administrator asked for)."""

    def __init__(self, ctx: ServiceContext, token_hash: bytes, client: ClientInfo, remember: bool) -> None:
        self._ctx = ctx
        self._token_hash = token_hash
        self._client = client
        self._remember = remember
        self._challenge: MfaChallenge | None = None

    def claim(self, uow: UnitOfWork) -> NidanError | None:
        ctx = self._ctx
        self._challenge = uow.mfa_challenges.claim_attempt(
            self._token_hash, ctx.clock.now(), ctx.mfa_token_max_attempts
        )
        return MfaTokenInvalid() if self._challenge is None else None

    def passed(self, uow: UnitOfWork, user: User, result: FactorCheck) -> Authenticated | SetupRequired:
        ctx, client = self._ctx, self._client
        # Spent in the same transaction as the factor: if another request won the token, neither is spent.
        if self._challenge is None or not uow.mfa_challenges.consume(self._challenge.id, ctx.clock.now()):
            raise MfaTokenInvalid()
        if user.disabled:  # disabled between the password and the code (``user`` is read under the lock)
            raise AccountDisabled()
        if user.registration_required_at is not None:
            # Proved with the old factor; an administrator asked for the methods to be registered again.
            return open_enrolment(ctx, uow, user, client, "administrator", via=result.method.value)
        session_token = open_session(ctx, uow, user, client)
        second_step.record_success(ctx, uow, user, result, EventType.SIGN_IN_SUCCEEDED, client)
        remembered = devices.remember(ctx, uow, user, client) if self._remember else None
        if remembered is None:  # not asked for, or the user's policy does not allow it
            return Authenticated(session_token, user)
        return Authenticated(
            session_token, user, device_token=remembered.token, device_expires_at=remembered.expires_at
        )


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
    now = ctx.clock.now()
    with ctx.uow() as uow:
        session = uow.sessions.get_valid(ctx.hash_token(session_token, SESSION_PURPOSE), now)
        user = uow.users.get(session.user_id) if session else None
        stale = session is not None and (session.last_seen_at is None or session.last_seen_at < now - SEEN_EVERY)
        if session is not None and user is not None and stale:
            # For its owner's list of sessions ("last seen"): one write every few minutes, not one per request.
            uow.sessions.touch(session.id, now, not_since=now - SEEN_EVERY)
            uow.commit()
    if session is None or user is None or user.disabled or session.purpose != purpose:
        raise AuthenticationRequired()
    if purpose == ENROLMENT and not _still_enrolling(ctx, user):
        raise AuthenticationRequired()  # 2FA is set up meanwhile: a setup token must never replace it
    return CurrentSession(session.id, user, session.verified_at, enrolment_only=purpose == ENROLMENT)


def _still_enrolling(ctx: ServiceContext, user: User) -> bool:
    if user.registration_required_at is not None:
        return True
    with ctx.uow() as uow:
        return not second_step.has_second_factor(ctx, uow, user)


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
        token = open_session(ctx, uow, session.user, client)
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
