"""Shared fixtures: a fixed clock, a clean database per test on every configured back end, the app, a client.

The suite always runs on SQLite; when ``NIDAN_TEST_DATABASE_URL`` names a PostgreSQL server, every database test
runs there too, each in its own freshly cloned database.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from nidan.adapters.password_hashing import ThreadedPasswordHashing
from nidan.bootstrap import Runtime, build_runtime
from nidan.config import SecuritySettings, ServerSettings, Settings
from nidan.core.passwords import PasswordHashing
from nidan.db import engine as db_engine
from tests.passwords_support import FAST

PG_URL = os.environ.get("NIDAN_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]
#: Cheaper argon2 for speed; the production defaults are checked by their own test.
FAST_SECURITY = {"argon2_memory_kib": 8 * 1024, "argon2_time_cost": 1}
START = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


class FixedClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self.current = when


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "nidan.db"
    engine = db_engine.make_engine(f"sqlite:///{path}")
    db_engine.upgrade(engine)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


class PostgresDatabases:
    """Clones a migrated template database per test: clean state at the cost of a file copy in the server."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.template = f"nidan_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.template}"'))
        engine = create_engine(self.url.set(database=self.template))
        db_engine.upgrade(engine)
        engine.dispose()

    def url_for(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def create(self, template: str | None = None) -> str:
        """A new database copied from ``template`` (default: the migrated, empty one)."""
        name = f"nidan_t_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template or self.template}"'))
        return name

    def drop(self, name: str) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self.drop(self.template)
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases | None]:
    if not PG_URL:
        yield None
        return
    databases = PostgresDatabases(PG_URL)
    yield databases
    databases.close()


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, postgres: PostgresDatabases | None
) -> Iterator[str]:
    if request.param == "sqlite":
        data = tmp_path / "data"
        data.mkdir()
        shutil.copy(sqlite_template, data / "nidan.db")
        yield f"sqlite:///{data / 'nidan.db'}"
        return
    assert postgres is not None
    name = postgres.create()
    yield postgres.url_for(name)
    postgres.drop(name)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        server=ServerSettings(),
        security=SecuritySettings(**FAST_SECURITY),
    )


@pytest.fixture
def runtime(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    built = build_runtime(settings, clock=clock)
    yield built
    built.engine.dispose()


# Shared by the core tests of password hashing and the web ones of awaiting it.
@pytest.fixture(params=["hashing threads", "in the caller's thread"])
def either(request: pytest.FixtureRequest) -> Iterator[PasswordHashing]:
    if request.param == "in the caller's thread":
        yield PasswordHashing(FAST)
        return
    with ThreadPoolExecutor(2, "argon2-test") as hashers:
        yield ThreadedPasswordHashing(FAST, hashers=hashers)
