"""The backoff rule as pure decisions, with time passed in: 1 s, 2 s, 4 s ... capped at 3600 s; a hard limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nidan.core.backoff import (
    BackoffPolicy,
    Blocked,
    Locked,
    ThrottleState,
    Wait,
    admission,
    after_failure,
    after_reservation,
    after_settled_failure,
    after_settled_success,
    block_seconds,
    expire_reservations,
    refusal,
)

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(0, 0), (1, 0), (2, 1), (3, 2), (4, 4), (5, 8), (10, 256), (13, 2048), (14, 3600), (15, 3600), (10_000, 3600)],
)
def test_atlassian_sequence_with_one_tolerated_failure(failures: int, seconds: int) -> None:
    assert block_seconds(failures, BackoffPolicy(tolerated_failures=1)) == seconds


@pytest.mark.parametrize(("tolerated", "first_block_at"), [(0, 1), (1, 2), (3, 4), (10, 11)])
def test_tolerated_failures_are_honoured(tolerated: int, first_block_at: int) -> None:
    policy = BackoffPolicy(tolerated_failures=tolerated)
    assert block_seconds(first_block_at - 1, policy) == 0
    assert block_seconds(first_block_at, policy) == 1
    assert block_seconds(first_block_at + 1, policy) == 2


def test_a_custom_cap() -> None:
    assert block_seconds(50, BackoffPolicy(tolerated_failures=1, max_block_seconds=60)) == 60


def test_walking_the_sequence_with_an_injected_clock() -> None:
    policy = BackoffPolicy(tolerated_failures=1)
    state, now, blocks = ThrottleState(), NOW, []
    for _ in range(16):
        assert refusal(state, now) is None
        state = after_failure(state, now, policy)
        wait = (state.blocked_until - now).total_seconds() if state.blocked_until else 0
        blocks.append(int(wait))
        if wait:
            # Still blocked a moment before the end, free at the end: "Retry-After" is the whole seconds left.
            almost = refusal(state, now + timedelta(seconds=wait - 0.5))
            assert isinstance(almost, Blocked) and almost.retry_after_seconds == 1
            now += timedelta(seconds=wait)
    assert blocks == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600, 3600]


def test_retry_after_rounds_up() -> None:
    state = ThrottleState(failures=5, blocked_until=NOW + timedelta(seconds=7, milliseconds=1))
    why = refusal(state, NOW)
    assert isinstance(why, Blocked) and why.retry_after_seconds == 8


def test_a_refused_attempt_changes_nothing() -> None:
    """Refusal is decided before counting: the caller never calls after_failure for it, so nothing doubles."""
    state = after_failure(ThrottleState(failures=1), NOW, BackoffPolicy())
    assert isinstance(refusal(state, NOW), Blocked)
    assert state.failures == 2


def test_hard_limit_locks_until_cleared() -> None:
    policy = BackoffPolicy(tolerated_failures=1, hard_limit=100)
    state = ThrottleState(failures=98)
    state = after_failure(state, NOW, policy)
    assert state.locked_at is None
    state = after_failure(state, NOW, policy)
    assert state.failures == 100 and state.locked_at == NOW
    assert isinstance(refusal(state, NOW + timedelta(days=365)), Locked)


def test_no_hard_limit_never_locks() -> None:
    state = after_failure(ThrottleState(failures=10_000), NOW, BackoffPolicy(hard_limit=None))
    assert state.locked_at is None


# --- turns: attempts in flight apart from failures ------------------------------------------------------------------

LEASE = timedelta(seconds=60)


def test_attempts_in_flight_make_a_newcomer_wait_only_when_their_failing_would_block() -> None:
    policy = BackoffPolicy(tolerated_failures=1)
    state = ThrottleState()
    assert admission(state, NOW, policy) is None
    state = after_reservation(state, NOW, LEASE)
    assert admission(state, NOW, policy) is None  # one failure in flight is tolerated: a second may go
    state = after_reservation(state, NOW, LEASE)
    assert state.pending == 2 and isinstance(admission(state, NOW, policy), Wait)  # two failures would block
    # Not refused: one of them succeeds, and the turn is free again, with no failure left over.
    state = after_settled_success(state)
    assert (state.pending, state.failures) == (1, 0) and admission(state, NOW, policy) is None


def test_failures_settle_into_the_same_sequence_as_one_by_one() -> None:
    policy = BackoffPolicy(tolerated_failures=1)
    state = after_reservation(after_reservation(ThrottleState(), NOW, LEASE), NOW, LEASE)
    state = after_settled_failure(state, NOW, policy)
    assert state.failures == 1 and state.blocked_until is None and isinstance(admission(state, NOW, policy), Wait)
    later = NOW + timedelta(seconds=3)
    state = after_settled_failure(state, later, policy)  # the block starts when the failure is known
    assert (state.failures, state.pending, state.blocked_until) == (2, 0, later + timedelta(seconds=1))
    assert isinstance(admission(state, later, policy), Blocked)


def test_a_turn_whose_lease_ran_out_counts_as_a_failure() -> None:
    policy = BackoffPolicy(tolerated_failures=1)
    state = after_reservation(ThrottleState(failures=1), NOW, LEASE)
    assert expire_reservations(state, NOW + LEASE - timedelta(seconds=1), policy) == state
    expired = expire_reservations(state, NOW + LEASE, policy)
    assert (expired.failures, expired.pending, expired.blocked_until) == (2, 0, NOW + LEASE + timedelta(seconds=1))


def test_a_failure_settled_after_its_lease_is_not_released_twice() -> None:
    state = after_settled_failure(ThrottleState(failures=2, pending=0), NOW, BackoffPolicy(tolerated_failures=5))
    assert (state.failures, state.pending) == (3, 0)


def test_attempts_in_flight_wait_before_the_hard_limit() -> None:
    policy = BackoffPolicy(tolerated_failures=1000, hard_limit=3)
    state = after_reservation(ThrottleState(failures=2), NOW, LEASE)
    assert isinstance(admission(state, NOW, policy), Wait)
