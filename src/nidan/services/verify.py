"""The verify API for relying applications (privacyIDEA's /validate/check): is this the user's code, right now?

The same rules as sign-in: the code is consumed atomically (a replay fails), the user's second-step backoff refuses
before anything is evaluated (429 while blocked) and counts exactly under concurrency — a TOTP code in one
transaction under the user's row lock, a recovery code (argon2) by the reservation — and every answer is audited
with the application's name.
An unknown user, a user without 2FA and a wrong code get the same answer, so an application's users cannot learn
who exists; unknown names are counted by name, so they are blocked exactly as known ones are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from nidan.core import recovery, totp
from nidan.core.access_tokens import Application
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, ThrottleScope, User
from nidan.core.ports import UnitOfWork
from nidan.core.usernames import username_key
from nidan.errors import InvalidCode, NidanError, VerificationLocked
from nidan.services import applications, audit, factors, throttling
from nidan.services.context import ServiceContext
from nidan.services.signin import INVALID_USERNAME_KEY

log = logging.getLogger("nidan.services.verify")


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    method: Method
    #: The user's canonical username when the code was accepted.
    username: str | None = None
    #: Why not, when ``ok`` is false.
    error: NidanError | None = None


def guess_method(code: str) -> Method:
    """Digits (spaces allowed) are an authenticator code; anything else is tried as a recovery code."""
    compact = "".join(code.split())
    return Method.TOTP if compact.isdigit() else Method.RECOVERY_CODE


def _subject(user: User | None, ctx: ServiceContext, key: str | None) -> throttling.Subject:
    # The instance's tolerance for everyone here, not an organisation's stricter one: unknown names have no
    # organisation, and an earlier 429 for real users would tell who exists.
    if user is not None:
        return throttling.second_factor(ctx, user.id)
    # Not a number, so it never meets a real user's counter.
    return throttling.Subject(ThrottleScope.SECOND_FACTOR, f"~{key or INVALID_USERNAME_KEY}", ctx.backoff)


def verify(
    ctx: ServiceContext,
    *,
    application: Application,
    username: str,
    code: str,
    method: Method | None,
    client: ClientInfo,
) -> VerifyResult:
    """Check ``code`` for ``username`` on behalf of ``application``. Raises ``RateLimited`` while the user is
    blocked; every other outcome is an answer (``ok`` false with the reason for a wrong code or a locked user)."""
    chosen = method or guess_method(code)
    if chosen is Method.TOTP:
        return _verify_totp(ctx, lambda _: application, username_key(username), code, client)
    return _verify_with_reservation(ctx, application, username, code, chosen, client)


def verify_for_key(
    ctx: ServiceContext, *, api_key: str, username: str, code: str, method: Method | None, client: ClientInfo
) -> VerifyResult:
    """``verify`` for the application holding ``api_key`` (``AppKeyInvalid`` otherwise). For a TOTP code the key
    is looked up inside the verify's own transaction: one transaction per call, not two."""
    chosen = method or guess_method(code)
    if chosen is Method.TOTP:
        find = partial(applications.authenticate_in, ctx, api_key=api_key)
        return _verify_totp(ctx, find, username_key(username), code, client)
    application = applications.authenticate(ctx, api_key)
    return _verify_with_reservation(ctx, application, username, code, chosen, client)


@dataclass(frozen=True, slots=True)
class VerifyCall:
    """One call of the verify API, as ``verify_for_key`` takes it."""

    api_key: str
    username: str
    code: str
    method: Method | None
    client: ClientInfo

    @property
    def is_totp(self) -> bool:
        """Whether it is checked as an authenticator code (microseconds; a recovery code costs an argon2id)."""
        return (self.method or guess_method(self.code)) is Method.TOTP


def verify_call(ctx: ServiceContext, call: VerifyCall, known: KnownApplications | None = None) -> VerifyResult:
    """``verify_for_key`` for ``call``; with ``known``, an authenticator code's key is looked up through it."""
    if known is not None and call.is_totp:
        find = partial(known.authenticate_in, api_key=call.api_key)
        return _verify_totp(ctx, find, username_key(call.username), call.code, call.client)
    return verify_for_key(
        ctx, api_key=call.api_key, username=call.username, code=call.code, method=call.method, client=call.client
    )


