"""The verify API for relying applications (privacyIDEA's /validate/check): is this the user's code, right now?

The same rules as sign-in: the code is consumed atomically (a replay fails), the user's second-step backoff refuses
before anything is evaluated (429 while blocked) and counts exactly under concurrency — a TOTP code in one
transaction under the user's row lock, a recovery code (argon2) by the reservation — and every answer is audited
with the application's name.
An unknown user, a user without 2FA and a wrong code get the same answer after the same work (the same statements,
an unseal and the same HMACs, or one argon2id), so an application cannot learn who exists or who has 2FA from the
answer or from its time; unknown names are counted by name, so they are blocked exactly as known ones are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from weakref import WeakKeyDictionary

from nidan.core import totp
from nidan.core.access_tokens import Application
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, ThrottleScope, TotpCredential, User
from nidan.core.ports import UnitOfWork
from nidan.core.sealing import KeyRing
from nidan.core.usernames import username_key
from nidan.errors import InvalidCode, NidanError, VerificationLocked
from nidan.services import applications, audit, enrollment, factors, throttling
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


def _unknown_name_key(ctx: ServiceContext, key: str | None) -> str:
    """The backoff key of a name nobody has: its keyed hash, never the name as typed. Not a number, so it never
    meets a real user's counter."""
    return f"~{throttling.name_key(ctx, key or INVALID_USERNAME_KEY)}"


def _subject(user: User | None, ctx: ServiceContext, key: str | None) -> throttling.Subject:
    # The instance's tolerance for everyone here, not an organisation's stricter one: unknown names have no
    # organisation, and an earlier 429 for real users would tell who exists.
    if user is not None:
        return throttling.second_factor(ctx, user.id)
    return throttling.Subject(ThrottleScope.SECOND_FACTOR, _unknown_name_key(ctx, key), ctx.backoff)


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
    """A recovery code (argon2): the failure is counted first, in its own transaction, then the code is hashed
    with no transaction open (against the set read beforehand), and the last transaction only spends it (one
    conditional UPDATE) and records the outcome. Whoever has the name, the same statements run and one argon2id is
    computed."""
    key = username_key(username)
    app: dict[str, Detail] = {"app": application.name}
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key) if key else None
        offered = factors.recovery_codes_on_offer(uow, user.id if user is not None else _NOBODY)
    subject = _subject(user, ctx, key)
    try:
        reservation = throttling.reserve(ctx, [subject])
    except VerificationLocked as locked:
        return VerifyResult(ok=False, method=chosen, error=locked)
    matched = factors.match_recovery_code(ctx, offered if user is not None else None, code)
    with ctx.uow() as uow:
        result = factors.spend_recovery_code(ctx, uow, matched)
        if user is None or offered is None:
            details: dict[str, Detail] = {"method": chosen.value, "username_known": user is not None, **app}
            if user is not None:
                details["method_available"] = False
            throttling.record_escalations(ctx, uow, reservation, client, user)
            audit.record(ctx, uow, EventType.VERIFY_FAILED, client=client, actor=None, subject=user, details=details)
            uow.commit()
            return VerifyResult(ok=False, method=chosen, error=InvalidCode())
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
    transactions. Recovery codes take the reservation path.

    An unknown name and a user without an authenticator take this path too and do the same work as a wrong code
    of a user with one (issue 14: the time of the answer told who has 2FA): the same statements (the read returns
    stand-in values), an unseal and the same HMACs on a stand-in authenticator, the same writes."""
    with ctx.uow() as uow:
        app: dict[str, Detail] = {"app": application_in(uow).name}
        found = uow.users.lock_for_second_step(key, _unknown_name_key(ctx, key))
        user = found.user
        subject = _subject(user, ctx, key)
        try:
            before = throttling.refuse_while_blocked(found.backoff, ctx.clock.now())
        except VerificationLocked as locked:
            return VerifyResult(ok=False, method=Method.TOTP, error=locked)
        credential = found.authenticator
        if user is None or credential is None:
            factors.simulate_totp_check(ctx, _stand_in_authenticator(ctx), code)
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


#: No user or authenticator has this id (they count from 1): reads for a name nobody has find nothing with it.
_NOBODY = 0
#: Each key ring's stand-in authenticator (see ``_stand_in_authenticator``).
_STAND_INS: WeakKeyDictionary[KeyRing, TotpCredential] = WeakKeyDictionary()


def _stand_in_authenticator(ctx: ServiceContext) -> TotpCredential:
    """An authenticator that is nobody's, checked in place of the missing one: a random key sealed with the key
    ring exactly as enrollment seals a real one (so unsealing it costs the same), used before (as every activated
    one has been) and never stored. Made once per key ring, i.e. once per process; never reaches the database."""
    stand_in = _STAND_INS.get(ctx.keyring)
    if stand_in is None:
        now = ctx.clock.now()
        sealed = ctx.keyring.seal(
            ctx.random_bytes(enrollment.TOTP_KEY_BYTES),
            context=factors.totp_context(_NOBODY),
            random_bytes=ctx.random_bytes,
        )
        stand_in = _STAND_INS[ctx.keyring] = TotpCredential(
            id=_NOBODY,
            user_id=_NOBODY,
            active=True,
            key_fingerprint=sealed.key_fingerprint,
            sealed_secret=sealed.blob,
            created_at=now,
            activated_at=now,
            last_used_step=totp.time_step(now.timestamp()),
            drift_steps=0,
        )
    return stand_in
