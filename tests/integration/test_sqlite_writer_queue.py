"""SQLite's writers in one process take turns through a mutex (``SqliteWriterQueue``) instead of sleeping in the
busy handler; the turn is held from a transaction's first write to its end, and never outlives it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, text

from nidan.db import tables as t
from nidan.db.dialects import take_sqlite_write_lock
from nidan.db.engine import SqliteWriterQueue, make_engine, upgrade
from tests.helpers import race

WRITERS = 16


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    created = make_engine(f"sqlite:///{tmp_path / 'queue.db'}")
    upgrade(created)
    return created


def turn_is_free(engine: Engine) -> bool:
    queue = SqliteWriterQueue.of(engine)
    assert queue is not None
    return not queue.taken()


def counter_row(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        connection.execute(text("INSERT INTO counter VALUES (0)"))


def test_many_threads_read_then_write_in_turn_without_a_lost_update(engine: Engine) -> None:
    counter_row(engine)

    def increment(_: int) -> None:
        with engine.connect() as connection:
            take_sqlite_write_lock(connection)
            (n,) = connection.execute(text("SELECT n FROM counter")).one()
            connection.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
            connection.commit()

    race(WRITERS, increment, ())
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == WRITERS
    assert turn_is_free(engine)


def test_reads_do_not_take_a_turn_and_a_write_holds_it_until_commit(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(select(t.users.c.id)).all()
        assert turn_is_free(engine)
        connection.execute(insert(t.audit_chain_head).prefix_with("OR IGNORE").values(id=1, seq=0, hash="0" * 64))
        assert not turn_is_free(engine)
        connection.commit()
    assert turn_is_free(engine)


def test_a_failed_transaction_gives_its_turn_back(engine: Engine) -> None:
    counter_row(engine)
    with pytest.raises(RuntimeError), engine.connect() as connection:
        connection.execute(text("UPDATE counter SET n = 99"))
        assert not turn_is_free(engine)
        raise RuntimeError("the use case failed half-way")
    assert turn_is_free(engine)
    # Rolled back, and another thread writes at once rather than waiting for a turn nobody holds.
    done = threading.Event()

    def write() -> None:
        with engine.begin() as connection:
            connection.execute(text("UPDATE counter SET n = n + 1"))
        done.set()

    threading.Thread(target=write).start()
    assert done.wait(5)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 1
    assert turn_is_free(engine)
