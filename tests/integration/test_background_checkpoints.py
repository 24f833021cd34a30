"""A serving process copies SQLite's WAL back into the database from a thread of its own: its commits no longer
checkpoint (only past a backstop), the thread does, and it stops with the process's serving."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from nidan.db.checkpoints import BACKSTOP_PAGES, DEFAULT_PAGES, BackgroundCheckpoints
from nidan.db.engine import make_engine

ON_SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    created = make_engine(database_url)
    yield created
    created.dispose()


def autocheckpoint(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one())


def write_pages(engine: Engine, rows: int) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS filler (id INTEGER PRIMARY KEY, blob BLOB)"))
    for _ in range(rows):
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO filler (blob) VALUES (randomblob(3000))"))


def wal_frames(engine: Engine) -> tuple[int, int]:
    """(frames in the WAL, frames of it already copied back), without copying any."""
    with engine.connect() as connection:
        _, log, copied = connection.exec_driver_sql("PRAGMA wal_checkpoint(NOOP)").one()
    return int(log), int(copied)


@ON_SQLITE
def test_commits_leave_checkpoints_to_the_thread_and_it_makes_them(engine: Engine) -> None:
    assert autocheckpoint(engine) == DEFAULT_PAGES
    checkpoints = BackgroundCheckpoints(engine, interval=0.05)
    checkpoints.start()
    try:
        assert autocheckpoint(engine) == BACKSTOP_PAGES
        write_pages(engine, 200)
        deadline = time.monotonic() + 10
        while checkpoints.runs < 3 or wal_frames(engine)[0] != wal_frames(engine)[1]:
            assert time.monotonic() < deadline, f"the WAL was not copied back: {wal_frames(engine)}"
            time.sleep(0.05)
    finally:
        checkpoints.stop()
    assert autocheckpoint(engine) == DEFAULT_PAGES  # a new connection, once serving stopped
    runs = checkpoints.runs
    time.sleep(0.2)
    assert checkpoints.runs == runs  # the thread has stopped


def test_nothing_runs_for_a_database_server() -> None:
    server = make_engine("postgresql+psycopg://nidan@127.0.0.1:1/nidan")  # never connected to
    checkpoints = BackgroundCheckpoints(server, interval=0.01)
    checkpoints.start()
    time.sleep(0.05)
    checkpoints.stop()
    assert checkpoints.runs == 0
    server.dispose()
