"""Attempts made together, on both back ends: correct passwords all pass, wrong ones are counted exactly.

Sign-in and the HTTP Basic gate take a turn before the argon2 check (``throttling.take_turn``): only settled failures
refuse, and a newcomer waits while the attempts in flight could block the subject. Also: the per-username counters
are keyed by a keyed hash, never by the name as typed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from nidan.bootstrap import Runtime
from nidan.core.access_tokens import Scope
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, ThrottleScope
from nidan.core.passwords import VerifyPassword
from nidan.db import tables as t
from nidan.errors import BasicAuthDenied, InvalidCredentials, RateLimited
from nidan.services import gate, signin, throttling
from nidan.web.hashing import awaiting_hashes
from tests import helpers
from tests.helpers import PASSWORD, make_user

OFFICE = ClientInfo(ip="198.51.100.7")
RACERS = 10


def fire(count: int, attempt: Callable[[int], object]) -> Counter[str]:
    """``count`` attempts released at once; tally by exception class name ("ok" for a success)."""
    results = helpers.race(count, attempt, (InvalidCredentials, RateLimited, BasicAuthDenied))
    return Counter(type(r).__name__ if isinstance(r, Exception) else "ok" for r in results)


def sign_in(runtime: Runtime, password: str) -> object:
    return signin.login(runtime.services, username="alice", password=password, client=OFFICE)


def through_gate(runtime: Runtime, password: str) -> object:
    return gate.check(runtime.services, username="alice", secret=password, scope=Scope.READ_REPOSITORY, client=OFFICE)


def rows(runtime: Runtime) -> list[tuple[str, str, int, int]]:
    """Every backoff row as stored: scope, key, settled failures, attempts in flight."""
    c = t.throttles.c
    with runtime.engine.connect() as connection:
        found = connection.execute(select(c.scope, c.key, c.failures, c.pending).order_by(c.scope, c.key))
        return [(row.scope, row.key, row.failures, row.pending) for row in found]


def failed_events(runtime: Runtime, kind: EventType) -> int:
    c = t.audit_events.c
    with runtime.engine.connect() as connection:
        return len(connection.execute(select(c.id).where(c.event_type == kind.value)).all())


def assert_nothing_in_flight(runtime: Runtime) -> None:
    assert [row for row in rows(runtime) if row[3]] == []


@pytest.mark.parametrize("attempt", [sign_in, through_gate], ids=["sign-in", "gate"])
def test_correct_passwords_at_once_all_pass(runtime: Runtime, attempt: Callable[[Runtime, str], object]) -> None:
    """The issue's report: three at once answered 200, 200, 429; ten, 2 x 200 and 8 x 429."""
    make_user(runtime.services)
    assert fire(RACERS, lambda _: attempt(runtime, PASSWORD)) == Counter({"ok": RACERS})
    assert_nothing_in_flight(runtime)
    assert all(failures == 0 for _, _, failures, _ in rows(runtime))


@pytest.mark.parametrize(
    ("attempt", "refused", "event"),
    [
        (sign_in, "InvalidCredentials", EventType.SIGN_IN_PASSWORD_FAILED),
        (through_gate, "BasicAuthDenied", EventType.BASIC_AUTH_FAILED),
    ],
    ids=["sign-in", "gate"],
)
def test_wrong_passwords_at_once_are_evaluated_and_counted_exactly_twice(
    runtime: Runtime, attempt: Callable[[Runtime, str], object], refused: str, event: EventType
) -> None:
    make_user(runtime.services)
    outcomes = fire(50, lambda _: attempt(runtime, "wrong password"))
    assert outcomes == Counter({refused: 2, "RateLimited": 48})
    assert failed_events(runtime, event) == 2
    assert_nothing_in_flight(runtime)
    # Both counters (the username from the address, and the address) hold exactly the two evaluated failures.
    assert sorted(failures for _, _, failures, _ in rows(runtime)) == [2, 2]


@pytest.mark.parametrize(
    ("attempt", "refused"),
    [(sign_in, "InvalidCredentials"), (through_gate, "BasicAuthDenied")],
    ids=["sign-in", "gate"],
)
def test_a_wrong_password_among_correct_ones_at_once(
    runtime: Runtime, attempt: Callable[[Runtime, str], object], refused: str
) -> None:
    """One wrong attempt cannot block (one failure is tolerated): every correct one passes, the wrong one is
    evaluated and counted once."""
    make_user(runtime.services)
    outcomes = fire(RACERS, lambda i: attempt(runtime, "wrong password" if i == 0 else PASSWORD))
    assert outcomes == Counter({"ok": RACERS - 1, refused: 1})
    assert_nothing_in_flight(runtime)


