"""Backoff state, shared by every process through the database and changed only by compare-and-set."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, case, select, update

from nidan.core.backoff import ThrottleState
from nidan.core.models import ThrottleScope
from nidan.db import tables as t
from nidan.db.dialects import insert_ignoring_conflicts
from nidan.db.prepared import Prepared

c = t.throttles.c
#: Built once (bound parameters): every verify and sign-in reads a counter.
_STATE = Prepared(
    select(c.failures, c.blocked_until, c.locked_at, c.version, c.pending, c.pending_until).where(
        c.scope == bindparam("scope"), c.key == bindparam("throttle_key")
    )
)
_NOT_CLEAR = (c.failures > 0) | c.blocked_until.is_not(None) | c.locked_at.is_not(None)
# Built once likewise: every sign-in writes a counter. (Bound names differ from column names: an UPDATE reserves
# those for its SET clause.)
_SET_IF_VERSION = Prepared(
    update(t.throttles)
    .where(
        c.scope == bindparam("throttle_scope"),
        c.key == bindparam("throttle_key"),
        c.version == bindparam("expected_version"),
    )
    .values(
        failures=bindparam("new_failures"),
        blocked_until=bindparam("new_blocked_until"),
        locked_at=bindparam("new_locked_at"),
        version=bindparam("new_version"),
        updated_at=bindparam("at"),
        pending=bindparam("new_pending"),
        pending_until=bindparam("new_pending_until"),
    )
)
_RESET = Prepared(
    update(t.throttles)
    .where(c.scope == bindparam("throttle_scope"), c.key == bindparam("throttle_key"), _NOT_CLEAR)
    .values(failures=0, blocked_until=None, locked_at=None, version=c.version + 1, updated_at=bindparam("at"))
)
#: A reserved attempt succeeded: one relative UPDATE (no read, no retry), written even when no failure was counted,
#: since its turn must end.
_RESET_RELEASING = Prepared(
    update(t.throttles)
    .where(c.scope == bindparam("throttle_scope"), c.key == bindparam("throttle_key"))
    .values(
        failures=0,
        blocked_until=None,
        locked_at=None,
        pending=case((c.pending > 0, c.pending - 1), else_=0),
        version=c.version + 1,
        updated_at=bindparam("at"),
    )
)
#: The first row's INSERT, spelt per dialect: built once per dialect name.
_INSERT_FIRST_ROW: dict[str, Prepared] = {}
_ROW_COLUMNS = (
    "scope",
    "key",
    "failures",
    "blocked_until",
    "locked_at",
    "version",
    "updated_at",
    "pending",
    "pending_until",
)


def _insert_first_row(connection: Connection) -> Prepared:
    name = connection.dialect.name
    statement = _INSERT_FIRST_ROW.get(name)
    if statement is None:
        # RETURNING, not rowcount: drivers disagree on the row count of a conflict-ignoring insert.
        returning = insert_ignoring_conflicts(connection).returning(c.id)
        statement = _INSERT_FIRST_ROW[name] = Prepared(returning, columns=_ROW_COLUMNS)
    return statement


def _state(row: Any) -> ThrottleState:
    return ThrottleState(
        failures=row.failures,
        blocked_until=row.blocked_until,
        locked_at=row.locked_at,
        version=row.version,
        pending=row.pending,
        pending_until=row.pending_until,
    )


class SqlThrottleRepository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def get(self, scope: ThrottleScope, key: str) -> ThrottleState | None:
        row = _STATE.first(self._c, {"scope": scope.value, "throttle_key": key})
        return _state(row) if row else None

    def compare_and_set(
        self, scope: ThrottleScope, key: str, expected: ThrottleState, new: ThrottleState, at: datetime
    ) -> bool:
        if expected.version == 0:
            # Whoever inserts the first row wins; the loser sees 0 rows and reads again. No savepoint: pysqlite's
            # implicit transactions make SAVEPOINT commit when it comes first, so ON CONFLICT is used instead.
            row = {
                "scope": scope.value,
                "key": key,
                "failures": new.failures,
                "blocked_until": new.blocked_until,
                "locked_at": new.locked_at,
                "version": expected.version + 1,
                "updated_at": at,
                "pending": new.pending,
                "pending_until": new.pending_until,
            }
            return _insert_first_row(self._c).first(self._c, row) is not None
        changed = _SET_IF_VERSION.rowcount(
            self._c,
            {
                "throttle_scope": scope.value,
                "throttle_key": key,
                "expected_version": expected.version,
                "new_failures": new.failures,
                "new_blocked_until": new.blocked_until,
                "new_locked_at": new.locked_at,
                "new_version": expected.version + 1,
                "at": at,
                "new_pending": new.pending,
                "new_pending_until": new.pending_until,
            },
        )
        return changed == 1

    def reset(self, scope: ThrottleScope, key: str, at: datetime, *, releasing: bool = False) -> int:
        statement = _RESET_RELEASING if releasing else _RESET
        return statement.rowcount(self._c, {"throttle_scope": scope.value, "throttle_key": key, "at": at})

    def list_with_prefix(self, scope: ThrottleScope, prefix: str) -> Sequence[tuple[str, ThrottleState]]:
        query = (
            select(c.key, c.failures, c.blocked_until, c.locked_at, c.version, c.pending, c.pending_until)
            .where(c.scope == scope.value, c.key.startswith(prefix, autoescape=True), _NOT_CLEAR)
            .order_by(c.key)
        )
        return [(row.key, _state(row)) for row in self._c.execute(query)]

    def reset_with_prefix(self, scope: ThrottleScope, prefix: str, at: datetime) -> int:
        matching = (c.scope == scope.value, c.key.startswith(prefix, autoescape=True), _NOT_CLEAR)
        return self._c.execute(_clear(at).where(*matching)).rowcount


def _clear(at: datetime) -> Any:
    return update(t.throttles).values(
        failures=0, blocked_until=None, locked_at=None, version=c.version + 1, updated_at=at
    )
