"""Backoff around every verification: who is counted, the up-front reservation, and an admin's clearing.

A failure is reserved (counted) in its own short transaction *before* the attempt is evaluated, by compare-and-set,
so that concurrent attempts each see the others' count and no lock is held while a password hash is computed. The
evaluating transaction then resets the count on success. Several processes share the state through the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from nidan.core import backoff
from nidan.core.audit import Detail, EventType
from nidan.core.backoff import BackoffPolicy, ThrottleState
from nidan.core.models import ClientInfo, ThrottleScope, User
from nidan.core.policy import combined, tolerance_in_force
from nidan.core.ports import UnitOfWork
from nidan.core.usernames import username_key
from nidan.errors import RateLimited, VerificationLocked
from nidan.services import accounts, audit, authority
from nidan.services.context import ServiceContext

#: Compare-and-set rounds before giving up under extreme contention (answered as a 1 s block, never as a pass).
MAX_ROUNDS = 64
#: Stands for a client whose address is unknown (tests, local calls), so it still shares one counter.
UNKNOWN_ADDRESS = "unknown"


@dataclass(frozen=True, slots=True)
class Subject:
    scope: ThrottleScope
    key: str
    policy: BackoffPolicy


@dataclass(frozen=True, slots=True)
class Reservation:
    """The states once this attempt's provisional failure was counted."""

    counted: tuple[tuple[Subject, ThrottleState], ...]

    def escalations(self) -> list[tuple[Subject, ThrottleState]]:
        """Subjects this failure blocks or locks (for the audit log; a block is logged once, not per refusal)."""
        return [(s, st) for s, st in self.counted if st.blocked_until is not None or st.locked_at is not None]


def second_factor(ctx: ServiceContext, user_id: int, tolerated_failures: int | None = None) -> Subject:
    """A user's second step; ``tolerated_failures`` when their organisations set a count."""
    policy = ctx.backoff
    in_force = tolerance_in_force(tolerated_failures, policy.tolerated_failures)
    if in_force != policy.tolerated_failures:
        policy = replace(policy, tolerated_failures=in_force)
    return Subject(ThrottleScope.SECOND_FACTOR, str(user_id), policy)


def second_factor_of(ctx: ServiceContext, uow: UnitOfWork, user_id: int) -> Subject:
    """``second_factor`` with the tolerance the user's organisations set, read in ``uow``."""
    return second_factor(ctx, user_id, combined(uow.organisations.policies_of(user_id)).tolerated_failures)


def password_subjects(ctx: ServiceContext, login_key: str, ip: str | None) -> list[Subject]:
    """A username from one address, and the address itself (many people may share one: it tolerates more)."""
    address = ip or UNKNOWN_ADDRESS
    return [
        Subject(ThrottleScope.PASSWORD, f"{login_key}|{address}", ctx.password_backoff),
        Subject(ThrottleScope.PASSWORD_FROM_IP, address, ctx.address_backoff),
    ]


def gate_subjects(ctx: ServiceContext, login_key: str, ip: str | None) -> list[Subject]:
    """Like ``password_subjects``, counted apart: what Git clients do on their own never blocks web sign-in."""
    address = ip or UNKNOWN_ADDRESS
    return [
        Subject(ThrottleScope.GATE, f"{login_key}|{address}", ctx.password_backoff),
        Subject(ThrottleScope.GATE_FROM_IP, address, ctx.address_backoff),
    ]


def _refuse(why: backoff.Blocked | backoff.Locked) -> None:
    if isinstance(why, backoff.Locked):
        raise VerificationLocked()
    raise RateLimited(why.retry_after_seconds)


def reserve(ctx: ServiceContext, subjects: Sequence[Subject]) -> Reservation:
    """Count one failure for every subject at once, or refuse (429 / locked) without counting anything."""
    for _ in range(MAX_ROUNDS):
        now = ctx.clock.now()
        with ctx.uow() as uow:
            counted: list[tuple[Subject, ThrottleState]] = []
            for subject in subjects:
                current = uow.throttles.get(subject.scope, subject.key) or ThrottleState()
                why = backoff.refusal(current, now)
                if why is not None:
                    _refuse(why)
                after = backoff.after_failure(current, now, subject.policy)
                if not uow.throttles.compare_and_set(subject.scope, subject.key, current, after, now):
                    break  # another request counted first: read again
                counted.append((subject, after))
            else:
                uow.commit()
                return Reservation(tuple(counted))
    raise RateLimited(1)


