"""SQLite's WAL copied back into the database file by a thread of its own, not by whichever commit comes next.

In WAL mode every commit appends its pages to the ``-wal`` file, and by default the commit that takes the WAL past
1,000 pages copies them all back into the database file and syncs both, inside the request that made it. On a
database of a million users those pages lie all over the file: that request took ten times as long as the others,
and it was the p99 of a verify run (7 ms against a median of 1 ms). A serving process checkpoints in the
background instead, a few times a second (``PASSIVE``: never waiting for a reader or a writer, nor holding one
up); its connections checkpoint themselves only past ``BACKSTOP_PAGES``, should this thread fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref

from sqlalchemy import Engine

log = logging.getLogger("nidan.db")

#: SQLite's own default: a commit that takes the WAL past this many pages checkpoints it.
DEFAULT_PAGES = 1_000
#: With checkpoints in the background, a commit checkpoints only past this many (about 40 MiB of WAL).
BACKSTOP_PAGES = 10_000
#: Seconds between background checkpoints.
INTERVAL = 0.25

_RUNNING: weakref.WeakSet[Engine] = weakref.WeakSet()


def autocheckpoint_pages(engine: Engine) -> int:
    """The ``wal_autocheckpoint`` a new connection of ``engine`` gets."""
    return BACKSTOP_PAGES if engine in _RUNNING else DEFAULT_PAGES


class BackgroundCheckpoints:
    """For an SQLite ``engine`` (nothing happens for another): ``start`` begins checkpointing from a thread of
    its own and reopens the pool's connections so that they leave it to that thread; ``stop`` ends it (and
    reopens them again)."""

    def __init__(self, engine: Engine, interval: float = INTERVAL) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Checkpoints run (the tests look at it).
        self.runs = 0

    def start(self) -> None:
        database = self._engine.url.database
        if self._engine.dialect.name != "sqlite" or not database or database == ":memory:":
            return
        _RUNNING.add(self._engine)
        self._engine.dispose()  # connections opened before keep checkpointing themselves; new ones do not
        self._thread = threading.Thread(target=self._run, args=(database,), name="nidan-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        self._thread = None
        _RUNNING.discard(self._engine)
        self._engine.dispose()  # and the connections checkpoint themselves again

    def _run(self, database: str) -> None:
        try:
            connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("no background WAL checkpoints (%s): commits checkpoint past %d pages", exc, BACKSTOP_PAGES)
            return
        failed = False
        try:
            while not self._stop.wait(self._interval):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.runs += 1
                    failed = False
                except sqlite3.Error as exc:
                    if not failed:  # once per run of failures: a full disk would say so every quarter second
                        log.warning("background WAL checkpoint failed: %s", exc)
                    failed = True
        finally:
            connection.close()