def test_wrong_and_correct_at_once_answer_as_one_after_another(runtime: Runtime) -> None:
    """Ten wrong and ten correct at once: the answers are those of the same attempts made one by one in some order.
    A correct one is refused only because wrong ones evaluated before it blocked (a correct attempt made past the
    budget would be a guess tested for free); every evaluated failure is counted, none is evaluated while blocked."""
    make_user(runtime.services)
    results = helpers.race(
        2 * RACERS,
        lambda i: sign_in(runtime, PASSWORD if i % 2 else "wrong password"),
        (InvalidCredentials, RateLimited),
    )
    correct = [r for i, r in enumerate(results) if i % 2]
    wrong = [r for i, r in enumerate(results) if not i % 2]
    evaluated_wrong = sum(isinstance(r, InvalidCredentials) for r in wrong)
    passed = sum(not isinstance(r, Exception) for r in correct)
    assert all(isinstance(r, (InvalidCredentials, RateLimited)) for r in wrong)
    assert all(not isinstance(r, InvalidCredentials) for r in correct)
    assert failed_events(runtime, EventType.SIGN_IN_PASSWORD_FAILED) == evaluated_wrong
    # Between two successes at most tolerated + 1 = 2 failures are evaluated; the last run is what is counted now.
    assert evaluated_wrong <= 2 * (passed + 1)
    if passed < RACERS:  # a correct one refused: only a block earned by evaluated failures does that
        assert failed_events(runtime, EventType.BACKOFF_BLOCKED) >= 1
    assert_nothing_in_flight(runtime)


def test_correct_sign_ins_awaited_together_on_one_event_loop(runtime: Runtime) -> None:
    """The web face drives the steps from its event loop (on SQLite, the database work too): a waiting sign-in
    must give the loop back (a ``Pause``), or the ones it waits for could never settle."""
    make_user(runtime.services)
    ctx = runtime.services
    in_thread = runtime.engine.dialect.name != "sqlite"

    async def together() -> list[object]:
        logins = [
            awaiting_hashes(
                ctx.passwords,
                signin.login_steps(ctx, username="alice", password=PASSWORD, client=OFFICE),
                in_thread=in_thread,
            )
            for _ in range(RACERS)
        ]
        return await asyncio.gather(*logins, return_exceptions=True)

    results = asyncio.run(together())
    assert all(isinstance(r, signin.Authenticated) for r in results), results
    assert_nothing_in_flight(runtime)


def test_an_attempt_broken_off_counts_as_a_failure(runtime: Runtime) -> None:
    """A client that goes away mid-check (the steps closed) gets no free guess."""
    make_user(runtime.services)
    steps = signin.login_steps(runtime.services, username="alice", password="a guess", client=OFFICE)
    assert isinstance(next(steps), VerifyPassword)
    steps.close()
    assert sorted((failures, pending) for _, _, failures, pending in rows(runtime)) == [(1, 0), (1, 0)]


def test_a_turn_never_settled_counts_as_a_failure_once_its_lease_ends(runtime: Runtime) -> None:
    """A process killed mid-check leaves its turn taken: it holds its place until the lease ends, then counts."""
    ctx = runtime.services
    make_user(ctx)
    subjects = throttling.password_subjects(ctx, "alice", OFFICE.ip)
    throttling.take_turn_now(ctx, subjects)  # and never settled
    ctx.clock.advance((throttling.RESERVATION_LEASE + timedelta(seconds=1)).total_seconds())  # type: ignore[attr-defined]
    # The abandoned turn is the one tolerated failure: this wrong one blocks.
    with pytest.raises(InvalidCredentials):
        sign_in(runtime, "wrong password")
    with pytest.raises(RateLimited):
        sign_in(runtime, PASSWORD)
    assert throttling.status(ctx, "alice").passwords[0][1].failures == 2


def test_usernames_are_stored_as_a_keyed_hash_and_admins_still_see_addresses(runtime: Runtime) -> None:
    """A password typed into the username field must not land in the database; the address stays readable."""
    ctx = runtime.services
    make_user(ctx)
    typed = "Tr0ub4dor&3-my-password"
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username=typed, password="whatever", client=OFFICE)
    with pytest.raises(BasicAuthDenied):
        gate.check(ctx, username=typed, secret="whatever", scope=Scope.READ_REPOSITORY, client=OFFICE)
    for username, client in (("alice", OFFICE), ("ALICE", ClientInfo(ip="203.0.113.9"))):
        with pytest.raises(InvalidCredentials):
            signin.login(ctx, username=username, password="wrong password", client=client)
    stored = rows(runtime)
    assert not [key for _, key, _, _ in stored if "tr0ub4dor" in key.lower() or "alice" in key.lower()]
    by_name = [key for scope, key, _, _ in stored if scope in (ThrottleScope.PASSWORD, ThrottleScope.GATE)]
    assert by_name and all(len(key.split("|", 1)[0]) == 64 for key in by_name)
    # Administrators' view: alice's password counters per address, found by the keyed hash's prefix.
    status = throttling.status(ctx, "alice")
    assert sorted(address for address, _ in status.passwords) == ["198.51.100.7", "203.0.113.9"]
    assert throttling.clear(ctx, username="alice", actor=None, client=OFFICE, reason="checked by phone") == 2
    assert throttling.status(ctx, "alice").passwords == []
