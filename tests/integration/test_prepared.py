"""``Prepared`` statements run on the driver's cursor, and must answer exactly as SQLAlchemy's execution would:
the same rows and types, the same row counts, the same exceptions, and SQLite's writer turn taken."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from nidan.db import tables as t
from nidan.db.engine import SqliteWriterQueue, make_engine, upgrade
from nidan.db.prepared import Prepared

WHEN = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)
_users = t.users.c
USER_BY_KEY = select(t.users).where(_users.username_key == bindparam("key"))
RECORD_SIGN_IN = update(t.users).where(_users.id == bindparam("user_id")).values(last_sign_in_at=bindparam("at"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    created = make_engine(database_url)
    upgrade(created)
    with created.begin() as connection:
        connection.execute(
            insert(t.users).values(
                username="Ada",
                username_key="ada",
                email="ada@example.org",
                role="user",
                password_hash="$argon2id$x",
                created_at=WHEN,
            )
        )
    yield created
    created.dispose()


def test_rows_are_those_sqlalchemy_returns_with_the_same_types(engine: Engine) -> None:
    with engine.connect() as connection:
        expected = connection.execute(USER_BY_KEY, {"key": "ada"}).one()
        got = Prepared(USER_BY_KEY).first(connection, {"key": "ada"})
    assert tuple(got) == tuple(expected)
    assert got._fields == tuple(expected._fields)
    assert got.created_at == WHEN and got.created_at.tzinfo is UTC  # UtcDateTime's processing, on both back ends
    assert got.last_sign_in_at is None


def test_all_rows_are_those_sqlalchemy_returns_in_order(engine: Engine) -> None:
    with engine.begin() as connection:
        for name in ("Bea", "Cy"):
            values = {"username": name, "username_key": name.lower(), "email": f"{name}@example.org"}
            connection.execute(insert(t.users).values(**values, role="user", password_hash="x", created_at=WHEN))
    everyone = select(t.users).where(_users.created_at == bindparam("at")).order_by(_users.username_key.desc())
    with engine.connect() as connection:
        expected = connection.execute(everyone, {"at": WHEN}).all()
        got = Prepared(everyone).all(connection, {"at": WHEN})
        none = Prepared(USER_BY_KEY).all(connection, {"key": "nobody"})
    assert [tuple(row) for row in got] == [tuple(row) for row in expected]
    assert [row.username for row in got] == ["Cy", "Bea", "Ada"]
    assert none == []


def test_no_row_is_none(engine: Engine) -> None:
    with engine.connect() as connection:
        assert Prepared(USER_BY_KEY).first(connection, {"key": "nobody"}) is None


def test_a_write_counts_its_rows_and_processes_its_parameters(engine: Engine) -> None:
    record = Prepared(RECORD_SIGN_IN)
    with engine.connect() as connection:
        user_id = connection.execute(USER_BY_KEY, {"key": "ada"}).one().id
        assert record.rowcount(connection, {"user_id": user_id, "at": WHEN}) == 1
        assert record.rowcount(connection, {"user_id": user_id + 1000, "at": WHEN}) == 0
        connection.commit()
    with engine.connect() as connection:
        assert connection.execute(USER_BY_KEY, {"key": "ada"}).one().last_sign_in_at == WHEN


def test_defaults_of_literal_values_are_bound(engine: Engine) -> None:
    """A literal in the statement (``role == "user"``) becomes a bound parameter with its value."""
    users_only = Prepared(select(_users.username).where(_users.username_key == bindparam("key"), _users.role == "user"))
    with engine.connect() as connection:
        assert users_only.first(connection, {"key": "ada"}).username == "Ada"


def test_a_driver_error_is_sqlalchemys_exception_and_the_transaction_can_roll_back(engine: Engine) -> None:
    duplicate = Prepared(
        insert(t.users).values(
            username=bindparam("name"),
            username_key=bindparam("key"),
            email="ada2@example.org",
            role="user",
            password_hash="x",
            created_at=bindparam("at"),
        )
    )
    with engine.connect() as connection:
        with pytest.raises(IntegrityError):
            duplicate.rowcount(connection, {"name": "ADA", "key": "ada", "at": WHEN})
        connection.rollback()
        assert connection.execute(select(_users.username)).scalars().all() == ["Ada"]


def test_a_write_on_sqlite_takes_the_writer_turn_until_the_transaction_ends(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'turn.db'}")
    upgrade(engine)
    queue = SqliteWriterQueue.of(engine)
    assert queue is not None
    with engine.connect() as connection:
        Prepared(USER_BY_KEY).first(connection, {"key": "ada"})
        assert not queue.taken()  # a read takes no turn
        Prepared(RECORD_SIGN_IN).rowcount(connection, {"user_id": 1, "at": WHEN})
        assert queue.taken()
        connection.commit()
        assert not queue.taken()


def test_with_the_statement_log_on_statements_are_logged_as_before(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"), engine.connect() as connection:
        row = Prepared(USER_BY_KEY).first(connection, {"key": "ada"})
    assert row.username == "Ada"
    assert any("FROM users" in record.getMessage() for record in caplog.records)
