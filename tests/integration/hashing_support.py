"""A watch on argon2 (DESIGN.md: no slow work while a row lock or SQLite's writer turn is held).

Every password hash or check (``PasswordHashing``) and every recovery-code digest (``recovery.digest``) asks, in the
calling thread, whether that thread is inside a transaction that has written or locked a row. On SQLite the writer
queue is asked whether this thread holds the process's turn; on both back ends the engine's statements (and the
``Prepared`` ones, which go past its events) are watched: a statement other than a plain read, or a ``SELECT ...
FOR UPDATE``, marks the thread until its transaction ends. A hash found there is recorded with the services' calls
that ran it, and the fixture fails the test.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import pytest
from sqlalchemy import Connection, Engine, event
from sqlalchemy.pool import ConnectionPoolEntry

from nidan.bootstrap import Runtime
from nidan.core import recovery
from nidan.core.passwords import PasswordHashing
from nidan.db.engine import SqliteWriterQueue
from nidan.db.prepared import Prepared

P = ParamSpec("P")
R = TypeVar("R")

_READS = ("SELECT", "PRAGMA")
#: Statements that only move within a transaction (a shared one's units): they lock nothing by themselves.
_WITHIN = ("SAVEPOINT", "RELEASE", "ROLLBACK")
_LOCKING_READ = ("FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE")


def _writes_or_locks(statement: str) -> bool:
    head = statement.lstrip().upper()
    if head.startswith(_WITHIN):
        return False
    if head.startswith(_READS):
        return any(lock in head for lock in _LOCKING_READ)
    return True


class WriteWatch:
    """Which threads are inside a transaction that has written or locked a row, on any back end."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._guard = threading.Lock()
        #: id of a connection's info dict -> the thread whose transaction wrote on it.
        self._writing: dict[int, int] = {}
        self._queue = SqliteWriterQueue.of(engine)

    def __enter__(self) -> WriteWatch:
        event.listen(self._engine, "before_cursor_execute", self._executing)
        for ended in ("commit", "rollback"):
            event.listen(self._engine, ended, self._ended)
        event.listen(self._engine, "checkin", self._checked_in)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._executing)
        for ended in ("commit", "rollback"):
            event.remove(self._engine, ended, self._ended)
        event.remove(self._engine, "checkin", self._checked_in)

    def _executing(self, conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if _writes_or_locks(statement):
            with self._guard:
                self._writing.setdefault(id(conn.info), threading.get_ident())

    def prepared(self, run: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any]]:
        """``Prepared._run``, watched: the hot statements go to the driver past SQLAlchemy's events."""

        @wraps(run)
        def watched(prepared: Prepared, connection: Connection, *args: Any) -> tuple[Any, Any]:
            compiled, cursor = run(prepared, connection, *args)
            if connection.engine is self._engine:
                self._executing(connection, cursor, compiled.sql)
            return compiled, cursor

        return watched

    def _ended(self, conn: Connection) -> None:
        with self._guard:
            self._writing.pop(id(conn.info), None)

    def _checked_in(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        with self._guard:
            self._writing.pop(id(record.info), None)

    def why_held(self) -> str | None:
        """What the calling thread holds now, or ``None``."""
        if self._queue is not None and self._queue.held_here():
            return "SQLite's writer turn"
        me = threading.get_ident()
        with self._guard:
            if me in self._writing.values():
                return "a transaction that wrote or locked a row"
        return None


def _service_frames() -> str:
    """The services' calls that led to the hash, outermost first (``signin.complete_mfa > factors.check``)."""
    calls = [
        f"{frame.filename.rsplit('/', 1)[1].removesuffix('.py')}.{frame.name}"
        for frame in traceback.extract_stack()
        if "/nidan/services/" in frame.filename and not frame.name.startswith("<")
    ]
    return " > ".join(calls) or "?"


@dataclass
class HashingWatch:
    writes: WriteWatch
    #: Hashes seen, by kind (``password`` / ``recovery_code``), so a test can tell it ran the path it meant to.
    seen: dict[str, int] = field(default_factory=lambda: {"password": 0, "recovery_code": 0})
    violations: list[str] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str) -> None:
        held = self.writes.why_held()
        with self._guard:
            self.seen[kind] += 1
            if held is not None:
                self.violations.append(f"{kind} hash while holding {held}, in {_service_frames()}")

    def wrap(self, kind: str, function: Callable[P, R]) -> Callable[P, R]:
        @wraps(function)
        def watched(*args: P.args, **kwargs: P.kwargs) -> R:
            self.note(kind)
            return function(*args, **kwargs)

        return watched

    def assert_clean(self) -> None:
        assert self.violations == [], "argon2 ran inside a write:\n" + "\n".join(sorted(set(self.violations)))


@pytest.fixture
def hashing_watch(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[HashingWatch]:
    """Watches every argon2 of ``runtime``'s process; fails the test if one ran inside a write."""
    with WriteWatch(runtime.engine) as writes:
        watch = HashingWatch(writes)
        monkeypatch.setattr(Prepared, "_run", writes.prepared(Prepared._run))
        monkeypatch.setattr(recovery, "digest", watch.wrap("recovery_code", recovery.digest))
        # In the caller's thread, where the transaction is: the work itself may go to the hashing threads.
        for name in ("hash", "verify", "submit"):
            monkeypatch.setattr(PasswordHashing, name, watch.wrap("password", getattr(PasswordHashing, name)))
        yield watch
    watch.assert_clean()
