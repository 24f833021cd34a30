"""Engine construction and schema migration, the same for SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import ConnectionPoolEntry

from nidan.db.checkpoints import autocheckpoint_pages
from nidan.errors import ConfigurationError, DatabaseUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only where a migration is looked at or run: a serving process whose database is current
# never needs it, and it costs about 11 MB of memory per process.

#: The newest migration. ``tests/integration/test_migrations.py`` checks it is Alembic's head.
HEAD_REVISION = "0011"

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


#: How long SQLite waits for its write lock (seconds), in the busy handler and in the process's own queue alike.
SQLITE_LOCK_WAIT = 30
_READ_ONLY_PREFIXES = ("SELECT", "PRAGMA")
_QUEUES: weakref.WeakKeyDictionary[Engine, SqliteWriterQueue] = weakref.WeakKeyDictionary()


class SqliteWriterQueue:
    """The threads of one process take turns at SQLite's one write lock through a mutex, held from a
    transaction's first write to its end.

    Without it they all race for the file lock, and the losers sleep in SQLite's busy handler (1, 2, 5 ... 100 ms)
    however soon the lock comes free: under load most of a request's time was that sleep. A mutex wakes the next
    writer the moment the lock is released. Other processes on the same file still meet the busy handler.
    """

    def __init__(self, engine: Engine) -> None:
        self._mutex = threading.Lock()
        #: The thread whose transaction holds the turn (``held_here``).
        self._holder: int | None = None
        _QUEUES[engine] = self
        event.listen(engine, "before_cursor_execute", self._before_execute)
        for ended in ("commit", "rollback"):
            event.listen(engine, ended, self._transaction_ended)
        # A connection returned to the pool never keeps its turn, whatever happened to its transaction.
        event.listen(engine, "checkin", self._checked_in)

    @staticmethod
    def of(engine: Engine) -> SqliteWriterQueue | None:
        return _QUEUES.get(engine)

    def taken(self) -> bool:
        """Whether a transaction of this process holds the turn now."""
        return self._mutex.locked()

    def held_here(self) -> bool:
        """Whether a transaction of the calling thread holds the turn: no slow work (argon2) may run then, or
        every other writer of the process (and the event loop's inline checks) waits for it."""
        return self._holder == threading.get_ident() and self._mutex.locked()

    def take_turn(self, conn: Connection) -> None:
        """The turn of ``conn``'s transaction, kept until it ends: before each statement that writes."""
        if conn.info.get(self):
            return
        if not self._mutex.acquire(timeout=SQLITE_LOCK_WAIT):
            raise DatabaseUnavailable()
        self._holder = threading.get_ident()
        conn.info[self] = True

    def _before_execute(self, conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:6].upper() not in _READ_ONLY_PREFIXES:
            self.take_turn(conn)

    def _release(self, info: dict[Any, Any]) -> None:
        if info.pop(self, False):
            self._holder = None
            self._mutex.release()

    def _transaction_ended(self, conn: Connection) -> None:
        self._release(conn.info)

    def _checked_in(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        self._release(record.info)


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10, pool_timeout: float = 10) -> Engine:
    """``pool_size`` connections are kept open, ``max_overflow`` more are opened under load, and a request that finds
    none free waits ``pool_timeout`` seconds (then ``DatabaseUnavailable``), on SQLite as on PostgreSQL: an SQLite
    connection past the kept ones was opened (with its PRAGMAs) and closed again for each request."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_LOCK_WAIT},
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
        )
        SqliteWriterQueue(engine)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the writer; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            # 512 KiB of page cache per connection instead of 2 MiB: a process keeps up to ten connections, the
            # operating system caches the file anyway, and the hot pages (indexes, the audit log's tail) are few.
            cursor.execute("PRAGMA cache_size=-512")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_LOCK_WAIT * 1000}")
            # A serving process checkpoints from a thread of its own (nidan.db.checkpoints); others as SQLite does.
            cursor.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint_pages(engine)}")
            cursor.close()

        return engine
    # A request that finds every connection busy waits this long for one, then gets 503 database_unavailable.
    # No ping before each use (a round trip per transaction): a connection the server dropped fails on use, is
    # answered 503 (see SqlUnitOfWork), and makes the pool reconnect.
    return create_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=pool_timeout)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def upgrade_unless_current(engine: Engine) -> None:
    """``upgrade`` to the head, after a one-query check that it is needed at all."""
    try:
        with engine.connect() as connection:
            current = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    except SQLAlchemyError:  # no table yet: a new database
        current = []
    if list(current) == [HEAD_REVISION]:
        return
    from alembic.script import ScriptDirectory

    known = {script.revision for script in ScriptDirectory.from_config(alembic_config(engine)).walk_revisions()}
    if unknown := [revision for revision in current if revision not in known]:
        # Alembic would stop with "Can't locate revision" and a traceback: say what happened and what to run.
        raise ConfigurationError(
            f"The database is at schema revision {', '.join(unknown)}, which this version of nidan does not know: "
            "a newer nidan migrated it. Run that version (or a newer one), or restore a backup made with this one "
            "into another database."
        )
    upgrade(engine)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def pending_migrations(engine: Engine) -> list[str]:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(engine))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    heads = set(script.get_heads())
    if current == heads:
        return []
    return [rev.revision for rev in script.walk_revisions() if rev.revision not in current]
