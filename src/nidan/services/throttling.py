"""Backoff around every verification: who is counted, the reservation before evaluating, and an admin's clearing.

No lock is held while an attempt is evaluated (a password hash takes tens of milliseconds); several processes share
the state through the database, changed by compare-and-set. Two ways to reserve (see ``nidan.core.backoff``):

- ``take_turn`` (passwords at sign-in and at the Basic gate): the attempt is counted as *in flight*, not as a failure;
  its transaction then settles it (``settle_success``, or ``record_escalations`` counting the failure). Only settled
  failures refuse; a newcomer that the attempts in flight could push past the budget waits for them. So correct
  passwords sent together all pass, and of wrong ones sent together exactly the tolerated number plus one are
  evaluated.
- ``reserve`` (the second step): a failure counted up front, which a success resets.

Usernames are never stored as typed: the per-username keys are a keyed hash of the normalised name (``name_key``).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from nidan.core import backoff
from nidan.core.audit import Detail, EventType
from nidan.core.backoff import BackoffPolicy, ThrottleState
from nidan.core.models import ClientInfo, ThrottleScope, User
from nidan.core.passwords import Pause
from nidan.core.policy import combined, tolerance_in_force
from nidan.core.ports import UnitOfWork
from nidan.core.usernames import username_key
from nidan.errors import RateLimited, VerificationLocked
from nidan.services import accounts, audit, authority
from nidan.services.context import ServiceContext

log = logging.getLogger(__name__)
#: ``_try_turn``'s answer when a compare-and-set lost to another request.
_LOST = object()

#: Compare-and-set rounds before giving up under extreme contention (answered as a 1 s block, never as a pass).
MAX_ROUNDS = 64
#: Stands for a client whose address is unknown (tests, local calls), so it still shares one counter.
UNKNOWN_ADDRESS = "unknown"
#: Separates a username's keyed hash from every token's (see ``ServiceContext.hash_token``).
NAME_PURPOSE = "throttle_name"
#: How long a reservation stands for an attempt being evaluated; one older than this was abandoned (its process
#: died) and counts as a failure. Far longer than an argon2 check waiting for a hashing thread under load.
RESERVATION_LEASE = timedelta(seconds=60)
#: While the attempts in flight settle, a waiting attempt looks again this often ...
TURN_POLL_SECONDS = 0.02
#: ... this many times (10 s) before it is answered as blocked for a second (the others are stuck, not slow).
MAX_TURN_POLLS = 500


@dataclass(frozen=True, slots=True)
class Subject:
    scope: ThrottleScope
    key: str
    policy: BackoffPolicy
    #: Counts everyone's failures (an address): a success forgives only the failures of the one who succeeded,
    #: never the others' (or a sprayer with one account of their own could clear it between guesses).
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Reservation:
    """The states once this attempt was reserved: its provisional failure counted (``reserve``, ``pending`` false),
    or its turn taken (``take_turn``, ``pending`` true: settled later as a success or a failure)."""

    counted: tuple[tuple[Subject, ThrottleState], ...]
    pending: bool = False

    @property
    def subjects(self) -> list[Subject]:
        return [subject for subject, _ in self.counted]

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


def name_key(ctx: ServiceContext, login_key: str) -> str:
    """A normalised username as the backoff stores it: its keyed hash (HMAC-SHA-256 under the hashing key, as
    tokens), in hex. What people type there is sometimes their password; the address beside it stays readable,
    because administrators need it."""
    return ctx.hash_token(login_key, NAME_PURPOSE).hex()


#: Throttle key for a username that cannot exist: such attempts still count per address, under one name.
INVALID_USERNAME_KEY = "~invalid"


def unknown_name_key(ctx: ServiceContext, login_key: str | None) -> str:
    """The second-step backoff key of a name nobody has: its keyed hash, never the name as typed. Not a number, so
    it never meets a real user's counter."""
    return f"~{name_key(ctx, login_key or INVALID_USERNAME_KEY)}"


def unknown_name(ctx: ServiceContext, stored_key: str) -> Subject:
    """The second step of a name nobody has (``unknown_name_key``), under the instance's tolerance."""
    return Subject(ThrottleScope.SECOND_FACTOR, stored_key, ctx.backoff)


