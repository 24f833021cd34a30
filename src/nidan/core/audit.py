"""The tamper-evident audit chain: event types, canonical bytes, the hash chain and its verification.

Each event's ``hash`` is SHA-256 over the previous event's hash and the event's canonical content (its ``seq``
included), so editing, removing or reordering a stored event breaks the chain from that point on. The first event
chains from ``GENESIS_HASH``. Pure: the time comes in on the event; storage appends and reads through a port.

Details are a small flat mapping of ``str``/``int``/``bool``/``None``, never a secret: a recovery code's position,
never the code; a session's id, never its token; never a password, TOTP key or code someone typed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

#: The chain starts from this value: the first event's ``prev_hash`` (the migration seeds the head with it).
GENESIS_HASH = "0" * 64

Detail = str | int | bool | None
MAX_DETAILS = 16
MAX_DETAIL_KEY = 64
MAX_DETAIL_TEXT = 256


class EventType(StrEnum):
    SIGN_IN_SUCCEEDED = "sign_in.succeeded"
    SIGN_IN_PASSWORD_FAILED = "sign_in.password_failed"  # noqa: S105 - an event name, not a password
    SIGN_IN_SECOND_FACTOR_FAILED = "sign_in.second_factor_failed"
    RECOVERY_CODE_USED = "recovery_code.used"
    TOTP_ENROLLED = "totp.enrolled"
    TOTP_CHANGED = "totp.changed"
    TOTP_REMOVED = "totp.removed"
    RECOVERY_CODES_REGENERATED = "recovery_codes.regenerated"
    BACKOFF_BLOCKED = "backoff.blocked"
    BACKOFF_LOCKED = "backoff.locked"
    BACKOFF_CLEARED = "backoff.cleared"
    STEP_UP_SUCCEEDED = "step_up.succeeded"
    STEP_UP_FAILED = "step_up.failed"
    SESSION_REVOKED = "session.revoked"
    SESSIONS_REVOKED_ALL = "sessions.revoked_all"
    USER_CREATED = "user.created"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_DELETED = "user.deleted"
    USER_PASSWORD_SET = "user.password_set"  # noqa: S105 - an event name, not a password
    SETUP_COMPLETED = "setup.completed"
    TOKEN_CREATED = "token.created"  # noqa: S105 - an event name, not a token
    TOKEN_REVOKED = "token.revoked"  # noqa: S105
    TOKENS_REVOKED_ALL = "tokens.revoked_all"
    BASIC_AUTH_FAILED = "basic_auth.failed"
    APPLICATION_ADDED = "application.added"
    APPLICATION_REMOVED = "application.removed"
    VERIFY_SUCCEEDED = "verify.succeeded"
    VERIFY_FAILED = "verify.failed"
    SIGN_IN_SETUP_REQUIRED = "sign_in.setup_required"
    TWO_FACTOR_RESET = "two_factor.reset"
    TWO_FACTOR_UNENROLLED = "two_factor.unenrolled"
    REGISTRATION_REQUIRED = "two_factor.registration_required"
    ORGANISATION_CREATED = "organisation.created"
    ORGANISATION_POLICY_CHANGED = "organisation.policy_changed"
    MEMBER_ADDED = "member.added"
    MEMBER_CHANGED = "member.changed"
    MEMBER_REMOVED = "member.removed"
    ADMIN_RECOVERED = "admin.recovered"
    RECOVERY_LINK_USED = "recovery_link.used"
    PASSWORD_LINK_ISSUED = "password_link.issued"  # noqa: S105 - an event name, not a password
    PASSWORD_LINK_USED = "password_link.used"  # noqa: S105
    DEFAULT_METHOD_CHANGED = "default_method.changed"
    PREFERENCES_CHANGED = "preferences.changed"
    PASSWORD_CHANGED = "password.changed"  # noqa: S105 - an event name, not a password
    PASSWORD_CHANGE_FAILED = "password.change_failed"  # noqa: S105
    REMEMBERED_DEVICE_ADDED = "remembered_device.added"
    REMEMBERED_DEVICE_REPLAYED = "remembered_device.replayed"
    REMEMBERED_DEVICE_FORGOTTEN = "remembered_device.forgotten"
    REMEMBERED_DEVICES_FORGOTTEN = "remembered_devices.forgotten"


def checked_details(details: Mapping[str, Detail] | None) -> dict[str, Detail]:
    """A copy of ``details`` after checking its shape: few keys, short text, only str/int/bool/None values."""
    if not details:
        return {}
    if len(details) > MAX_DETAILS:
        raise ValueError(f"audit details take at most {MAX_DETAILS} keys")
    checked: dict[str, Detail] = {}
    for key, value in details.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_DETAIL_KEY:
            raise ValueError(f"audit detail keys are 1 to {MAX_DETAIL_KEY} characters: {key!r}")
        if value is not None and not isinstance(value, str | int | bool):
            raise ValueError(f"audit detail {key!r} is not str, int, bool or None")
        if isinstance(value, str) and len(value) > MAX_DETAIL_TEXT:
            raise ValueError(f"audit detail {key!r} is longer than {MAX_DETAIL_TEXT} characters")
        checked[key] = value
    return checked


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, as the hash covers it. Users are named as well as numbered: the log outlives accounts."""

    occurred_at: datetime
    event_type: str
    actor_user_id: int | None = None
    actor_username: str | None = None
    subject_user_id: int | None = None
    subject_username: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    correlation_id: str | None = None
    details: Mapping[str, Detail] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored event: its place in the chain, the previous event's hash and its own."""

    seq: int
    event: AuditEvent
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last event's ``seq`` and ``hash`` as the chain head row records them (``0`` and genesis when empty)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for listing events, newest first. ``user_id``/``username`` match the subject or the actor."""

    user_id: int | None = None
    username: str | None = None
    event_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_seq: int | None = None
    limit: int = 50


