"""No database connection to be had is a 503 the client may retry, never a 500: the server refusing one (its
connection limit, or down) or none coming free in the pool in time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import SecuritySettings, Settings
from nidan.db.engine import make_engine
from nidan.db.uow import SqlUnitOfWorkFactory
from nidan.errors import DatabaseUnavailable
from nidan.web.app import create_app
from tests.conftest import FAST_SECURITY, FixedClock, PostgresDatabases
from tests.helpers import make_user
from tests.web.api_support import assert_error


def test_a_server_that_refuses_the_connection_is_database_unavailable() -> None:
    engine = make_engine("postgresql+psycopg://nidan@127.0.0.1:1/nidan")  # nothing listens on port 1
    try:
        with pytest.raises(DatabaseUnavailable), SqlUnitOfWorkFactory(engine)():
            pass
    finally:
        engine.dispose()


@pytest.fixture
def one_connection(tmp_path: Path, postgres: PostgresDatabases | None) -> Iterator[Runtime]:
    """A PostgreSQL instance (the pool settings bound its connections; SQLite opens a file) whose pool holds one
    connection and waits a fifth of a second for it."""
    if postgres is None:
        pytest.fail("needs PostgreSQL: set NIDAN_TEST_DATABASE_URL, or deselect with -m 'not postgres'")
    name = postgres.create()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres.url_for(name),
        database_pool_size=1,
        database_max_overflow=0,
        database_pool_timeout_seconds=0.2,
        security=SecuritySettings(**FAST_SECURITY),
    )
    runtime = build_runtime(settings, clock=FixedClock())
    yield runtime
    runtime.engine.dispose()
    postgres.drop(name)


@pytest.mark.postgres
def test_every_connection_busy_is_a_503_to_retry_and_then_it_works(one_connection: Runtime) -> None:
    make_user(one_connection.services, "ada")
    with TestClient(create_app(runtime=one_connection), raise_server_exceptions=False) as client:
        held = one_connection.engine.connect()
        try:
            busy = client.post("/api/v1/auth/login", json={"username": "ada", "password": "wrong password"})
        finally:
            held.close()
        assert_error(busy, 503, "database_unavailable")
        assert busy.headers["retry-after"] == "1"
        # Nothing was counted while the database was out of reach: the retry is an ordinary wrong password.
        again = client.post("/api/v1/auth/login", json={"username": "ada", "password": "wrong password"})
        assert_error(again, 401, "invalid_credentials")


@pytest.mark.postgres
def test_a_connection_the_server_dropped_is_a_503_once_then_the_pool_reconnects(one_connection: Runtime) -> None:
    """A PostgreSQL restart or failover: the pooled connection is dead. That request is answered 503 to retry
    (nothing half-done), and the next one runs on a new connection."""
    make_user(one_connection.services, "ada")
    with TestClient(create_app(runtime=one_connection), raise_server_exceptions=False) as client:
        wrong = {"username": "ada", "password": "wrong password"}
        assert_error(client.post("/api/v1/auth/login", json=wrong), 401, "invalid_credentials")
        # Every backend of this database but our own is ended, as a server restart would end them.
        killer = create_engine(one_connection.engine.url, poolclass=NullPool)
        with killer.connect() as connection:
            ended = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        killer.dispose()
        assert ended == 1
        lost = client.post("/api/v1/auth/login", json=wrong)
        assert_error(lost, 503, "database_unavailable")
        assert lost.headers["retry-after"] == "1"
        one_connection.services.clock.advance(3601)  # type: ignore[attr-defined]  # past any backoff block
        assert_error(client.post("/api/v1/auth/login", json=wrong), 401, "invalid_credentials")
