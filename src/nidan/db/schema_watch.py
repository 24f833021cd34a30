"""A database without nidan's schema under a running server: ``DatabaseNotMigrated`` (503), logged once.

The database was dropped and recreated empty, a restore stopped half-way, or the schema is at an older migration
while nidan runs: a statement names a table or column that is not there. Every request then fails the same way, so
this is one condition for the operator to fix, not a fault to trace once per request. The unit of work asks
``missing_schema`` about each database error that ends it (SQLAlchemy's own statements and the ``Prepared`` ones
alike: ``Prepared`` raises the driver's error as SQLAlchemy's) and answers ``DatabaseNotMigrated``; ``SchemaWatch``
logs it once per engine, until the schema is at the head revision again.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from nidan.db.engine import HEAD_REVISION
from nidan.errors import DatabaseNotMigrated

log = logging.getLogger("nidan.db")

#: PostgreSQL's undefined_table and undefined_column. The SQLSTATE, not the message: the message is translated
#: with the server's ``lc_messages``.
_UNDEFINED_SQLSTATES = frozenset({"42P01", "42703"})
#: SQLite has no such codes (both are SQLITE_ERROR); these are its messages for a missing table, a missing column
#: read, and a missing column written by an INSERT.
_SQLITE_MISSING_PREFIXES = ("no such table:", "no such column:")
_SQLITE_MISSING_INSERT_COLUMN = " has no column named "


def missing_schema(dialect: Dialect, error: BaseException) -> bool:
    """Whether ``error`` (SQLAlchemy's, or the driver's own) says that a table or column is not in the database."""
    driver_error = error.orig if isinstance(error, DBAPIError) else error
    if dialect.name == "postgresql":
        return getattr(driver_error, "sqlstate", None) in _UNDEFINED_SQLSTATES
    if dialect.name == "sqlite" and isinstance(driver_error, dialect.loaded_dbapi.OperationalError):
        message = str(driver_error)
        return message.startswith(_SQLITE_MISSING_PREFIXES) or _SQLITE_MISSING_INSERT_COLUMN in message
    return False


def schema_revision(connection: Connection) -> str:
    """The revision ``alembic_version`` names (``none`` without it, ``unknown`` if it cannot be read), ending the
    transaction it opens. Never raises: it only informs a log line or a check, on a unit of work's way out."""
    try:
        try:
            found = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
        finally:
            connection.rollback()
    except SQLAlchemyError as error:
        return "none" if missing_schema(connection.dialect, error) else "unknown"
    return ", ".join(found) or "none"


_WATCHES: weakref.WeakKeyDictionary[Engine, SchemaWatch] = weakref.WeakKeyDictionary()
_WATCHES_LOCK = threading.Lock()


class SchemaWatch:
    """Whether an engine's schema was found missing, so that the condition is logged once, not per request.

    The first thread to find it missing logs one error line; the lock makes that one thread among those finding it
    together, and the threads after it log nothing. It is "healthy" again (one warning line says so) only once a
    unit of work has ended well AND ``alembic_version`` names the head revision: a schema missing only in part (an
    older migration) lets other requests succeed, and were each success taken for a recovery, every failure after
    one would log again. That check runs on the unit's own connection, only while the schema is missing, no sooner
    than ``PROBE_INTERVAL`` seconds after the error line and then at most that often, so even a schema at the head
    revision with a table dropped by hand logs at most one error line per interval. It only decides what is logged:
    every request is answered by what its own statements met. One line per process and engine: each worker process
    logs its own.
    """

    #: Seconds between checks of the revision while the schema is missing (class attribute: tests shorten it).
    PROBE_INTERVAL = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Read without the lock on every unit of work's end: a stale ``False`` only delays a check to the next unit.
        self.missing = False
        self._next_probe = 0.0

    @staticmethod
    def of(engine: Engine) -> SchemaWatch:
        with _WATCHES_LOCK:
            watch = _WATCHES.get(engine)
            if watch is None:
                watch = _WATCHES[engine] = SchemaWatch()
            return watch

    def not_migrated(self, connection: Connection, error: BaseException) -> DatabaseNotMigrated:
        """The answer to ``error`` (``missing_schema`` said so) on ``connection``, logged if it is the first."""
        with self._lock:
            first = not self.missing
            if first:
                self.missing = True
                self._next_probe = time.monotonic() + self.PROBE_INTERVAL
        if first:
            log.error(
                "database schema missing: %s (database at revision %s, this nidan needs %s). Requests that need "
                "it are answered 503 database_not_migrated until the migrations are applied (restart `nidan serve`) "
                "or a backup is restored (`nidan restore`); logged once until then",
                str(error.orig if isinstance(error, DBAPIError) else error).splitlines()[0],
                schema_revision(connection),
                HEAD_REVISION,
            )
        return DatabaseNotMigrated()

    def ended_well(self, connection: Connection) -> None:
        """A unit of work on ``connection`` ended without an error (its transaction is over): while the schema is
        missing, maybe check whether it is back."""
        if not self.missing:  # the usual case, on every unit of work: one attribute read
            return
        now = time.monotonic()
        with self._lock:
            if not self.missing or now < self._next_probe:
                return
            self._next_probe = now + self.PROBE_INTERVAL
        revision = schema_revision(connection)
        if revision != HEAD_REVISION:
            return
        with self._lock:
            back, self.missing = self.missing, False
        if back:
            log.warning("database schema in place again (revision %s): requests are answered normally", revision)
