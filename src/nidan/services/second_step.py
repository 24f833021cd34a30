"""The second-step engine: the one place a second factor is checked, for sign-in, step-up and the verify API.

"Check a second factor under backoff, spend it once, record it" is written here once; a method is a plug-in
(``core/second_step.MethodPlugin``, registered in ``services/methods``) and the caller a ``Step`` that says what
claiming the attempt and passing it mean for its purpose (a sign-in spends its token and opens a session, a step-up
replaces its session, the verify API answers). In the order it runs:

1. Policy: a method the user's organisations forbid is refused (``method_not_allowed``) before anything counts.
2. Backoff: while the user (or, at the verify API, the name) is blocked, 429 or ``VerificationLocked`` before
   anything is evaluated or claimed.
3. The check. A fast method (TOTP: microseconds) runs in ONE transaction under the user's row lock, which
   serialises the user's checks, so the failure is counted in that transaction. A slow one (an argon2id) takes the
   backoff's turn first (``throttling.take_turn``: correct attempts made together all pass, wrong ones are counted
   exactly), is prepared with no transaction open, and only spent in the write — never slow work while SQLite's
   writer turn or a row lock is held.
4. The claim (a sign-in's token still allows an attempt), the check and spend (conditional writes: of attempts
   racing with one code exactly one passes), the clock observation of a wrong code, the audit event, the counter
   reset or counted — one transaction, committed before the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, ClockObservation, Method, User
from nidan.core.policy import REQUIRED_METHODS, combined
from nidan.core.ports import SecondStep, UnitOfWork
from nidan.core.second_step import FactorCheck, MethodPlugin, Option, Purpose
from nidan.errors import InvalidCode, InvalidInput, MethodNotAllowed, MethodNotAvailable, NidanError
from nidan.services import audit, throttling
from nidan.services.context import ServiceContext
from nidan.services.methods import PLUGINS
from nidan.texts import _

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_FAILED = {
    Purpose.SIGN_IN: EventType.SIGN_IN_SECOND_FACTOR_FAILED,
    Purpose.STEP_UP: EventType.STEP_UP_FAILED,
    Purpose.VERIFY: EventType.VERIFY_FAILED,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """Who tries, from where, for what: the engine's audit events and observations are named by it."""

    purpose: Purpose
    client: ClientInfo
    #: Added to each audit event of the attempt (e.g. which application asked).
    details: Mapping[str, Detail] = field(default_factory=dict)


class Step(Protocol[T_co]):
    """What claiming and passing an attempt mean for the caller's purpose, inside the engine's write."""

    def claim(self, uow: UnitOfWork) -> NidanError | None:
        """Whether this attempt may be evaluated (a sign-in token's tries): ``None``, or the refusal to answer (the
        attempt still counts as a failure: a spent token is no free guess)."""
        ...

    def passed(self, uow: UnitOfWork, user: User, result: FactorCheck) -> T_co:
        """The factor was right and is spent: do what it was for in ``uow`` (not committed yet) and audit it
        (``record_success``); raising rolls everything back, the code's spending too."""
        ...


@dataclass(frozen=True, slots=True)
class Refused:
    """An attempt evaluated and refused: counted, audited and committed. ``error`` is the answer to give."""

    error: NidanError
    result: FactorCheck | None = None


class Recorded:
    """A step with nothing to claim or open: a pass is audited as ``event`` (an administrator confirming an
    action with their own code)."""

    def __init__(self, ctx: ServiceContext, event: EventType, client: ClientInfo) -> None:
        self._ctx = ctx
        self._event = event
        self._client = client

    def claim(self, uow: UnitOfWork) -> NidanError | None:
        return None

    def passed(self, uow: UnitOfWork, user: User, result: FactorCheck) -> None:
        record_success(self._ctx, uow, user, result, self._event, self._client)


def plugin(method: Method) -> MethodPlugin[ServiceContext]:
    return PLUGINS[method]


def allowed(uow: UnitOfWork, user_id: int) -> frozenset[Method]:
    """The methods every one of the user's organisations allows."""
    return combined(uow.organisations.policies_of(user_id)).allowed_methods


