"""Exponential backoff after consecutive failures (the Atlassian Data Center rule), as pure decisions.

With ``T`` tolerated failures, the K-th consecutive failure with K > T blocks for 2^(K-T-1) seconds, capped: with
T=1 two failures block for 1 s, a third (made after the block) for 2 s, then 4, 8, ... A request made while blocked
is refused before it is evaluated and changes nothing. A success resets the count. At the hard limit (NIST SP
800-63B) the subject stays refused until an administrator clears it.

Two ways to count, both exact under concurrency, neither holding a lock while a password hash is computed:

- Count first (``after_failure`` before the attempt is evaluated, a success resets it): simplest, but attempts made
  together pay for each other's provisional failures, so correct ones made together are refused too.
- Reserve a turn (``admission``, ``after_reservation``, then ``after_settled_failure`` or ``after_settled_success``):
  an attempt in flight is *pending*, not a failure. Only settled failures refuse (429); when the attempts in flight
  would, if they all failed, block the subject, a newcomer waits for them to settle instead of being evaluated. So
  of N wrong attempts made together exactly T+1 are evaluated, as if they came one by one, while correct ones made
  together all pass (each success frees the turns the others wait for). A reservation whose lease ran out was
  abandoned (its process died mid-evaluation): it counts as a failure, as counting first would have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    tolerated_failures: int = 1
    max_block_seconds: int = 3600
    #: Consecutive failures after which only an administrator can lift the refusal; ``None``: never.
    hard_limit: int | None = 100


@dataclass(frozen=True, slots=True)
class ThrottleState:
    failures: int = 0
    blocked_until: datetime | None = None
    locked_at: datetime | None = None
    #: The storage's compare-and-set token; 0 for a subject never seen.
    version: int = 0
    #: Attempts reserved and being evaluated now (not failures); all abandoned once ``pending_until`` passes.
    pending: int = 0
    pending_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Blocked:
    retry_after_seconds: int
    blocked_until: datetime


@dataclass(frozen=True, slots=True)
class Locked:
    locked_at: datetime


@dataclass(frozen=True, slots=True)
class Wait:
    """Not refused, not yet admitted: the attempts in flight could block the subject; ask again once they settle."""


def block_seconds(failures: int, policy: BackoffPolicy) -> int:
    """How long the ``failures``-th consecutive failure blocks for."""
    excess = failures - policy.tolerated_failures
    if excess <= 0:
        return 0
    # 2^(excess-1) passes every sane cap long before it overflows anything; stop doubling there.
    if excess - 1 >= policy.max_block_seconds.bit_length():
        return policy.max_block_seconds
    return min(1 << (excess - 1), policy.max_block_seconds)


def refusal(state: ThrottleState, now: datetime) -> Blocked | Locked | None:
    """Why an attempt must be refused right now without being evaluated, if it must."""
    if state.locked_at is not None:
        return Locked(state.locked_at)
    if state.blocked_until is not None and state.blocked_until > now:
        seconds = math.ceil((state.blocked_until - now).total_seconds())
        return Blocked(retry_after_seconds=max(1, seconds), blocked_until=state.blocked_until)
    return None


def after_failure(state: ThrottleState, now: datetime, policy: BackoffPolicy) -> ThrottleState:
    """The state once one more consecutive failure is counted (the caller has checked ``refusal`` first)."""
    return _with_failures(state, state.failures + 1, now, policy)


def _with_failures(state: ThrottleState, failures: int, now: datetime, policy: BackoffPolicy) -> ThrottleState:
    # Below the tolerance there is no block to keep; a lock set meanwhile (another settle) is never lifted here.
    seconds = block_seconds(failures, policy)
    locked = policy.hard_limit is not None and failures >= policy.hard_limit
    return replace(
        state,
        failures=failures,
        blocked_until=now + timedelta(seconds=seconds) if seconds else state.blocked_until,
        locked_at=now if locked else state.locked_at,
    )


def in_flight(state: ThrottleState, now: datetime) -> int:
    """The reservations still within their lease."""
    return state.pending if state.pending_until is not None and state.pending_until > now else 0


def expire_reservations(state: ThrottleState, now: datetime, policy: BackoffPolicy) -> ThrottleState:
    """``state`` with reservations past their lease counted as failures: nothing settled them (a process died while
    evaluating), and an attempt is a failure until it proves otherwise, or killing a worker would be free guessing."""
    if state.pending == 0 or in_flight(state, now):
        return state
    counted = _with_failures(state, state.failures + state.pending, now, policy)
    return replace(counted, pending=0, pending_until=None)


def admission(state: ThrottleState, now: datetime, policy: BackoffPolicy) -> Blocked | Locked | Wait | None:
    """Whether an attempt may be evaluated now (``None``), must be refused, or must wait for the attempts in flight.

    ``state`` has had ``expire_reservations`` applied. Settled failures refuse; attempts in flight only make a
    newcomer wait, and only when their failing would block or lock: then evaluating it now could be one guess past
    the budget, while waiting lets it go as soon as one of them succeeds (a success resets the count)."""
    why = refusal(state, now)
    if why is not None:
        return why
    flying = in_flight(state, now)
    if flying == 0:
        return None
    if_all_fail = state.failures + flying
    if block_seconds(if_all_fail, policy) or (policy.hard_limit is not None and if_all_fail >= policy.hard_limit):
        return Wait()
    return None


def after_reservation(state: ThrottleState, now: datetime, lease: timedelta) -> ThrottleState:
    """One more attempt in flight (admitted by ``admission``); the lease covers it and every one before it."""
    return replace(state, pending=in_flight(state, now) + 1, pending_until=now + lease)


def _released(state: ThrottleState) -> ThrottleState:
    # Never below zero: a lease that ran out had the reservation counted already (``expire_reservations``).
    pending = max(state.pending - 1, 0)
    return replace(state, pending=pending, pending_until=state.pending_until if pending else None)


def after_settled_failure(state: ThrottleState, now: datetime, policy: BackoffPolicy) -> ThrottleState:
    """A reserved attempt failed: its turn ends and the failure is counted, the block (if any) starting now."""
    released = _released(state)
    return _with_failures(released, released.failures + 1, now, policy)


def after_forgiving(state: ThrottleState, forgiven: int, policy: BackoffPolicy) -> ThrottleState:
    """A shared counter (an address's) after one person's success: their turn ends and only their own ``forgiven``
    failures are taken off; a block stays while what is left still earns one."""
    released = _released(state)
    failures = max(released.failures - forgiven, 0)
    blocked = released.blocked_until if block_seconds(failures, policy) else None
    return replace(released, failures=failures, blocked_until=blocked)


def after_settled_success(state: ThrottleState) -> ThrottleState:
    """A reserved attempt succeeded: its turn ends and every failure before it is forgotten."""
    return replace(_released(state), failures=0, blocked_until=None, locked_at=None)