def utc_iso(moment: datetime) -> str:
    """``2026-03-14T15:09:26.000000Z``: UTC, always microseconds, so one instant has one spelling."""
    if moment.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    # isoformat spells the same as "%Y-%m-%dT%H:%M:%S.%fZ" (four-digit years), in a third of the time.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def content(seq: int, event: AuditEvent) -> dict[str, Any]:
    """The event as a flat JSON object (also the export's fields, without the hashes)."""
    return {
        "seq": seq,
        "occurred_at": utc_iso(event.occurred_at),
        "event_type": str(event.event_type),
        "actor_user_id": event.actor_user_id,
        "actor_username": event.actor_username,
        "subject_user_id": event.subject_user_id,
        "subject_username": event.subject_username,
        "client_ip": event.client_ip,
        "user_agent": event.user_agent,
        "correlation_id": event.correlation_id,
        "details": dict(event.details),
    }


#: Built once: ``json.dumps`` with options builds an encoder per call, a third of the cost of a small event.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_json(value: object) -> str:
    """Sorted keys, no whitespace, ASCII only: the same bytes for the same value on every machine."""
    return _CANONICAL.encode(value)


def canonical_bytes(seq: int, event: AuditEvent) -> bytes:
    return canonical_json(content(seq, event)).encode("ascii")


def chain_hash(prev_hash: str, seq: int, event: AuditEvent) -> str:
    """SHA-256 (hex) over the previous hash and the canonical content, ``seq`` included."""
    digest = hashlib.sha256()
    digest.update(prev_hash.encode("ascii"))
    digest.update(b"\n")
    digest.update(canonical_bytes(seq, event))
    return digest.hexdigest()


def export_line(record: AuditRecord) -> str:
    """One JSON Lines line: the content plus ``prev_hash`` and ``hash``, so a copy can be checked on its own."""
    return canonical_json({**content(record.seq, record.event), "prev_hash": record.prev_hash, "hash": record.hash})


class ProblemKind(StrEnum):
    EDITED = "edited"
    REMOVED = "removed"
    REORDERED = "reordered"


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first place the chain breaks: at ``seq`` (for a removal, the first missing one), and why."""

    seq: int
    kind: ProblemKind
    #: For the operator running ``nidan audit verify`` (the command line stays English): a plain string, no msgid.
    message: str
    #: The stored event where the break was noticed (``None`` when events at the end are missing).
    record: AuditRecord | None


def verify_chain(records: Iterable[AuditRecord], head: ChainHead | None = None) -> ChainProblem | None:
    """Check ``records`` (in the order stored by ``seq``) link up from genesis; the first problem, or ``None``.

    With ``head``, the event at ``head.seq`` must carry ``head.hash`` and must exist, so events removed from the
    end are caught too. Events after the head (appended while this runs) are checked like the rest.
    """
    expected_seq, expected_prev = 1, GENESIS_HASH
    iterator = iter(records)
    for record in iterator:
        problem = _check(record, expected_seq, expected_prev, iterator)
        if problem is None and head is not None and record.seq == head.seq and record.hash != head.hash:
            problem = ChainProblem(
                record.seq,
                ProblemKind.EDITED,
                "the chain head records another hash for this event: it was rewritten after it was written",
                record,
            )
        if problem is not None:
            return problem
        expected_seq, expected_prev = record.seq + 1, record.hash
    if head is not None and head.seq >= expected_seq:
        return ChainProblem(
            expected_seq,
            ProblemKind.REMOVED,
            f"{_events(expected_seq, head.seq)} missing from the end (the chain head records seq {head.seq})",
            None,
        )
    return None


def _events(first: int, last: int) -> str:
    return f"event {first} is" if first == last else f"events {first} to {last} are"


def _check(
    record: AuditRecord, expected_seq: int, expected_prev: str, rest: Iterator[AuditRecord]
) -> ChainProblem | None:
    previous = expected_seq - 1
    if record.seq < expected_seq:
        return ChainProblem(
            record.seq, ProblemKind.REORDERED, f"seq {record.seq} comes after seq {previous}: out of order", record
        )
    if record.seq > expected_seq:
        message = f"{_events(expected_seq, record.seq - 1)} missing (the next stored event is seq {record.seq})"
        return ChainProblem(expected_seq, ProblemKind.REMOVED, message, record)
    intact = chain_hash(record.prev_hash, record.seq, record.event) == record.hash
    if record.prev_hash == expected_prev:
        if intact:
            return None
        return ChainProblem(record.seq, ProblemKind.EDITED, "its content no longer matches its hash", record)
    # This event does not follow the one before it. If the event that does follow it is stored further on, the
    # two were swapped or moved; otherwise something between them was removed, or the one before was replaced.
    for later in rest:
        if later.prev_hash == expected_prev:
            return ChainProblem(
                record.seq,
                ProblemKind.REORDERED,
                f"the event written after seq {previous} is stored at seq {later.seq}; this one was moved here",
                record,
            )
    if intact:
        message = (
            f"it does not follow seq {previous} (its prev_hash differs): an event between them was removed, or seq "
            f"{previous} was replaced"
        )
        return ChainProblem(record.seq, ProblemKind.REMOVED, message, record)
    message = "its content and its link to the event before no longer match its hash: it was edited or renumbered"
    return ChainProblem(record.seq, ProblemKind.EDITED, message, record)