def options(ctx: ServiceContext, uow: UnitOfWork, user: User) -> list[Option]:
    """Everything the user can prove the second step with now, their default method first: what they set up and
    their organisations allow; a fallback (recovery codes) only beside a method that is not one."""
    permitted = allowed(uow, user.id)
    found = [option for method, p in PLUGINS.items() if method in permitted for option in p.options(ctx, uow, user)]
    if not any(not PLUGINS[o.method].backup for o in found):
        return []
    preferred = default_method([o.method for o in found], user.default_method)
    return sorted(found, key=lambda o: o.method != preferred)  # stable: the rest keep the plug-ins' order


def has_second_factor(ctx: ServiceContext, uow: UnitOfWork, user: User) -> bool:
    """Whether the user has set up a second step (a method that is not a fallback), allowed or not."""
    return any(p.options(ctx, uow, user) for p in PLUGINS.values() if not p.backup)


def methods_on_offer(ctx: ServiceContext, uow: UnitOfWork, user: User) -> list[Method]:
    """``options`` by method, each once, the default first."""
    return list(dict.fromkeys(o.method for o in options(ctx, uow, user)))


def default_method(on_offer: list[Method], preferred: str | None) -> Method | None:
    """The user's chosen method when they can use it now, else the first one that is not a fallback."""
    for method in on_offer:
        if method.value == preferred:
            return method
    return next((m for m in on_offer if not PLUGINS[m].backup), None)


def defaultable_methods() -> list[Method]:
    """The methods a person may make their default: every one that is not a fallback."""
    return [method for method, p in PLUGINS.items() if not p.backup]


def choose_default(ctx: ServiceContext, user: User, method: Method, client: ClientInfo) -> User:
    """The method a sign-in offers ``user`` first from now on: one they can use now and not a fallback."""
    if PLUGINS[method].backup:
        raise InvalidInput(
            _(
                "A recovery code is a fallback for when your usual method is not at hand; choose your "
                "authenticator app or another method you set up as the default."
            )
        )
    with ctx.uow() as uow:
        if method not in allowed(uow, user.id):
            raise MethodNotAllowed()
        if method not in methods_on_offer(ctx, uow, user):
            raise MethodNotAvailable()
        uow.users.set_default_method(user.id, method.value)
        chosen: dict[str, Detail] = {"method": method.value}
        audit.record(
            ctx, uow, EventType.DEFAULT_METHOD_CHANGED, client=client, actor=user, subject=user, details=chosen
        )
        uow.commit()
    return replace(user, default_method=method.value)


def prove(
    ctx: ServiceContext, attempt: Attempt, *, user_id: int, method: Method, code: str, step: Step[T]
) -> T | Refused:
    """Prove ``user_id``'s second step with ``code`` by ``method`` for ``step``. Raises ``RateLimited`` or
    ``VerificationLocked`` while blocked and ``MethodNotAllowed`` for a method policy forbids (nothing counted);
    answers ``Refused`` for an attempt evaluated and refused."""
    chosen = plugin(method)
    if not chosen.slow:
        with ctx.uow() as uow:
            uow.users.lock(user_id)
            found = SecondStep(uow.users.get(user_id), uow.totp.get_active(user_id), None)
            return prove_locked(ctx, uow, attempt, found=found, method=method, code=code, step=step)
    with ctx.uow() as uow:
        user = uow.users.get(user_id)
        if user is not None:
            _refuse_forbidden(uow, user.id, method)
        subject = _subject(ctx, uow, attempt, user, None)
    return _prove_slow(ctx, attempt, chosen, subject, lambda uow: _found(uow, user_id), code, step)


