"""The few statements SQLite and PostgreSQL spell differently, in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from nidan.db import tables as t


def insert_ignoring_conflicts(connection: Connection) -> Any:
    """``INSERT INTO throttles ... ON CONFLICT DO NOTHING``: no row returned means another writer was first."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(t.throttles).on_conflict_do_nothing()
    return sqlite.insert(t.throttles).on_conflict_do_nothing()
