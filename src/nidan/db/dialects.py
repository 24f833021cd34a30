"""The few statements SQLite and PostgreSQL spell differently, in one place.

Each dialect's module is imported where its statement is built: a process on SQLite never loads SQLAlchemy's
PostgreSQL dialect (about 2 MiB of a serving worker), nor one on PostgreSQL the SQLite one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from nidan.db import tables as t
from nidan.db.prepared import Prepared

#: Run as a statement that writes: it takes the process's writer turn first (``SqliteWriterQueue``).
_BEGIN_IMMEDIATE = Prepared(text("BEGIN IMMEDIATE"))


def insert_ignoring_conflicts(connection: Connection) -> Any:
    """``INSERT INTO throttles ... ON CONFLICT DO NOTHING``: no row returned means another writer was first."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(t.throttles).on_conflict_do_nothing()
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(t.throttles).on_conflict_do_nothing()


def take_sqlite_write_lock(connection: Connection) -> None:
    """Take SQLite's one write lock now, for the rest of the transaction, without writing anything.

    pysqlite opens a transaction only at the first INSERT/UPDATE/DELETE; until then each SELECT stands alone. So
    when no transaction is open, ``BEGIN IMMEDIATE`` opens one holding the write lock (whatever is read next is
    read under it), and when one is open a write already took the lock. (A no-op UPDATE did this before, but it
    rewrote the row: a page of WAL per call.)
    """
    if not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        _BEGIN_IMMEDIATE.rowcount(connection)