def prove_by_name(
    ctx: ServiceContext,
    attempt: Attempt,
    *,
    user: User | None,
    unknown_key: str,
    method: Method,
    code: str,
    step: Step[T],
) -> T | Refused:
    """``prove`` for a slow method at the verify API, where ``user`` may be ``None`` (nobody has the name, counted
    under ``unknown_key``): the same statements and one argon2id either way."""
    chosen = plugin(method)
    with ctx.uow() as uow:
        subject = _subject(ctx, uow, attempt, user, unknown_key)
    user_id = user.id if user is not None else None
    return _prove_slow(ctx, attempt, chosen, subject, lambda uow: _found(uow, user_id), code, step)


def prove_locked(
    ctx: ServiceContext,
    uow: UnitOfWork,
    attempt: Attempt,
    *,
    found: SecondStep,
    method: Method,
    code: str,
    step: Step[T],
    unknown_key: str | None = None,
    backoff_read: bool = False,
) -> T | Refused:
    """A fast method in ``uow``, whose caller has locked the user's row (or SQLite's writer turn) and read
    ``found`` (with ``backoff_read``, ``found.backoff`` was read with it and ``None`` means never counted; else it
    is read here); ``found.user`` is ``None`` for a name nobody has (counted under ``unknown_key``). Commits before
    answering."""
    chosen = plugin(method)
    user = found.user
    if user is not None and method not in REQUIRED_METHODS:
        _refuse_forbidden(uow, user.id, method)
    subject = _subject(ctx, uow, attempt, user, unknown_key)
    # The verify API reads the backoff with the user (``backoff_read``: ``None`` there means never counted); a
    # statement more per call would cost its throughput a few per cent.
    read = backoff_read or found.backoff is not None
    state = found.backoff if read else uow.throttles.get(subject.scope, subject.key)
    before = throttling.refuse_while_blocked(state, ctx.clock.now())

    def count() -> throttling.Reservation:
        return throttling.count_under_lock(ctx, uow, subject)

    refusal = step.claim(uow)
    if refusal is not None or user is None:
        if user is None:
            chosen.simulate(ctx, code)
        return _refuse(ctx, uow, attempt, user, method, refusal or InvalidCode(), count(), known=user is not None)
    result = chosen.check(ctx, uow, found, code, None)
    if result is None:
        return _refuse(ctx, uow, attempt, user, method, _not_set_up(attempt), count(), available=False)
    if not result.ok:
        return _refuse(ctx, uow, attempt, user, method, InvalidCode(), count(), result=result)
    if before.failures:  # earlier failures: this success resets them
        throttling.settle_success(ctx, uow, [subject])
    value = step.passed(uow, user, result)
    uow.commit()
    return value


def _prove_slow(
    ctx: ServiceContext,
    attempt: Attempt,
    chosen: MethodPlugin[ServiceContext],
    subject: throttling.Subject,
    find: Callable[[UnitOfWork], SecondStep],
    code: str,
    step: Step[T],
) -> T | Refused:
    """A slow method: the backoff's turn, the work with no transaction open, then one write that settles it."""
    turn = throttling.take_turn_now(ctx, [subject])
    settled = False
    try:
        with ctx.uow() as uow:
            found = find(uow)  # read before the hash, in a transaction of its own (none is open while it runs)
        prepared = chosen.prepare(ctx, found.user.id if found.user is not None else None, code)
        with ctx.uow() as uow:
            user = found.user
            refusal = step.claim(uow)
            if refusal is not None or user is None:
                refused = _refuse(
                    ctx, uow, attempt, user, chosen.method, refusal or InvalidCode(), turn, known=user is not None
                )
            else:
                result = chosen.check(ctx, uow, found, code, prepared)
                if result is None:
                    refused = _refuse(
                        ctx, uow, attempt, user, chosen.method, _not_set_up(attempt), turn, available=False
                    )
                elif not result.ok:
                    refused = _refuse(ctx, uow, attempt, user, chosen.method, InvalidCode(), turn, result=result)
                else:
                    throttling.settle_success(ctx, uow, turn)
                    value = step.passed(uow, user, result)
                    uow.commit()
                    settled = True
                    return value
            settled = True
            return refused
    except BaseException:
        if not settled:
            throttling.abandon(ctx, turn)
        raise


#: No user has this id (they count from 1).
_NOBODY = 0