def password_subjects(ctx: ServiceContext, login_key: str, ip: str | None) -> list[Subject]:
    """A username from one address, and the address itself (many people may share one: it tolerates more)."""
    address = ip or UNKNOWN_ADDRESS
    return [
        Subject(ThrottleScope.PASSWORD, f"{name_key(ctx, login_key)}|{address}", ctx.password_backoff),
        Subject(ThrottleScope.PASSWORD_FROM_IP, address, ctx.address_backoff, shared=True),
    ]


def gate_subjects(ctx: ServiceContext, login_key: str, ip: str | None) -> list[Subject]:
    """Like ``password_subjects``, counted apart: what Git clients do on their own never blocks web sign-in."""
    address = ip or UNKNOWN_ADDRESS
    return [
        Subject(ThrottleScope.GATE, f"{name_key(ctx, login_key)}|{address}", ctx.password_backoff),
        Subject(ThrottleScope.GATE_FROM_IP, address, ctx.address_backoff, shared=True),
    ]


def _refuse(why: backoff.Blocked | backoff.Locked) -> None:
    if isinstance(why, backoff.Locked):
        raise VerificationLocked()
    raise RateLimited(why.retry_after_seconds)


def _current(uow: UnitOfWork, subject: Subject, now: datetime) -> ThrottleState:
    """The subject's state, abandoned reservations counted as the failures they stand for."""
    stored = uow.throttles.get(subject.scope, subject.key) or ThrottleState()
    return backoff.expire_reservations(stored, now, subject.policy)


def take_turn(ctx: ServiceContext, subjects: Sequence[Subject]) -> Generator[Pause, object, Reservation]:
    """Reserve one attempt's evaluation for every subject at once, or refuse (429 / locked) without reserving
    anything; while the attempts in flight could block a subject, yield ``Pause`` and look again. The caller settles
    the turn in its evaluating transaction: ``settle_success`` or ``record_escalations`` (or ``abandon``)."""
    polls = lost = 0
    while True:
        turn = _try_turn(ctx, subjects)
        if isinstance(turn, Reservation):
            return turn
        if turn is _LOST and lost < MAX_ROUNDS:
            lost += 1  # another request wrote first: read again at once
            continue
        polls, lost = polls + 1, 0
        if polls > MAX_TURN_POLLS:
            raise RateLimited(1)
        yield Pause(TURN_POLL_SECONDS)


def take_turn_now(ctx: ServiceContext, subjects: Sequence[Subject]) -> Reservation:
    """``take_turn`` waiting in this thread (for a caller without an event loop to give it back to)."""
    turn = take_turn(ctx, subjects)
    try:
        pause = next(turn)
        while True:
            time.sleep(pause.seconds)
            pause = turn.send(None)
    except StopIteration as done:
        reservation: Reservation = done.value
        return reservation


def _try_turn(ctx: ServiceContext, subjects: Sequence[Subject]) -> Reservation | backoff.Wait | object:
    """One try of ``take_turn``: the reservation, ``Wait``, or ``_LOST`` when another request wrote first."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        taken: list[tuple[Subject, ThrottleState]] = []
        for subject in subjects:
            current = _current(uow, subject, now)
            why = backoff.admission(current, now, subject.policy)
            if isinstance(why, backoff.Wait):
                return why  # rolled back: nothing of this try is kept
            if why is not None:
                _refuse(why)
            after = backoff.after_reservation(current, now, RESERVATION_LEASE)
            if not uow.throttles.compare_and_set(subject.scope, subject.key, current, after, now):
                return _LOST
            taken.append((subject, after))
        uow.commit()
    return Reservation(tuple(taken), pending=True)


def settle_failure(ctx: ServiceContext, uow: UnitOfWork, reservation: Reservation) -> Reservation:
    """In the failed attempt's transaction: its turn ends and the failure is counted (blocking from now, if it
    blocks). Returns the states as counted (what ``record_escalations`` logs)."""
    if not reservation.pending:
        return reservation  # counted up front already
    counted: list[tuple[Subject, ThrottleState]] = []
    for subject in reservation.subjects:
        for _ in range(MAX_ROUNDS):
            now = ctx.clock.now()
            current = uow.throttles.get(subject.scope, subject.key) or ThrottleState()
            after = backoff.after_settled_failure(current, now, subject.policy)
            if uow.throttles.compare_and_set(subject.scope, subject.key, current, after, now):
                counted.append((subject, after))
                break
        else:
            raise RateLimited(1)
    return Reservation(tuple(counted))


def abandon(ctx: ServiceContext, reservation: Reservation) -> None:
    """An attempt that will not be settled (an error, a client gone): its turn ends as a failure, as counting first
    would have had it, so that breaking off an attempt is no free guess. Best effort: if the database is not there
    either, the reservation's lease runs out and counts it the same way."""
    try:
        with ctx.uow() as uow:
            settle_failure(ctx, uow, reservation)
            uow.commit()
    except Exception:  # the caller's own error is the one to raise
        log.warning("an abandoned sign-in attempt is left to its lease", exc_info=True)


