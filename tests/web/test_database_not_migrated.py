"""A database without nidan's schema under a running server (emptied and recreated, or at an older migration) is
503 ``database_not_migrated`` with what to do and a ``Retry-After``, on every face, never a 500; it is logged once,
not once per request, and the server answers normally again as soon as the migrations are applied."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, literal_column, select, table, text
from sqlalchemy.exc import DBAPIError

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import SecuritySettings, Settings
from nidan.db import engine as db_engine
from nidan.db.prepared import Prepared
from nidan.db.schema_watch import SchemaWatch, missing_schema
from nidan.db.uow import SqlUnitOfWorkFactory
from nidan.errors import ConfigurationError, DatabaseNotMigrated, DatabaseUnavailable
from nidan.web.api.v1.verify import VerifyQueue
from nidan.web.app import NidanApp, create_app
from tests.conftest import FAST_SECURITY, FixedClock, PostgresDatabases
from tests.helpers import auth_header, login, make_user, race
from tests.integration.verify_together_support import Counted, api_key
from tests.web.api_support import assert_error
from tests.web.pages_support import assert_support_details, sign_in
from tests.web.verify_support import VERIFY

MESSAGE = DatabaseNotMigrated().message
WRONG = {"username": "alice", "password": "wrong password"}


def empty_the_database(engine: Engine) -> None:
    """What an operator's ``DROP DATABASE`` + ``CREATE DATABASE`` leaves: no table at all, not even Alembic's."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
            return
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # SQLite: tables in any order
        present = MetaData()
        present.reflect(connection)
        present.drop_all(connection)


def not_migrated_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "nidan.db" and r.levelno >= logging.ERROR]


def assert_not_migrated(response: httpx.Response) -> None:
    error = assert_error(response, 503, "database_not_migrated")
    assert error["message"] == MESSAGE
    assert response.headers["retry-after"] == str(DatabaseNotMigrated.retry_after_seconds)


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_message_says_what_the_operator_runs() -> None:
    # 503 like any DatabaseUnavailable (the status table maps the base class), with a code of its own.
    assert issubclass(DatabaseNotMigrated, DatabaseUnavailable)
    assert DatabaseNotMigrated.code == "database_not_migrated"
    assert "`nidan serve`" in MESSAGE and "`nidan restore`" in MESSAGE and "Nothing was changed" in MESSAGE


def test_an_emptied_database_is_503_on_every_api_path_logged_once_then_migrating_heals_it(
    runtime: Runtime, client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SchemaWatch, "PROBE_INTERVAL", 0.0)  # the recovery is noticed at the first success
    ctx = runtime.services
    make_user(ctx, "alice")
    session = login(client)["session_token"]
    key = api_key(ctx)
    for _ in range(12):  # often enough for psycopg to prepare the statements on the server (its threshold: 5)
        assert client.get("/api/v1/me", headers=auth_header(session)).status_code == 200
    empty_the_database(runtime.engine)
    caplog.set_level(logging.INFO)

    app = client.app
    assert isinstance(app, NidanApp)
    for _ in range(3):
        assert_not_migrated(client.get("/api/v1/me", headers=auth_header(session)))
        assert_not_migrated(client.post("/api/v1/auth/login", json=WRONG))
        for fast in (True, False):  # the verify API's front door, and the FastAPI route behind it
            app.state.verify_fast_path = fast
            assert_not_migrated(
                client.post(VERIFY, json={"username": "alice", "code": "123456"}, headers=auth_header(key))
            )
    # Twelve requests, one line: the condition, what the database is at, what this nidan needs; no traceback.
    (line,) = not_migrated_lines(caplog)
    message = line.getMessage()
    assert "database schema missing" in message and "revision none" in message
    assert db_engine.HEAD_REVISION in message and "nidan serve" in message
    assert not [r for r in caplog.records if r.exc_info], "no traceback for a missing schema"
    # Nor a line per request from the web face: that one line is the only error written.
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == [line]
    assert client.get("/healthz").status_code == 200  # liveness stays up: the process itself is fine

    caplog.clear()
    db_engine.upgrade(runtime.engine)  # what `nidan serve` does as it starts
    make_user(ctx, "alice")  # the database is a new, empty one
    assert_error(client.post("/api/v1/auth/login", json=WRONG), 401, "invalid_credentials")
    session = login(client)["session_token"]
    for _ in range(12):  # the statements prepared before are planned again against the new tables
        assert client.get("/api/v1/me", headers=auth_header(session)).status_code == 200
    assert_error(
        client.post(VERIFY, json={"username": "alice", "code": "123456"}, headers=auth_header(key)),
        401,
        "app_key_invalid",
    )
    key = api_key(ctx)
    for fast in (True, False):
        app.state.verify_fast_path = fast
        answer = client.post(VERIFY, json={"username": "alice", "code": "123456"}, headers=auth_header(key))
        assert answer.status_code == 200 and answer.json()["ok"] is False
    assert [r.getMessage() for r in caplog.records if r.name == "nidan.db"] == [
        f"database schema in place again (revision {db_engine.HEAD_REVISION}): requests are answered normally"
    ]

    # Lost again later: logged again, once.
    caplog.clear()
    empty_the_database(runtime.engine)
    for _ in range(2):
        assert_not_migrated(client.post("/api/v1/auth/login", json=WRONG))
    assert len(not_migrated_lines(caplog)) == 1


