"""Group commit: verify calls that arrive together are checked in one shared transaction, each in a savepoint of
its own, with exactly the answers, rows and audit events they would get one by one; a call that fails takes no
other with it. On every back end (the web face batches only on SQLite; the shared transaction works on both)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, Method
from nidan.core.ports import SharedTransaction
from nidan.db import tables as t
from nidan.errors import AppKeyInvalid, DatabaseUnavailable, InvalidInput, RateLimited
from nidan.services import applications, audit, throttling, verify
from nidan.services.context import ServiceContext
from nidan.services.verify import VerifyCall, VerifyResult
from tests.helpers import code_at
from tests.integration.verify_together_support import Counted, api_key
from tests.web.verify_support import CLIENT, totp_user, wrong_code

CALLER = ClientInfo(ip="192.0.2.7", user_agent="wiki/1.0", correlation_id="c0ffee0123456789")


@pytest.fixture
def users(runtime: Runtime) -> dict[str, str]:
    """Four users with an authenticator (name -> secret)."""
    return {name: totp_user(runtime.services, name)[0] for name in ("alice", "bob", "carol", "dave")}


def call(key: str, username: str, code: str) -> VerifyCall:
    return VerifyCall(key, username, code, None, CALLER)


def answers(outcomes: list[VerifyResult | Exception]) -> list[Any]:
    return [o if isinstance(o, Exception) else (o.ok, o.username, o.error.code if o.error else None) for o in outcomes]


def alice_carol_bob(ctx: ServiceContext, key: str, users: dict[str, str]) -> list[VerifyCall]:
    return [call(key, name, code_at(users[name], ctx)) for name in ("alice", "carol", "bob")]


def succeeded(ctx: ServiceContext) -> list[str | None]:
    """Whose codes were accepted, in order."""
    return [r.event.subject_username for r in reversed(audit.all_events(ctx, event_type=EventType.VERIFY_SUCCEEDED))]


def chain_is_intact(ctx: ServiceContext) -> None:
    checked = audit.verify(ctx)
    assert checked.intact, checked.problem


def test_calls_together_get_the_answers_they_get_alone_in_one_transaction(
    runtime: Runtime, users: dict[str, str]
) -> None:
    ctx = runtime.services
    key = api_key(ctx)
    counted = Counted(ctx)
    together = replace(ctx, shared=counted)
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    outcomes = verify.verify_together(
        together,
        [
            call(key, "alice", code_at(alice, ctx)),
            call(key, "bob", wrong_code(bob, ctx)),
            call(key, "nobody", "123456"),
            call(key, "alice", code_at(alice, ctx)),  # the same code again, in the same transaction: a replay
            call(key, "CAROL", code_at(carol, ctx)),
        ],
    )
    assert counted.opened == 1
    assert answers(outcomes) == [
        (True, "alice", None),
        (False, None, "invalid_code"),
        (False, None, "invalid_code"),
        (False, None, "invalid_code"),
        (True, "carol", None),
    ]
    # Stored as one by one would store them: the steps spent, bob's failure counted, every call audited in order.
    assert succeeded(ctx) == ["alice", "carol"]
    failed = [r.event for r in reversed(audit.all_events(ctx, event_type=EventType.VERIFY_FAILED))]
    assert [e.subject_username for e in failed] == ["bob", None, "alice"]
    assert all(e.client_ip == "192.0.2.7" and e.correlation_id == "c0ffee0123456789" for e in failed)
    with ctx.uow() as uow:
        bob_user = uow.users.get_by_username_key("bob")
        assert bob_user is not None
        state = uow.throttles.get(throttling.second_factor(ctx, bob_user.id).scope, str(bob_user.id))
    assert state is not None and state.failures == 1
    chain_is_intact(ctx)
    # A replay of a code spent together is refused alone too.
    again = verify.verify_call(ctx, call(key, "carol", code_at(carol, ctx)))
    assert (again.ok, again.error.code if again.error else None) == (False, "invalid_code")


def test_an_answer_that_is_an_error_stays_that_calls_own(runtime: Runtime, users: dict[str, str]) -> None:
    ctx = runtime.services
    key = api_key(ctx)
    removed = api_key(ctx, "old")
    applications.remove(ctx, name="old", actor=None, client=CLIENT)
    # dave is blocked: two wrong codes start a 1 s block.
    for _ in range(2):
        verify.verify_call(ctx, call(key, "dave", wrong_code(users["dave"], ctx)))
    outcomes = verify.verify_together(
        ctx,
        [
            call(removed, "alice", code_at(users["alice"], ctx)),
            call(key, "dave", code_at(users["dave"], ctx)),
            call(key, "bob", code_at(users["bob"], ctx)),
        ],
    )
    assert isinstance(outcomes[0], AppKeyInvalid)
    assert isinstance(outcomes[1], RateLimited)
    assert answers(outcomes[2:]) == [(True, "bob", None)]
    # alice's code was not spent by the refused call: it still works.
    assert verify.verify_call(ctx, call(key, "alice", code_at(users["alice"], ctx))).ok
    chain_is_intact(ctx)


def test_a_call_that_fails_is_undone_with_the_batch_and_the_others_are_checked_alone(
    runtime: Runtime, users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = runtime.services
    key = api_key(ctx)
    real = verify.verify_call
    failures = []

    def failing_for_carol(inner: ServiceContext, one: VerifyCall, known: Any = None) -> VerifyResult:
        if one.username == "carol":
            failures.append(inner.shared is None)  # inside the shared transaction, or alone
            raise OSError("disk I/O error")
        return real(inner, one, known)

    monkeypatch.setattr(verify, "verify_call", failing_for_carol)
    outcomes = verify.verify_together(ctx, alice_carol_bob(ctx, key, users))
    assert failures == [True, False]  # in the batch, then alone
    assert answers([outcomes[0], outcomes[2]]) == [(True, "alice", None), (True, "bob", None)]
    assert isinstance(outcomes[1], OSError)
    # alice's and bob's calls were stored once (the batch's first attempt was rolled back whole).
    assert succeeded(ctx) == ["alice", "bob"]
    chain_is_intact(ctx)


def test_a_shared_transaction_that_cannot_be_had_is_every_calls_answer(runtime: Runtime, users: dict[str, str]) -> None:
    ctx = runtime.services
    key = api_key(ctx)

    def unavailable() -> SharedTransaction:
        raise DatabaseUnavailable()

    outcomes = verify.verify_together(
        replace(ctx, shared=unavailable),
        [call(key, "alice", code_at(users["alice"], ctx)), call(key, "bob", code_at(users["bob"], ctx))],
    )
    assert all(isinstance(o, DatabaseUnavailable) for o in outcomes)
    assert audit.all_events(ctx, event_type=EventType.VERIFY_SUCCEEDED) == []


def test_a_unit_left_without_commit_undoes_only_its_own_work(runtime: Runtime) -> None:
    ctx = runtime.services
    assert ctx.shared is not None
    with ctx.shared() as shared:
        with shared.units() as unit:
            audit.record(ctx, unit, EventType.USER_CREATED, client=CLIENT, actor=None, subject=None)
            unit.commit()
        with shared.units() as unit:
            audit.record(ctx, unit, EventType.USER_PASSWORD_SET, client=CLIENT, actor=None, subject=None)
            # left without commit: rolled back to its savepoint
        with shared.units() as unit:
            audit.record(ctx, unit, EventType.SETUP_COMPLETED, client=CLIENT, actor=None, subject=None)
            unit.commit()
        shared.commit()
    kinds = [r.event.event_type for r in reversed(audit.all_events(ctx))]
    assert kinds[-2:] == [EventType.USER_CREATED.value, EventType.SETUP_COMPLETED.value]
    assert EventType.USER_PASSWORD_SET.value not in kinds
    chain_is_intact(ctx)


def test_a_call_refused_after_it_wrote_is_undone_alone(
    runtime: Runtime, users: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = runtime.services
    key = api_key(ctx)
    real = audit.record

    def refusing_carol_after_writing(*args: Any, **kwargs: Any) -> Any:
        recorded = real(*args, **kwargs)
        subject = kwargs.get("subject")
        if subject is not None and subject.username == "carol":
            raise InvalidInput("refused after the audit event was written")
        return recorded

    monkeypatch.setattr(audit, "record", refusing_carol_after_writing)
    outcomes = verify.verify_together(ctx, alice_carol_bob(ctx, key, users))
    assert answers([outcomes[0], outcomes[2]]) == [(True, "alice", None), (True, "bob", None)]
    assert isinstance(outcomes[1], InvalidInput)
    assert succeeded(ctx) == ["alice", "bob"]
    chain_is_intact(ctx)
    # carol's step was not spent: her unit was rolled back to its savepoint, audit event and all.
    monkeypatch.setattr(audit, "record", real)
    assert verify.verify_call(ctx, call(key, "carol", code_at(users["carol"], ctx))).ok


def test_nothing_is_stored_until_the_shared_transaction_commits(runtime: Runtime) -> None:
    ctx = runtime.services
    assert ctx.shared is not None

    def count() -> int:
        with runtime.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(t.audit_events)).scalar_one())

    before = count()
    with ctx.shared() as shared, shared.units() as unit:
        audit.record(ctx, unit, EventType.USER_CREATED, client=CLIENT, actor=None, subject=None)
        unit.commit()
        # not committed: leaving rolls back every unit
    assert count() == before
    chain_is_intact(ctx)


def test_recovery_codes_are_never_checked_together(runtime: Runtime, users: dict[str, str]) -> None:
    ctx = runtime.services
    key = api_key(ctx)
    assert VerifyCall(key, "alice", "123456", None, CALLER).is_fast
    assert not VerifyCall(key, "alice", "abcd-efgh", None, CALLER).is_fast
    assert not VerifyCall(key, "alice", "123456", Method.RECOVERY_CODE, CALLER).is_fast
    with pytest.raises(AssertionError):
        verify.verify_together(ctx, [call(key, "alice", "abcd-efgh"), call(key, "bob", "abcd-efgh")])


def test_a_key_is_known_for_one_shared_transaction_only(runtime: Runtime, users: dict[str, str]) -> None:
    ctx = runtime.services
    key = api_key(ctx)
    first = verify.verify_together(
        ctx, [call(key, "alice", code_at(users["alice"], ctx)), call(key, "bob", code_at(users["bob"], ctx))]
    )
    assert answers(first) == [(True, "alice", None), (True, "bob", None)]
    applications.remove(ctx, name="wiki", actor=None, client=CLIENT)
    second = verify.verify_together(
        ctx, [call(key, "carol", code_at(users["carol"], ctx)), call(key, "dave", code_at(users["dave"], ctx))]
    )
    assert all(isinstance(o, AppKeyInvalid) for o in second)
