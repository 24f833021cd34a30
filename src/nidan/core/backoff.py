"""Exponential backoff after consecutive failures (the Atlassian Data Center rule), as pure decisions.

With ``T`` tolerated failures, the K-th consecutive failure with K > T blocks for 2^(K-T-1) seconds, capped: with
T=1 two failures block for 1 s, a third (made after the block) for 2 s, then 4, 8, ... A request made while blocked
is refused before it is evaluated and changes nothing. A success resets the count. At the hard limit (NIST SP
800-63B) the subject stays refused until an administrator clears it.

A failure is counted *before* the attempt is evaluated (a reservation): so concurrent attempts cannot slip past the
count, and no lock is held while a password hash is computed. A success then resets the count.
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


@dataclass(frozen=True, slots=True)
class Blocked:
    retry_after_seconds: int
    blocked_until: datetime


@dataclass(frozen=True, slots=True)
class Locked:
    locked_at: datetime


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
    failures = state.failures + 1
    seconds = block_seconds(failures, policy)
    locked = policy.hard_limit is not None and failures >= policy.hard_limit
    return replace(
        state,
        failures=failures,
        blocked_until=now + timedelta(seconds=seconds) if seconds else None,
        locked_at=now if locked else None,
    )
