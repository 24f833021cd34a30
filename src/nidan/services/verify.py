"""The verify API for relying applications (privacyIDEA's /validate/check): is this the user's code, right now?

The same rules as sign-in, by the same engine (``second_step``): the code is consumed atomically (a replay fails),
the user's second-step backoff refuses before anything is evaluated (429 while blocked) and counts exactly under
concurrency — a fast method (TOTP) in one transaction under the user's row lock, a slow one (a recovery code's
argon2) by the backoff's turn — and every answer is audited with the application's name.
An unknown user, a user without 2FA and a wrong code get the same answer after the same work (the same statements,
an unseal and the same HMACs, or one argon2id), so an application cannot learn who exists or who has 2FA from the
answer or from its time; unknown names are counted by name, so they are blocked exactly as known ones are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

from nidan.core.access_tokens import Application
from nidan.core.audit import Detail, EventType
from nidan.core.codes import typed_code
from nidan.core.models import ClientInfo, Method, User
from nidan.core.ports import UnitOfWork
from nidan.core.second_step import FactorCheck, Purpose
from nidan.core.usernames import username_key
from nidan.errors import AccountDisabled, NidanError, VerificationLocked
from nidan.services import applications, audit, second_step, throttling
from nidan.services.context import ServiceContext

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
    """Digits (spaces allowed, full-width ones too: read as every code is, by ``typed_code``) are an authenticator
    code; anything else is tried as a recovery code."""
    return Method.TOTP if typed_code(code).isdigit() else Method.RECOVERY_CODE


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
    if not second_step.plugin(chosen).slow:
        return _verify_fast(ctx, lambda _: application, username_key(username), chosen, code, client)
    return _verify_slow(ctx, application, username, code, chosen, client)


def verify_for_key(
    ctx: ServiceContext, *, api_key: str, username: str, code: str, method: Method | None, client: ClientInfo
) -> VerifyResult:
    """``verify`` for the application holding ``api_key`` (``AppKeyInvalid`` otherwise). For a TOTP code the key
    is looked up inside the verify's own transaction: one transaction per call, not two."""
    return verify_call(ctx, VerifyCall(api_key, username, code, method, client))


@dataclass(frozen=True, slots=True)
class VerifyCall:
    """One call of the verify API, as ``verify_for_key`` takes it."""

    api_key: str
    username: str
    code: str
    method: Method | None
    client: ClientInfo
    #: The method asked for, else the one the code looks like (decided once: the fast path asks several times).
    chosen: Method = field(init=False)
    #: Whether its method checks in microseconds (an authenticator code; a recovery code costs an argon2id).
    is_fast: bool = field(init=False)

    def __post_init__(self) -> None:
        chosen = self.method or guess_method(self.code)
        object.__setattr__(self, "chosen", chosen)
        object.__setattr__(self, "is_fast", not second_step.plugin(chosen).slow)


def verify_call(ctx: ServiceContext, call: VerifyCall, known: KnownApplications | None = None) -> VerifyResult:
    """``verify_for_key`` for ``call``; with ``known``, an authenticator code's key is looked up through it."""
    if call.is_fast:
        if known is not None:
            find = partial(known.authenticate_in, api_key=call.api_key)
        else:
            find = partial(applications.authenticate_in, ctx, api_key=call.api_key)
        return _verify_fast(ctx, find, username_key(call.username), call.chosen, call.code, call.client)
    application = applications.authenticate(ctx, call.api_key)
    return _verify_slow(ctx, application, call.username, call.code, call.chosen, call.client)


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
    assert all(call.is_fast for call in calls), "slow methods (argon2id) never hold a shared write lock"
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


def _verify_slow(
    ctx: ServiceContext, application: Application, username: str, code: str, chosen: Method, client: ClientInfo
) -> VerifyResult:
    """A slow method (a recovery code's argon2id), through the engine's turn: whoever has the name, the same
    statements run and one argon2id is computed."""
    key = username_key(username)
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key) if key else None
    attempt = second_step.Attempt(Purpose.VERIFY, client, {"app": application.name})
    step = _Answer(ctx, application, client)
    unknown = throttling.unknown_name_key(ctx, key)
    try:
        outcome = second_step.prove_by_name(
            ctx, attempt, user=user, unknown_key=unknown, method=chosen, code=code, step=step
        )
    except VerificationLocked as locked:
        return VerifyResult(ok=False, method=chosen, error=locked)
    return _answered(outcome, chosen)


def _verify_fast(
    ctx: ServiceContext,
    application_in: Callable[[UnitOfWork], Application],
    key: str | None,
    chosen: Method,
    code: str,
    client: ClientInfo,
) -> VerifyResult:
    """A fast method (an authenticator code) in ONE transaction: the application's key, then the name's second
    step read and locked in one statement (``lock_for_second_step``), then the engine checks, spends, counts and
    audits in the same transaction.

    An unknown name and a user without an authenticator take this path too and do the same work as a wrong code
    of a user with one (issue 14: the time of the answer told who has 2FA): the same statements (the read returns
    stand-in values), an unseal and the same HMACs on a stand-in authenticator, the same writes."""
    with ctx.uow() as uow:
        application = application_in(uow)
        unknown = throttling.unknown_name_key(ctx, key)
        found = uow.users.lock_for_second_step(key, unknown)
        attempt = second_step.Attempt(Purpose.VERIFY, client, {"app": application.name})
        step = _Answer(ctx, application, client)
        try:
            outcome = second_step.prove_locked(
                ctx,
                uow,
                attempt,
                found=found,
                method=chosen,
                code=code,
                step=step,
                unknown_key=unknown,
                backoff_read=True,
            )
        except VerificationLocked as locked:
            return VerifyResult(ok=False, method=chosen, error=locked)
    return _answered(outcome, chosen)


def _answered(outcome: VerifyResult | second_step.Refused, chosen: Method) -> VerifyResult:
    if isinstance(outcome, second_step.Refused):
        return VerifyResult(ok=False, method=chosen, error=outcome.error)
    return outcome


class _Answer:
    """The verify API's pass: nothing to claim or open, an answer audited with the application's name."""

    def __init__(self, ctx: ServiceContext, application: Application, client: ClientInfo) -> None:
        self._ctx = ctx
        self._application = application
        self._client = client

    def claim(self, uow: UnitOfWork) -> NidanError | None:
        return None

    def passed(self, uow: UnitOfWork, user: User, result: FactorCheck) -> VerifyResult:
        app: dict[str, Detail] = {"app": self._application.name}
        if user.disabled:
            # Read in the same one-row statement as the rest of the name's second step (no statement more), and
            # told only once the code was right: every name does the same work up to here.
            details: dict[str, Detail] = {"method": result.method.value, "reason": AccountDisabled.code, **app}
            event = EventType.VERIFY_FAILED
            audit.record(self._ctx, uow, event, client=self._client, actor=None, subject=user, details=details)
            return VerifyResult(ok=False, method=result.method, error=AccountDisabled())
        second_step.record_success(self._ctx, uow, user, result, EventType.VERIFY_SUCCEEDED, self._client, app)
        return VerifyResult(ok=True, method=result.method, username=user.username)
