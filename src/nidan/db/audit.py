"""The audit log's storage: appending under a lock on the one chain-head row, and the queries that read it back."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, insert, or_, select, update

from nidan.core.audit import AuditEvent, AuditQuery, AuditRecord, ChainHead, chain_hash
from nidan.db import tables as t
from nidan.db.prepared import Prepared
from nidan.errors import ConfigurationError

HEAD_ID = 1
#: Built once, as ``json.dumps(..., sort_keys=True, separators=(",", ":"))`` would build it per event.
_DETAILS = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_head = t.audit_chain_head.c
# Built once: every audited request appends, and building these anew per call cost more than running them.
# The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) until the transaction ends, so appends queue
# there. It changes only ``seq``: RETURNING gives the new seq and the previous event's hash.
_TAKE_NEXT_SEQ = Prepared(
    update(t.audit_chain_head).where(_head.id == HEAD_ID).values(seq=_head.seq + 1).returning(_head.seq, _head.hash)
)
_INSERT_EVENT = Prepared(
    insert(t.audit_events), columns=[column.name for column in t.audit_events.c if not column.primary_key]
)
_SET_HEAD = Prepared(
    update(t.audit_chain_head).where(_head.id == HEAD_ID).values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


def _details(raw: str) -> dict[str, Any]:
    """The stored details; text that is no JSON object any more (edited by hand) is kept whole, to fail the hash."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"unreadable_details": raw}


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        event=AuditEvent(
            occurred_at=row.occurred_at,
            event_type=row.event_type,
            actor_user_id=row.actor_user_id,
            actor_username=row.actor_username,
            subject_user_id=row.subject_user_id,
            subject_username=row.subject_username,
            client_ip=row.client_ip,
            user_agent=row.user_agent,
            correlation_id=row.correlation_id,
            details=_details(row.details),
        ),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


class SqlAuditRepository:
    """Appends lock the chain head row (the write lock on SQLite) until the transaction ends, so after its first
    append a transaction knows the head without reading it: the next appends skip that statement. A savepoint
    rolled back (``forget_head``) may have undone an append, so the head is read again after one."""

    def __init__(self, connection: Connection) -> None:
        self._c = connection
        self._head: ChainHead | None = None

    def forget_head(self) -> None:
        self._head = None

    def append(self, event: AuditEvent) -> AuditRecord:
        if self._head is None:
            taken = _TAKE_NEXT_SEQ.first(self._c)
            if taken is None:
                raise ConfigurationError("The audit log's chain head row is missing: the database was altered by hand.")
            seq, prev_hash = int(taken.seq), str(taken.hash)
        else:
            seq, prev_hash = self._head.seq + 1, self._head.hash
        digest = chain_hash(prev_hash, seq, event)
        row: dict[str, object] = {
            "seq": seq,
            "occurred_at": event.occurred_at,
            "event_type": str(event.event_type),
            "actor_user_id": event.actor_user_id,
            "actor_username": event.actor_username,
            "subject_user_id": event.subject_user_id,
            "subject_username": event.subject_username,
            "client_ip": event.client_ip,
            "user_agent": event.user_agent,
            "correlation_id": event.correlation_id,
            "details": _DETAILS.encode(dict(event.details)),
            "prev_hash": prev_hash,
            "hash": digest,
        }
        _INSERT_EVENT.rowcount(self._c, row)
        _SET_HEAD.rowcount(self._c, {"new_seq": seq, "new_hash": digest})
        self._head = ChainHead(seq=seq, hash=digest)
        return AuditRecord(seq=seq, event=event, prev_hash=prev_hash, hash=digest)

    def head(self) -> ChainHead:
        head = t.audit_chain_head.c
        row = self._c.execute(select(head.seq, head.hash).where(head.id == HEAD_ID)).first()
        if row is None:
            raise ConfigurationError("The audit log's chain head row is missing: the database was altered by hand.")
        return ChainHead(seq=int(row.seq), hash=str(row.hash))

    def list_for_user(self, user_id: int, *, limit: int, before_seq: int | None) -> Sequence[AuditRecord]:
        c = t.audit_events.c
        query = select(t.audit_events).where(or_(c.subject_user_id == user_id, c.actor_user_id == user_id))
        return self._newest_first(query, limit, before_seq)

    def search(self, query: AuditQuery) -> Sequence[AuditRecord]:
        c = t.audit_events.c
        statement = select(t.audit_events)
        if query.user_id is not None:
            statement = statement.where(or_(c.subject_user_id == query.user_id, c.actor_user_id == query.user_id))
        if query.username is not None:
            name = query.username.lower()
            statement = statement.where(
                or_(func.lower(c.subject_username) == name, func.lower(c.actor_username) == name)
            )
        if query.event_type is not None:
            statement = statement.where(c.event_type == query.event_type)
        if query.since is not None:
            statement = statement.where(c.occurred_at >= query.since)
        if query.until is not None:
            statement = statement.where(c.occurred_at < query.until)
        return self._newest_first(statement, query.limit, query.before_seq)

    def _newest_first(self, query: Select[Any], limit: int, before_seq: int | None) -> Sequence[AuditRecord]:
        c = t.audit_events.c
        if before_seq is not None:
            query = query.where(c.seq < before_seq)
        return [_record(row) for row in self._c.execute(query.order_by(c.seq.desc()).limit(limit))]

    def iterate(self, *, batch_size: int = 500) -> Iterator[AuditRecord]:
        c = t.audit_events.c
        after = 0
        while True:
            rows = self._c.execute(select(t.audit_events).where(c.seq > after).order_by(c.seq).limit(batch_size)).all()
            for row in rows:
                yield _record(row)
            if len(rows) < batch_size:
                return
            after = rows[-1].seq