def _found(uow: UnitOfWork, user_id: int | None) -> SecondStep:
    """The user and their authenticator; for a name nobody has (``None``), the same statements, finding nothing."""
    looked_up = user_id if user_id is not None else _NOBODY
    return SecondStep(uow.users.get(looked_up), uow.totp.get_active(looked_up), None)


def _subject(
    ctx: ServiceContext, uow: UnitOfWork, attempt: Attempt, user: User | None, unknown_key: str | None
) -> throttling.Subject:
    if user is None:
        return throttling.unknown_name(ctx, unknown_key or "")
    if attempt.purpose is Purpose.VERIFY:
        # The instance's tolerance for everyone at the verify API, not an organisation's stricter one: unknown
        # names have no organisation, and an earlier 429 for real users would tell who exists.
        return throttling.second_factor(ctx, user.id)
    return throttling.second_factor_of(ctx, uow, user.id)


def _not_set_up(attempt: Attempt) -> NidanError:
    """A method the user has not set up: said so to the person signing in, who knows what they set up; to an
    application the answer of a wrong code, which tells nothing of who has what."""
    return InvalidCode() if attempt.purpose is Purpose.VERIFY else MethodNotAvailable()


def _refuse_forbidden(uow: UnitOfWork, user_id: int, method: Method) -> None:
    if method not in allowed(uow, user_id):
        raise MethodNotAllowed()


def _refuse(
    ctx: ServiceContext,
    uow: UnitOfWork,
    attempt: Attempt,
    user: User | None,
    method: Method,
    error: NidanError,
    counted: throttling.Reservation,
    *,
    result: FactorCheck | None = None,
    known: bool = True,
    available: bool = True,
) -> Refused:
    """A refused attempt, counted (escalations logged), observed and audited; committed. A wrong code is answered
    with what the backoff now holds for the person (``throttling.outlook``)."""
    settled = throttling.record_escalations(ctx, uow, counted, attempt.client, user)
    if not isinstance(error, InvalidCode | MethodNotAvailable):  # a claim refused (a spent token): nothing to audit
        uow.commit()
        return Refused(error)
    if isinstance(error, InvalidCode) and attempt.purpose is not Purpose.VERIFY:
        ahead = throttling.outlook(settled, ctx.clock.now())
        error = InvalidCode(blocked_seconds=ahead.blocked_seconds, next_failure_blocks=ahead.next_failure_blocks)
    if result is not None and result.clock_offset_seconds is not None and user is not None:
        observed = ClockObservation(ctx.clock.now(), result.clock_offset_seconds, attempt.purpose.value)
        uow.clock_observations.add(user.id, observed)
    details: dict[str, Detail] = failure_details(result) if result is not None else {"method": method.value}
    if not known or not available:
        details["username_known"] = known
    if not available:
        details["method_available"] = False
    details.update(attempt.details)
    actor = user if attempt.purpose is Purpose.STEP_UP else None
    audit.record(ctx, uow, _FAILED[attempt.purpose], client=attempt.client, actor=actor, subject=user, details=details)
    uow.commit()
    return Refused(error, result)


def failure_details(result: FactorCheck) -> dict[str, Detail]:
    """What the audit log keeps of a failed code: the method and what kind of wrong (never the code)."""
    details: dict[str, Detail] = {"method": result.method.value, "replayed": result.replayed}
    if result.clock_offset_seconds is not None:
        details["clock_offset_seconds"] = result.clock_offset_seconds
    return details


def record_success(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User,
    result: FactorCheck,
    event: EventType,
    client: ClientInfo,
    details: Mapping[str, Detail] | None = None,
) -> None:
    """Audit a passed second step: what its method records of a use (a recovery code's position), then ``event``
    with the method and ``details`` (e.g. which application asked)."""
    plugin(result.method).record_use(ctx, uow, user, result, client, details or {})
    method: dict[str, Detail] = {"method": result.method.value, **(details or {})}
    audit.record(ctx, uow, event, client=client, actor=user, subject=user, details=method)