class KnownApplications:
    """The application keys authenticated in one shared transaction: each key is looked up (and its last use
    noted) once, not once per call. Kept for that transaction only, so a key removed since is refused next time."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._found: dict[str, Application] = {}

    def authenticate_in(self, uow: UnitOfWork, *, api_key: str) -> Application:
        found = self._found.get(api_key)
        if found is None:
            found = self._found[api_key] = applications.authenticate_in(self._ctx, uow, api_key)
        return found


def verify_together(ctx: ServiceContext, calls: Sequence[VerifyCall]) -> list[VerifyResult | Exception]:
    """Authenticator-code calls that arrived together, checked in ONE transaction (group commit): each call in a
    unit of work of its own inside it (a savepoint), exactly as ``verify_call`` checks it alone, and all committed
    at once, before any answer is given. A write transaction's fixed cost (the lock, the commit's write of each
    changed page) is paid once for all of them; the same audit and throttle rows are written, in the same order.

    Each call's outcome, in order: its ``VerifyResult``, or the error it raised (a ``NidanError`` is an answer:
    401, 429 ...). If the shared transaction cannot be had or committed (``DatabaseUnavailable``), that is every
    call's outcome: nothing was stored. If a call fails any other way (a bug, the disk), nothing of the batch is
    kept and each call is checked again on its own, so that one failing call takes no other with it."""
    if ctx.shared is None or len(calls) < 2:
        return [_outcome(ctx, call) for call in calls]
    assert all(call.is_totp for call in calls), "recovery codes (argon2id) never hold a shared write lock"
    outcomes: list[VerifyResult | Exception] = []
    try:
        with ctx.shared() as shared:
            inside = replace(ctx, uow=shared.units, shared=None)
            known = KnownApplications(inside)
            for call in calls:
                try:
                    outcomes.append(verify_call(inside, call, known))
                except NidanError as error:
                    # An answer (401, 429 ...), not a fault: its traceback would keep the frames of this whole
                    # group alive until every answer is sent.
                    outcomes.append(error.with_traceback(None))
            shared.commit()
    except NidanError as error:
        return [error] * len(calls)
    except Exception:
        log.exception(
            "a verify call failed inside a shared transaction: the %d calls are checked one by one", len(calls)
        )
        return [_outcome(ctx, call) for call in calls]
    return outcomes


def _outcome(ctx: ServiceContext, call: VerifyCall) -> VerifyResult | Exception:
    try:
        return verify_call(ctx, call)
    except Exception as error:  # handed to the caller: it answers each call with its own error
        return error


def _verify_with_reservation(
    ctx: ServiceContext, application: Application, username: str, code: str, chosen: Method, client: ClientInfo
) -> VerifyResult:
    """A recovery code (argon2): the failure is counted first, in its own transaction, so no lock is held while
    the code is hashed."""
    key = username_key(username)
    app: dict[str, Detail] = {"app": application.name}
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key) if key else None
    subject = _subject(user, ctx, key)
    try:
        reservation = throttling.reserve(ctx, [subject])
    except VerificationLocked as locked:
        return VerifyResult(ok=False, method=chosen, error=locked)
    with ctx.uow() as uow:
        available = factors.available_methods(uow, user.id) if user else []
        if user is None or chosen not in available:
            _spend_like_a_check(ctx, chosen)
            details: dict[str, Detail] = {"method": chosen.value, "username_known": user is not None, **app}
            if user is not None:
                details["method_available"] = False
            throttling.record_escalations(ctx, uow, reservation, client, user)
            audit.record(ctx, uow, EventType.VERIFY_FAILED, client=client, actor=None, subject=user, details=details)
            uow.commit()
            return VerifyResult(ok=False, method=chosen, error=InvalidCode())
        result = factors.check(ctx, uow, user.id, chosen, code)
        if not result.ok:
            factors.record_clock_observation(ctx, uow, user.id, result, context="verify")
            throttling.record_escalations(ctx, uow, reservation, client, user)
            failed = {**factors.failure_details(result), **app}
            audit.record(ctx, uow, EventType.VERIFY_FAILED, client=client, actor=None, subject=user, details=failed)
            uow.commit()
            return VerifyResult(ok=False, method=chosen, error=InvalidCode())
        throttling.settle_success(ctx, uow, [subject])
        factors.record_success(ctx, uow, user, result, EventType.VERIFY_SUCCEEDED, client, details=app)
        uow.commit()
    return VerifyResult(ok=True, method=chosen, username=user.username)


def _verify_totp(
    ctx: ServiceContext,
    application_in: Callable[[UnitOfWork], Application],
    key: str | None,
    code: str,
    client: ClientInfo,
) -> VerifyResult:
    """A TOTP code, in ONE transaction: checking it costs microseconds, so the user is found and their row locked
    first, and the backoff is read, the code checked and spent, and the outcome counted and audited together —
    exact under concurrency like the reservation (which exists to keep argon2 out of a held lock) at half the write
    transactions. Recovery codes take the reservation path. An unknown name takes this one too (with nothing to
    lock or check), so that how long the answer takes does not tell who exists."""
    with ctx.uow() as uow:
        app: dict[str, Detail] = {"app": application_in(uow).name}
        found = uow.users.lock_for_second_step(key) if key else None
        user = found.user if found is not None else None
        subject = _subject(user, ctx, key)
        try:
            if found is not None:
                before = throttling.refuse_while_blocked(found.backoff, ctx.clock.now())
            else:
                before = throttling.refuse_if_blocked(uow, subject, ctx.clock.now())
        except VerificationLocked as locked:
            return VerifyResult(ok=False, method=Method.TOTP, error=locked)
        credential = found.authenticator if found is not None else None
        if user is None or credential is None:
            _check_like_a_wrong_code(ctx, code)
            details: dict[str, Detail] = {"method": Method.TOTP.value, "username_known": user is not None, **app}
            if user is not None:
                details["method_available"] = False
            _failed(ctx, uow, user, subject, client, details)
            return VerifyResult(ok=False, method=Method.TOTP, error=InvalidCode())
        result = factors.check_totp(ctx, uow, credential, code)
        if not result.ok:
            factors.record_clock_observation(ctx, uow, user.id, result, context="verify")
            _failed(ctx, uow, user, subject, client, {**factors.failure_details(result), **app})
            return VerifyResult(ok=False, method=Method.TOTP, error=InvalidCode())
        if before.failures:  # earlier failures: this success resets them
            throttling.settle_success(ctx, uow, [subject])
        factors.record_success(ctx, uow, user, result, EventType.VERIFY_SUCCEEDED, client, details=app)
        uow.commit()
    return VerifyResult(ok=True, method=Method.TOTP, username=user.username)


def _failed(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User | None,
    subject: throttling.Subject,
    client: ClientInfo,
    details: dict[str, Detail],
) -> None:
    counted = throttling.count_under_lock(ctx, uow, subject)
    throttling.record_escalations(ctx, uow, counted, client, user)
    audit.record(ctx, uow, EventType.VERIFY_FAILED, client=client, actor=None, subject=user, details=details)
    uow.commit()


#: Stands in for an authenticator's key where there is none, so the work below matches a real wrong code's.
_NO_KEY = bytes(20)


def _check_like_a_wrong_code(ctx: ServiceContext, code: str) -> None:
    """The HMACs a wrong TOTP code costs (the window, then the search for a clock offset), so that an unknown name
    or a user without an authenticator is not answered measurably sooner than a real user's wrong code."""
    unix_time = ctx.clock.now().timestamp()
    totp.match_code(_NO_KEY, code, unix_time)
    totp.find_clock_offset(_NO_KEY, code, unix_time)


def _spend_like_a_check(ctx: ServiceContext, method: Method) -> None:
    """The work a real recovery-code check does (one argon2id), so its absence does not tell who exists."""
    if method is Method.RECOVERY_CODE:
        recovery.digest("0" * recovery.CODE_LENGTH, ctx.random_bytes(recovery.SALT_BYTES), ctx.recovery_hash)
