"""The audit log in storage: the events the flows write, atomic with their actions, listing and filtering, and one
unbroken chain under concurrent appends, on SQLite and PostgreSQL. The command line is in ``test_audit_cli``."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier

import pytest

from nidan.bootstrap import Runtime
from nidan.core.audit import AuditRecord, EventType, export_line
from nidan.core.models import InstanceRole
from nidan.errors import InvalidCode, InvalidInput
from nidan.services import accounts, audit, enrollment, setup
from tests.helpers import PASSWORD, code_at, make_user
from tests.integration.audit_support import CLIENT, all_records, some_events


def types_of(records: list[AuditRecord] | tuple[AuditRecord, ...]) -> list[str]:
    return [r.event.event_type for r in records]


# --- what the flows record ---------------------------------------------------------------------------------------


def test_enrolment_flows_are_recorded_with_client_and_no_secret(runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    started = enrollment.start_totp(ctx, alice)
    codes = enrollment.activate_totp(ctx, alice, code_at(started.secret, ctx), client=CLIENT).recovery_codes
    ctx.clock.advance(90)  # type: ignore[attr-defined]
    replacement = enrollment.start_totp(ctx, alice)
    enrollment.activate_totp(ctx, alice, code_at(replacement.secret, ctx), client=CLIENT)
    new_codes = enrollment.regenerate_recovery_codes(ctx, alice, client=CLIENT)
    enrollment.disable_totp(ctx, alice, client=CLIENT)

    mine = list(reversed(audit.my_events(ctx, alice.id)))
    relevant = [r for r in mine if r.event.event_type.startswith(("totp.", "recovery_codes.", "user."))]
    assert types_of(relevant) == [
        "user.created",
        "totp.enrolled",
        "totp.changed",
        "recovery_codes.regenerated",
        "totp.removed",
    ]
    enrolled = relevant[1].event
    assert (enrolled.actor_user_id, enrolled.subject_user_id) == (alice.id, alice.id)
    assert enrolled.subject_username == "alice"
    assert (enrolled.client_ip, enrolled.user_agent, enrolled.correlation_id) == (
        "198.51.100.4",
        "pytest-agent/1.0",
        "corr-1234",
    )
    assert enrolled.occurred_at.tzinfo is not None
    assert dict(enrolled.details) == {"recovery_codes": 16}
    stored = "\n".join(export_line(r) for r in all_records(runtime))
    for secret in (started.secret, replacement.secret, *codes, *new_codes, PASSWORD):
        assert secret not in stored


def test_a_failed_action_records_nothing(runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    started = enrollment.start_totp(ctx, alice)
    right = code_at(started.secret, ctx)
    with pytest.raises(InvalidCode):
        enrollment.activate_totp(ctx, alice, "000000" if right != "000000" else "111111", client=CLIENT)
    assert types_of(all_records(runtime)) == ["user.created"]


def test_an_event_rolls_back_with_its_transaction(runtime: Runtime) -> None:
    ctx = runtime.services
    with ctx.uow() as uow:
        audit.record(ctx, uow, EventType.STEP_UP_FAILED, client=None, actor=None, subject=None)
        # no commit: the action failed, so neither it nor its event happened
    with ctx.uow() as uow:
        assert uow.audit.head().seq == 0
    assert all_records(runtime) == []
    some_events(runtime, 1)
    assert [r.seq for r in all_records(runtime)] == [1]


def test_accounts_and_setup_are_recorded(runtime: Runtime) -> None:
    ctx = runtime.services
    token = setup.issue_setup_token(ctx)
    assert token
    root = setup.complete_setup(
        ctx, token=token, username="root", email="root@example.com", password=PASSWORD, client=CLIENT
    )
    bob = make_user(ctx, "bob")
    with ctx.uow() as uow:  # a session of bob's, for the new password to end
        now = ctx.clock.now()
        uow.sessions.add(bob.id, b"\x01" * 32, now, now + timedelta(hours=1), None, None)
        uow.commit()
    accounts.set_password(ctx, username="bob", password="another fine passphrase", actor=root, client=CLIENT)
    accounts.set_password(ctx, username="bob", password="a third fine passphrase")

    records = [r for r in all_records(runtime) if not r.event.event_type.startswith("sign_in.")]
    assert types_of(records) == [
        "user.created",
        "setup.completed",
        "user.created",
        "user.password_set",
        "sessions.revoked_all",
        "user.password_set",  # no sessions left to end: no second sessions.revoked_all
    ]
    created_root, completed, created_bob, password_set, revoked, _ = (r.event for r in records)
    assert (created_root.subject_username, created_root.actor_user_id, dict(created_root.details)) == (
        "root",
        None,
        {"role": "admin"},
    )
    assert (completed.actor_user_id, completed.subject_user_id) == (root.id, root.id)
    assert (created_bob.subject_user_id, created_bob.actor_user_id) == (bob.id, None)
    assert (password_set.actor_username, password_set.subject_username) == ("root", "bob")
    assert dict(revoked.details) == {"sessions": 1, "reason": "password_set"}


# --- concurrency ---------------------------------------------------------------------------------------------------

THREADS = 12
EACH = 5


def test_concurrent_appends_form_one_unbroken_chain(runtime: Runtime) -> None:
    ctx = runtime.services
    users = [make_user(ctx, f"user{i}") for i in range(3)]
    barrier = Barrier(THREADS)

    def append(index: int) -> list[int]:
        barrier.wait()
        seqs = []
        for n in range(EACH):
            with ctx.uow() as uow:
                subject = users[index % len(users)]
                added = audit.record(
                    ctx, uow, EventType.STEP_UP_FAILED, client=CLIENT, actor=subject, subject=subject, details={"n": n}
                )
                uow.commit()
            seqs.append(added.seq)
        return seqs

    with ThreadPoolExecutor(THREADS) as pool:
        returned = [seq for seqs in pool.map(append, range(THREADS)) for seq in seqs]

    total = len(users) + THREADS * EACH
    assert len(set(returned)) == THREADS * EACH
    records = all_records(runtime)
    assert [r.seq for r in records] == list(range(1, total + 1))
    result = audit.verify(ctx)
    assert result.intact, result.problem
    assert (result.events, result.head.seq, result.head.hash) == (total, total, records[-1].hash)


def test_listing_filters_and_pages(runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    bob = make_user(ctx, "bob")
    root = make_user(ctx, "root", role=InstanceRole.ADMIN)
    accounts.set_password(ctx, username="bob", password="another fine passphrase", actor=root, client=CLIENT)
    some_events(runtime, 3)
    # bob's own log: created, and the password root set for him.
    assert types_of(audit.my_events(ctx, bob.id)) == ["user.password_set", "user.created"]
    # root's own log includes what root did to bob.
    assert "user.password_set" in types_of(audit.my_events(ctx, root.id))
    assert types_of(audit.my_events(ctx, alice.id)) == ["user.created"]
    newest_two = audit.all_events(ctx, limit=2)
    assert [r.seq for r in newest_two] == [7, 6]
    assert [r.seq for r in audit.all_events(ctx, limit=2, before=6)] == [5, 4]
    assert [r.seq for r in audit.all_events(ctx, username="BOB")] == [4, 2]
    assert [r.seq for r in audit.all_events(ctx, event_type=EventType.USER_CREATED)] == [3, 2, 1]
    now = ctx.clock.now()  # three seconds after the first of some_events
    assert [r.seq for r in audit.all_events(ctx, since=now - timedelta(seconds=2))] == [7, 6]
    assert [r.seq for r in audit.all_events(ctx, until=now - timedelta(seconds=2))] == [5, 4, 3, 2, 1]
    assert [r.seq for r in audit.all_events(ctx, username="bob", event_type=EventType.USER_CREATED)] == [2]
    with pytest.raises(InvalidInput):
        audit.all_events(ctx, since=now, until=now)
    with pytest.raises(InvalidInput):
        audit.all_events(ctx, limit=201)
