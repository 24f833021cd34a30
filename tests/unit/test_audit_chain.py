"""The audit hash chain, pure: canonical bytes, hashes, and what ``verify_chain`` says about a tampered chain."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from nidan.core.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    ChainHead,
    EventType,
    ProblemKind,
    canonical_bytes,
    chain_hash,
    checked_details,
    export_line,
    verify_chain,
)

T0 = datetime(2026, 3, 14, 15, 9, 26, 123456, tzinfo=UTC)


def event(n: int = 0, event_type: EventType = EventType.SIGN_IN_SUCCEEDED, **details: str | int | None) -> AuditEvent:
    return AuditEvent(
        occurred_at=T0 + timedelta(seconds=n),
        event_type=event_type.value,
        actor_user_id=1,
        actor_username="alice",
        subject_user_id=1,
        subject_username="alice",
        client_ip="192.0.2.7",
        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0",
        correlation_id=f"corr-{n:04d}",
        details=details,
    )


def chain(count: int) -> list[AuditRecord]:
    records, prev = [], GENESIS_HASH
    for seq in range(1, count + 1):
        item = event(seq, position=seq)
        digest = chain_hash(prev, seq, item)
        records.append(AuditRecord(seq=seq, event=item, prev_hash=prev, hash=digest))
        prev = digest
    return records


def head_of(records: list[AuditRecord]) -> ChainHead:
    return ChainHead(records[-1].seq, records[-1].hash) if records else ChainHead(0, GENESIS_HASH)


def renumbered(record: AuditRecord, seq: int) -> AuditRecord:
    return dataclasses.replace(record, seq=seq)


# --- event types and details ---------------------------------------------------------------------------------------


def test_the_event_types_are_exactly_the_published_ones() -> None:
    assert {e.value for e in EventType} == {
        "sign_in.succeeded", "sign_in.password_failed", "sign_in.second_factor_failed", "recovery_code.used",
        "totp.enrolled", "totp.changed", "totp.removed", "recovery_codes.regenerated", "backoff.blocked",
        "backoff.locked", "backoff.cleared", "step_up.succeeded", "step_up.failed", "session.revoked",
        "sessions.revoked_all", "user.created", "user.disabled", "user.enabled", "user.password_set", "setup.completed",
        "token.created", "token.revoked", "tokens.revoked_all", "basic_auth.failed", "application.added",
        "application.removed", "verify.succeeded", "verify.failed", "sign_in.setup_required", "two_factor.reset",
        "two_factor.unenrolled", "two_factor.registration_required", "organisation.created",
        "organisation.policy_changed", "member.added", "member.changed", "member.removed", "admin.recovered",
        "recovery_link.used", "remembered_device.added", "remembered_device.replayed",
        "remembered_device.forgotten", "remembered_devices.forgotten", "default_method.changed", "preferences.changed",
        "password.changed", "password.change_failed", "user.deleted", "password_link.issued", "password_link.used",
    }  # fmt: skip
    assert all(len(e.value) <= 48 for e in EventType)  # the column's width


def test_details_take_small_flat_values_only() -> None:
    assert checked_details(None) == {}
    assert checked_details({"position": 3, "method": "totp", "first": True, "note": None}) == {
        "position": 3,
        "method": "totp",
        "first": True,
        "note": None,
    }
    for bad in ({"ratio": 0.5}, {"nested": {"a": 1}}, {"codes": ["a"]}, {"": 1}, {"text": "x" * 257}):
        with pytest.raises(ValueError):
            checked_details(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        checked_details({f"k{i}": i for i in range(17)})


# --- canonical bytes and the hash ------------------------------------------------------------------------------------


def test_canonical_bytes_are_sorted_compact_ascii_json_with_utc_times() -> None:
    raw = canonical_bytes(7, event(0, position=3))
    text = raw.decode("ascii")
    assert " " not in text.replace("Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0", "")
    parsed = json.loads(text)
    assert list(parsed) == sorted(parsed)
    assert parsed["seq"] == 7
    assert parsed["occurred_at"] == "2026-03-14T15:09:26.123456Z"
    assert parsed["details"] == {"position": 3}
    assert text == json.dumps(parsed, sort_keys=True, separators=(",", ":"))


def test_the_same_instant_in_another_offset_gives_the_same_bytes() -> None:
    tokyo = timezone(timedelta(hours=9))
    moved = dataclasses.replace(event(0), occurred_at=T0.astimezone(tokyo))
    assert canonical_bytes(1, moved) == canonical_bytes(1, event(0))


def test_non_ascii_is_escaped_so_bytes_do_not_depend_on_an_encoder() -> None:
    raw = canonical_bytes(1, dataclasses.replace(event(0), user_agent="Ünïcödé ✓"))
    assert raw.isascii()
    assert json.loads(raw)["user_agent"] == "Ünïcödé ✓"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        canonical_bytes(1, dataclasses.replace(event(0), occurred_at=datetime(2026, 1, 1)))


def test_chain_hash_is_sha256_over_the_previous_hash_and_the_canonical_content() -> None:
    item = event(0, position=2)
    expected = hashlib.sha256(GENESIS_HASH.encode() + b"\n" + canonical_bytes(1, item)).hexdigest()
    assert chain_hash(GENESIS_HASH, 1, item) == expected
    assert len(expected) == 64


def test_the_hash_covers_seq_prev_hash_and_every_field() -> None:
    item = event(0, position=2)
    base = chain_hash(GENESIS_HASH, 1, item)
    assert chain_hash(GENESIS_HASH, 2, item) != base
    assert chain_hash("f" * 64, 1, item) != base
    changes = {
        "occurred_at": T0 + timedelta(microseconds=1),
        "event_type": "totp.removed",
        "actor_user_id": 2,
        "actor_username": "mallory",
        "subject_user_id": 2,
        "subject_username": "mallory",
        "client_ip": "192.0.2.8",
        "user_agent": "curl/8",
        "correlation_id": "other",
        "details": {"position": 3},
    }
    for name, value in changes.items():
        assert chain_hash(GENESIS_HASH, 1, dataclasses.replace(item, **{name: value})) != base, name


def test_an_export_line_is_the_content_plus_both_hashes() -> None:
    (record,) = chain(1)
    line = json.loads(export_line(record))
    assert line["prev_hash"] == GENESIS_HASH
    assert line["hash"] == record.hash
    assert line["seq"] == 1 and line["event_type"] == "sign_in.succeeded"


# --- verification ----------------------------------------------------------------------------------------------------


def test_an_intact_chain_verifies_with_and_without_its_head() -> None:
    records = chain(5)
    assert verify_chain(records) is None
    assert verify_chain(records, head_of(records)) is None
    assert verify_chain([], ChainHead(0, GENESIS_HASH)) is None


def test_an_edited_event_is_named() -> None:
    records = chain(5)
    records[2] = dataclasses.replace(records[2], event=dataclasses.replace(records[2].event, client_ip="203.0.113.9"))
    problem = verify_chain(records, head_of(records))
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, ProblemKind.EDITED)
    assert problem.record is records[2]


def test_a_removed_event_is_named_by_the_gap() -> None:
    records = chain(5)
    del records[1]
    problem = verify_chain(records, head_of(records))
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, ProblemKind.REMOVED)
    assert "event 2 is missing" in problem.message
    assert problem.record is not None and problem.record.seq == 3


def test_events_removed_from_the_end_are_caught_by_the_head() -> None:
    records = chain(5)
    head = head_of(records)
    problem = verify_chain(records[:3], head)
    assert problem is not None
    assert (problem.seq, problem.kind, problem.record) == (4, ProblemKind.REMOVED, None)
    assert "events 4 to 5 are missing" in problem.message
    # Without the head, a shortened chain cannot be told from a short one: why the head row exists.
    assert verify_chain(records[:3]) is None


def test_every_event_removed_is_caught_by_the_head() -> None:
    problem = verify_chain([], ChainHead(4, "a" * 64))
    assert problem is not None and (problem.seq, problem.kind) == (1, ProblemKind.REMOVED)


def test_two_swapped_events_are_reported_as_reordered() -> None:
    records = chain(5)
    swapped = [records[0], renumbered(records[2], 2), renumbered(records[1], 3), records[3], records[4]]
    problem = verify_chain(swapped, head_of(records))
    assert problem is not None
    assert (problem.seq, problem.kind) == (2, ProblemKind.REORDERED)
    assert "stored at seq 3" in problem.message


def test_rows_out_of_seq_order_are_reordered() -> None:
    records = chain(3)
    problem = verify_chain([records[0], records[1], records[0]])
    assert problem is not None and problem.kind is ProblemKind.REORDERED


def test_an_event_rewritten_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = chain(5)
    forged = dataclasses.replace(records[1].event, details={"position": 99})
    records[1] = dataclasses.replace(records[1], event=forged, hash=chain_hash(records[1].prev_hash, 2, forged))
    problem = verify_chain(records, head_of(records))
    assert problem is not None
    assert (problem.seq, problem.kind) == (3, ProblemKind.REMOVED)
    assert "seq 2 was replaced" in problem.message


def test_the_last_event_rewritten_with_a_recomputed_hash_disagrees_with_the_head() -> None:
    records = chain(3)
    head = head_of(records)
    forged = dataclasses.replace(records[2].event, client_ip="203.0.113.9")
    records[2] = dataclasses.replace(records[2], event=forged, hash=chain_hash(records[2].prev_hash, 3, forged))
    problem = verify_chain(records, head)
    assert problem is not None and (problem.seq, problem.kind) == (3, ProblemKind.EDITED)


def test_a_deletion_hidden_by_renumbering_is_still_caught() -> None:
    records = chain(5)
    hidden = [records[0], *(renumbered(r, r.seq - 1) for r in records[2:])]
    problem = verify_chain(hidden, ChainHead(4, records[-1].hash))
    assert problem is not None and problem.seq == 2
    assert problem.kind in (ProblemKind.EDITED, ProblemKind.REMOVED)


def test_events_appended_after_the_head_was_read_are_checked_too() -> None:
    records = chain(6)
    assert verify_chain(records, ChainHead(4, records[3].hash)) is None
    records[5] = dataclasses.replace(records[5], hash="0" * 64)
    problem = verify_chain(records, ChainHead(4, records[3].hash))
    assert problem is not None and problem.seq == 6


def test_times_are_spelt_as_before_for_any_instant_and_offset() -> None:
    """Stored chains were hashed with ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")``: the spelling must not change."""
    import random
    from datetime import UTC, datetime, timedelta, timezone

    from nidan.core.audit import utc_iso

    chance = random.Random(7)
    for _ in range(2000):
        moment = datetime(1001, 1, 1, tzinfo=UTC) + timedelta(microseconds=chance.randrange(8000 * 365 * 86400 * 10**6))
        local = moment.astimezone(timezone(timedelta(minutes=chance.randrange(-14 * 60, 14 * 60 + 1))))
        assert utc_iso(local) == local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