def refuse_if_blocked(uow: UnitOfWork, subject: Subject, now: datetime) -> ThrottleState:
    """The subject's state, read in ``uow``; ``RateLimited`` or ``VerificationLocked`` while it is refused."""
    return refuse_while_blocked(uow.throttles.get(subject.scope, subject.key), now)


def refuse_while_blocked(state: ThrottleState | None, now: datetime) -> ThrottleState:
    """``refuse_if_blocked`` for a state read already (``None``: never counted)."""
    current = state or ThrottleState()
    why = backoff.refusal(current, now)
    if why is not None:
        _refuse(why)
    return current


def count_under_lock(ctx: ServiceContext, uow: UnitOfWork, subject: Subject) -> Reservation:
    """Count one failure in ``uow``, for a caller that holds the lock serialising the subject's cheap checks (the
    user's row), so no reservation beforehand is needed. Paths that reserve instead do not take that lock: a
    compare-and-set that lost to one of them reads again."""
    for _ in range(MAX_ROUNDS):
        now = ctx.clock.now()
        current = uow.throttles.get(subject.scope, subject.key) or ThrottleState()
        after = backoff.after_failure(current, now, subject.policy)
        if uow.throttles.compare_and_set(subject.scope, subject.key, current, after, now):
            return Reservation(((subject, after),))
    raise RateLimited(1)


def record_escalations(
    ctx: ServiceContext, uow: UnitOfWork, reservation: Reservation, client: ClientInfo, subject: User | None
) -> None:
    """After a failed attempt: log each block or lock it earned, once (refused requests are not logged)."""
    for counted, state in reservation.escalations():
        locked = state.locked_at is not None
        details: dict[str, Detail] = {"scope": counted.scope.value, "failures": state.failures}
        if state.blocked_until is not None and not locked:
            details["blocked_seconds"] = backoff.block_seconds(state.failures, counted.policy)
        kind = EventType.BACKOFF_LOCKED if locked else EventType.BACKOFF_BLOCKED
        audit.record(ctx, uow, kind, client=client, actor=None, subject=subject, details=details)


def settle_success(ctx: ServiceContext, uow: UnitOfWork, subjects: Sequence[Subject]) -> None:
    """In the successful attempt's transaction: the provisional failure and all before it are forgotten."""
    now = ctx.clock.now()
    for subject in subjects:
        uow.throttles.reset(subject.scope, subject.key, now)


@dataclass(frozen=True, slots=True)
class BlockStatus:
    user: User
    second_factor: ThrottleState
    #: Password counters for this username, one per client address.
    passwords: list[tuple[str, ThrottleState]]
    #: The HTTP Basic gate's counters for this username (Git clients), one per client address.
    gate: list[tuple[str, ThrottleState]] = field(default_factory=list)


def status(ctx: ServiceContext, username: str) -> BlockStatus:
    """What an administrator sees: the user's second-step counter and their password counters per address."""
    user = accounts.find_user(ctx, username)
    key = username_key(user.username) or ""
    with ctx.uow() as uow:
        second = uow.throttles.get(ThrottleScope.SECOND_FACTOR, str(user.id)) or ThrottleState()
        passwords = [
            (stored_key.split("|", 1)[1], state)
            for stored_key, state in uow.throttles.list_with_prefix(ThrottleScope.PASSWORD, f"{key}|")
        ]
        gate = [
            (stored_key.split("|", 1)[1], state)
            for stored_key, state in uow.throttles.list_with_prefix(ThrottleScope.GATE, f"{key}|")
        ]
    return BlockStatus(user, second, passwords, gate)


def reset_all(ctx: ServiceContext, uow: UnitOfWork, user: User) -> int:
    """Every counter of the user in ``uow``: second step; passwords and the gate's, from any address."""
    key = username_key(user.username) or ""
    now = ctx.clock.now()
    cleared = uow.throttles.reset(ThrottleScope.SECOND_FACTOR, str(user.id), now)
    for scope in (ThrottleScope.PASSWORD, ThrottleScope.GATE):
        cleared += uow.throttles.reset_with_prefix(scope, f"{key}|", now)
    return cleared


def clear(
    ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None = None
) -> int:
    """An administrator lifts every block of a user (second step, their passwords and Git clients' attempts from
    any address), after checking it is really them; audited with the reason. Returns how many counters were
    cleared."""
    reason = audit.checked_reason(reason)
    user = accounts.find_user(ctx, username)
    with ctx.uow() as uow:
        authority.require_user_manager(uow, actor, user)
        cleared = reset_all(ctx, uow, user)
        details: dict[str, Detail] = {"counters": cleared, "reason": reason}
        audit.record(ctx, uow, EventType.BACKOFF_CLEARED, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return cleared