def reserve(ctx: ServiceContext, subjects: Sequence[Subject]) -> Reservation:
    """Count one failure for every subject at once, or refuse (429 / locked) without counting anything."""
    for _ in range(MAX_ROUNDS):
        now = ctx.clock.now()
        with ctx.uow() as uow:
            counted: list[tuple[Subject, ThrottleState]] = []
            for subject in subjects:
                current = _current(uow, subject, now)
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
) -> Reservation:
    """After a failed attempt: count it if only its turn was taken (``settle_failure``), and log each block or lock
    it earned, once (refused requests are not logged). Returns the states as counted."""
    settled = settle_failure(ctx, uow, reservation)
    for counted, state in settled.escalations():
        locked = state.locked_at is not None
        details: dict[str, Detail] = {"scope": counted.scope.value, "failures": state.failures}
        if state.blocked_until is not None and not locked:
            details["blocked_seconds"] = backoff.block_seconds(state.failures, counted.policy)
        kind = EventType.BACKOFF_LOCKED if locked else EventType.BACKOFF_BLOCKED
        audit.record(ctx, uow, kind, client=client, actor=None, subject=subject, details=details)
    return settled


@dataclass(frozen=True, slots=True)
class Outlook:
    """What a person who just failed should know: how long this failure blocks them for (0: it does not), or
    whether one more failure would."""

    blocked_seconds: int = 0
    next_failure_blocks: bool = False


def outlook(counted: Reservation, now: datetime) -> Outlook:
    """``Outlook`` after the failure ``counted`` (as ``record_escalations`` returns it)."""
    blocked, next_blocks = 0, False
    for subject, state in counted.counted:
        if state.blocked_until is not None and state.blocked_until > now:
            blocked = max(blocked, math.ceil((state.blocked_until - now).total_seconds()))
        elif state.locked_at is None:
            limit = subject.policy.hard_limit
            one_more = state.failures + 1
            next_blocks |= bool(backoff.block_seconds(one_more, subject.policy)) or (
                limit is not None and one_more >= limit
            )
    return Outlook(blocked, next_blocks and not blocked)


def settle_success(ctx: ServiceContext, uow: UnitOfWork, settled: Sequence[Subject] | Reservation) -> None:
    """In the successful attempt's transaction: the provisional failure and all before it are forgotten, and a turn
    taken with ``take_turn`` ends. A shared subject (an address) forgives only the failures of the attempt's own
    subjects (this username from this address), counted before they are reset."""
    now = ctx.clock.now()
    releasing = isinstance(settled, Reservation) and settled.pending
    subjects = settled.subjects if isinstance(settled, Reservation) else settled
    own = [subject for subject in subjects if not subject.shared]
    forgiven = sum((uow.throttles.get(s.scope, s.key) or ThrottleState()).failures for s in own)
    for subject in own:
        uow.throttles.reset(subject.scope, subject.key, now, releasing=releasing)
    for subject in subjects:
        if subject.shared:
            _forgive(ctx, uow, subject, forgiven, releasing=releasing)


def _forgive(ctx: ServiceContext, uow: UnitOfWork, subject: Subject, forgiven: int, *, releasing: bool) -> None:
    for _ in range(MAX_ROUNDS):
        now = ctx.clock.now()
        current = uow.throttles.get(subject.scope, subject.key) or ThrottleState()
        after = backoff.after_forgiving(current, forgiven, subject.policy)
        if not releasing:
            after = replace(after, pending=current.pending, pending_until=current.pending_until)
        if after == current or uow.throttles.compare_and_set(subject.scope, subject.key, current, after, now):
            return
    raise RateLimited(1)


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
    key = name_key(ctx, username_key(user.username) or "")
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
    key = name_key(ctx, username_key(user.username) or "")
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