def test_pages_show_the_error_page_with_the_code(runtime: Runtime, client: TestClient) -> None:
    make_user(runtime.services, "alice")
    assert sign_in(client).status_code == 303  # no second factor: signed in
    empty_the_database(runtime.engine)

    security = client.get("/security")  # the session cookie is looked up: the first read fails
    assert security.status_code == 503
    assert security.headers["retry-after"] == str(DatabaseNotMigrated.retry_after_seconds)
    assert "text/html" in security.headers["content-type"]
    assert_support_details(security, "database_not_migrated", None)  # who it is cannot be read either
    assert "nidan serve" in security.text

    client.cookies.clear()
    form = client.get("/login")  # not signed in: the sign-in page looks up whether setup is needed
    assert form.status_code == 503
    assert_support_details(form, "database_not_migrated", None)


def test_calls_checked_together_in_one_shared_transaction_are_each_503(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """The verify queue's group commit: the missing table surfaces inside a savepoint of the shared transaction."""
    key = api_key(runtime.services)
    app = create_app(runtime=runtime)
    counted = Counted(runtime.services)
    app.state.verify_queue = VerifyQueue(replace(runtime.services, shared=counted), inline=runtime.storage_is_embedded)
    empty_the_database(runtime.engine)
    caplog.set_level(logging.INFO)

    async def together() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://nidan") as http:
            body = {"username": "alice", "code": "123456"}
            return await asyncio.gather(*(http.post(VERIFY, json=body, headers=auth_header(key)) for _ in range(4)))

    for answer in asyncio.run(together()):
        assert_not_migrated(answer)
    assert counted.opened == 1
    assert len(not_migrated_lines(caplog)) == 1
    # verify_together answers a NidanError for the whole group: it did not take the missing table for a bug.
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("missing", ["table", "column"])
def test_a_schema_at_an_older_migration_is_database_not_migrated(
    runtime: Runtime, client: TestClient, caplog: pytest.LogCaptureFixture, missing: str
) -> None:
    """Part of the schema missing while the rest is there (an older revision, a table dropped by hand): the
    requests that need it are 503, the others are answered; the condition is still logged once."""
    make_user(runtime.services, "alice")
    session = login(client)["session_token"]
    with runtime.engine.begin() as connection:
        if missing == "table":
            connection.execute(text("DROP TABLE sessions"))
        else:
            connection.execute(text("ALTER TABLE sessions DROP COLUMN purpose"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    caplog.set_level(logging.INFO)
    for _ in range(3):
        assert_not_migrated(client.get("/api/v1/me", headers=auth_header(session)))
        # A wrong password reads users and writes the audit log and throttles, all still there: answered.
        assert_error(client.post("/api/v1/auth/login", json=WRONG), 401, "invalid_credentials")
        runtime.services.clock.advance(3601)  # type: ignore[attr-defined]  # past the backoff it started
    (line,) = not_migrated_lines(caplog)
    assert "revision 0004" in line.getMessage()


def test_missing_schema_is_told_from_other_errors_by_sqlstate_or_sqlite_message(runtime: Runtime) -> None:
    """Both ways an error reaches the unit of work: SQLAlchemy's exception, and the driver's own underneath it."""
    engine = runtime.engine
    with engine.connect() as connection:
        for statement, expected in [
            ("SELECT * FROM no_such_table", True),
            ("SELECT no_such_column FROM users", True),
            ("INSERT INTO audit_chain_head (no_such_column) VALUES (1)", True),
            ("SELECT * FROM users WHERE", False),  # a syntax error is a bug: it stays a 500
        ]:
            with pytest.raises(DBAPIError) as raised:
                connection.exec_driver_sql(statement)
            connection.rollback()
            wrapped = raised.value
            assert wrapped.orig is not None
            assert missing_schema(engine.dialect, wrapped) is expected, (statement, wrapped)
            assert missing_schema(engine.dialect, wrapped.orig) is expected, statement
        # The hot statements run on the driver's cursor and raise its error as SQLAlchemy's (``Prepared``).
        with pytest.raises(DBAPIError) as raised:
            Prepared(select(literal_column("1").label("one")).select_from(table("no_such_table"))).first(connection)
        assert missing_schema(engine.dialect, raised.value)


def test_a_unit_of_work_on_an_empty_database_raises_database_not_migrated(runtime: Runtime) -> None:
    empty_the_database(runtime.engine)
    units = SqlUnitOfWorkFactory(runtime.engine)
    with pytest.raises(DatabaseNotMigrated) as raised, units() as uow:
        uow.users.get_by_username_key("alice")
    assert raised.value.__cause__ is not None  # the driver's error stays attached for a debugger
    assert SchemaWatch.of(runtime.engine).missing


def test_threads_that_meet_the_missing_schema_together_log_it_once(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    empty_the_database(runtime.engine)
    units = SqlUnitOfWorkFactory(runtime.engine)
    caplog.set_level(logging.INFO)

    def look_up(_: int) -> object:
        with units() as uow:
            return uow.users.get_by_username_key("alice")

    outcomes = race(8, look_up, (DatabaseNotMigrated,))
    assert all(isinstance(outcome, DatabaseNotMigrated) for outcome in outcomes), outcomes
    assert len(not_migrated_lines(caplog)) == 1


def test_a_table_dropped_at_the_head_revision_logs_at_most_once_per_interval(
    runtime: Runtime, client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The revision says all is well but a table is gone: successes between the failures never count as a recovery
    sooner than ``PROBE_INTERVAL`` after the line, so alternating requests do not log one line each."""
    make_user(runtime.services, "alice")
    session = login(client)["session_token"]
    with runtime.engine.begin() as connection:
        connection.execute(text("DROP TABLE sessions"))
    caplog.set_level(logging.INFO)
    for _ in range(5):
        assert_not_migrated(client.get("/api/v1/me", headers=auth_header(session)))
        assert_error(client.post("/api/v1/auth/login", json=WRONG), 401, "invalid_credentials")
        runtime.services.clock.advance(3601)  # type: ignore[attr-defined]  # past the backoff it started
    assert len(not_migrated_lines(caplog)) == 1
    assert not [r for r in caplog.records if r.name == "nidan.db" and "again" in r.getMessage()]


@pytest.fixture
def on_postgres(tmp_path: Path, postgres: PostgresDatabases | None) -> Iterator[tuple[Runtime, str]]:
    """A runtime on a PostgreSQL database of its own, and the database's name."""
    if postgres is None:
        pytest.fail("needs PostgreSQL: set NIDAN_TEST_DATABASE_URL, or deselect with -m 'not postgres'")
    name = postgres.create()
    settings = Settings(
        data_dir=tmp_path / "data", database_url=postgres.url_for(name), security=SecuritySettings(**FAST_SECURITY)
    )
    runtime = build_runtime(settings, clock=FixedClock())
    yield runtime, name
    runtime.engine.dispose()
    postgres.drop(name)


@pytest.mark.postgres
def test_a_postgresql_database_dropped_and_created_again_is_503_then_database_not_migrated(
    on_postgres: tuple[Runtime, str], postgres: PostgresDatabases
) -> None:
    """The audit's case word for word: ``DROP DATABASE`` (ending nidan's connections) and ``CREATE DATABASE``.
    The pooled connections are dead (503 ``database_unavailable``, the pool reconnects), then the new, empty
    database answers ``database_not_migrated``; never a 500."""
    runtime, name = on_postgres
    make_user(runtime.services, "alice")
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        for _ in range(3):  # connections into the pool
            assert client.get("/api/v1/me", headers=auth_header(login(client)["session_token"])).status_code == 200
        with postgres.admin.connect() as admin:
            admin.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            admin.execute(text(f'CREATE DATABASE "{name}"'))
        codes = []
        for _ in range(runtime.settings.database_pool_size + 2):
            answer = client.post("/api/v1/auth/login", json=WRONG)
            assert answer.status_code == 503, answer.text
            codes.append(answer.json()["error"]["code"])
    assert set(codes) <= {"database_unavailable", "database_not_migrated"}
    assert codes[-1] == "database_not_migrated"


def test_a_revision_this_nidan_does_not_know_stops_the_start_with_what_to_do(settings: Settings) -> None:
    """A newer nidan migrated the database: refusing to start says so (Alembic's own error was a traceback)."""
    engine = db_engine.make_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(ConfigurationError, match=r"revision 0099, which this version of nidan does not know"):
        build_runtime(settings, clock=FixedClock())
