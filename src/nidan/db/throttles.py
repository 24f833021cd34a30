"""Backoff state, shared by every process through the database and changed only by compare-and-set."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from nidan.core.backoff import ThrottleState
from nidan.core.models import ThrottleScope
from nidan.db import tables as t
from nidan.db.dialects import insert_ignoring_conflicts

c = t.throttles.c
#: Built once (bound parameters): every verify and sign-in reads a counter.
_STATE = select(c.failures, c.blocked_until, c.locked_at, c.version).where(
    c.scope == bindparam("scope"), c.key == bindparam("throttle_key")
)


def _state(row: Any) -> ThrottleState:
    return ThrottleState(
        failures=row.failures, blocked_until=row.blocked_until, locked_at=row.locked_at, version=row.version
    )


class SqlThrottleRepository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, scope: ThrottleScope, key: str) -> ThrottleState | None:
        row = self._c.execute(_STATE, {"scope": scope.value, "throttle_key": key}).first()
        return _state(row) if row else None

    def compare_and_set(
        self, scope: ThrottleScope, key: str, expected: ThrottleState, new: ThrottleState, at: datetime
    ) -> bool:
        values = {
            "failures": new.failures,
            "blocked_until": new.blocked_until,
            "locked_at": new.locked_at,
            "version": expected.version + 1,
            "updated_at": at,
        }
        if expected.version == 0:
            # Whoever inserts the first row wins; the loser sees 0 rows and reads again. No savepoint: pysqlite's
            # implicit transactions make SAVEPOINT commit when it comes first, so ON CONFLICT is used instead.
            first = insert_ignoring_conflicts(self._c).values(scope=scope.value, key=key, **values)
            # RETURNING, not rowcount: drivers disagree on the row count of a conflict-ignoring insert.
            return self._c.execute(first.returning(t.throttles.c.id)).first() is not None
        result = self._c.execute(
            update(t.throttles)
            .where(c.scope == scope.value, c.key == key, c.version == expected.version)
            .values(**values)
        )
        return result.rowcount == 1

    def reset(self, scope: ThrottleScope, key: str, at: datetime) -> int:
        return self._c.execute(_clear(at).where(c.scope == scope.value, c.key == key, _NOT_CLEAR)).rowcount

    def list_with_prefix(self, scope: ThrottleScope, prefix: str) -> Sequence[tuple[str, ThrottleState]]:
        query = (
            select(c.key, c.failures, c.blocked_until, c.locked_at, c.version)
            .where(c.scope == scope.value, c.key.startswith(prefix, autoescape=True), _NOT_CLEAR)
            .order_by(c.key)
        )
        return [(row.key, _state(row)) for row in self._c.execute(query)]

    def reset_with_prefix(self, scope: ThrottleScope, prefix: str, at: datetime) -> int:
        matching = (c.scope == scope.value, c.key.startswith(prefix, autoescape=True), _NOT_CLEAR)
        return self._c.execute(_clear(at).where(*matching)).rowcount


_NOT_CLEAR = (c.failures > 0) | c.blocked_until.is_not(None) | c.locked_at.is_not(None)


def _clear(at: datetime) -> Any:
    return update(t.throttles).values(
        failures=0, blocked_until=None, locked_at=None, version=c.version + 1, updated_at=at
    )
