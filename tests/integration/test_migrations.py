"""Migrations: upgrade, downgrade and upgrade again on each back end, and the result equals the models."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

from nidan.db import engine as db_engine
from nidan.db import tables


def test_round_trip_and_schema_matches_models(database_url: str) -> None:
    engine = db_engine.make_engine(database_url)
    try:
        db_engine.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db_engine.upgrade(engine)
        assert db_engine.pending_migrations(engine) == []
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), tables.metadata)
            default_org = connection.execute(select(tables.organisations.c.slug)).scalars().all()
        assert differences == []
        assert default_org == ["default"]
    finally:
        engine.dispose()


def test_a_fresh_database_reports_pending_migrations(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/empty.db")
    assert db_engine.pending_migrations(engine) != []
    engine.dispose()


def test_head_revision_is_alembics_head(database_url: str) -> None:
    """The one-query "is it current?" check at start-up compares against HEAD_REVISION: a new migration must move it."""
    engine = db_engine.make_engine(database_url)
    try:
        script = ScriptDirectory.from_config(db_engine.alembic_config(engine))
        assert script.get_heads() == [db_engine.HEAD_REVISION]
    finally:
        engine.dispose()


def test_a_process_serving_a_current_database_never_loads_alembic(tmp_path: Path) -> None:
    """About 11 MB per worker: Alembic is loaded to migrate, not to find there is nothing to do."""
    data_dir = tmp_path / "data"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from nidan.bootstrap import build_runtime\n"
        "from nidan.config import Settings\n"
        "from nidan.web.app import create_app\n"
        f"runtime = build_runtime(Settings(data_dir=Path({str(data_dir)!r})))\n"
        "create_app(runtime)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True, timeout=120
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["['alembic', 'mako']", "[]"]  # the first start migrates a new database; the second has not to


def test_0006_drops_the_counters_keyed_by_a_username_as_typed(database_url: str) -> None:
    """A password typed into the username field lay in ``throttles`` in clear; the hashing key is not at hand in a
    migration, so those rows go (their failures were counted per address too, which stays); the rest is kept."""
    engine = db_engine.make_engine(database_url)
    throttles = tables.throttles.c
    at = datetime(2026, 3, 14, tzinfo=UTC)
    typed_keys = [
        ("password", "hunter2|198.51.100.7"),
        ("gate", "alice|198.51.100.7"),
        ("second_factor", "~nobody-by-that-name"),
    ]
    kept = [("password_ip", "198.51.100.7"), ("gate_ip", "198.51.100.7"), ("second_factor", "7")]
    try:
        db_engine.downgrade(engine, "0005")
        with engine.begin() as connection:
            for scope, key in typed_keys + kept:
                connection.execute(
                    text(
                        "INSERT INTO throttles (scope, key, failures, version, updated_at)"
                        " VALUES (:scope, :key, 3, 3, :at)"
                    ),
                    {"scope": scope, "key": key, "at": at},
                )
        db_engine.upgrade(engine)
        with engine.connect() as connection:
            left = connection.execute(
                select(throttles.scope, throttles.key, throttles.failures, throttles.pending).order_by(throttles.id)
            ).all()
        assert [tuple(row) for row in left] == [(scope, key, 3, 0) for scope, key in kept]
    finally:
        db_engine.upgrade(engine)
        engine.dispose()


def test_0007_adds_remembered_devices_and_takes_them_away_again(database_url: str) -> None:
    """Up from 0006 keeps every user and organisation (no preference, the instance's days); down drops the
    remembered browsers with their tokens and the two columns."""
    engine = db_engine.make_engine(database_url)
    at = datetime(2026, 3, 14, tzinfo=UTC)
    try:
        db_engine.downgrade(engine, "0006")
        inspector = inspect(engine)
        assert not {"remembered_devices", "remembered_device_tokens"} & set(inspector.get_table_names())
        assert "default_method" not in {c["name"] for c in inspector.get_columns("users")}
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (username, username_key, email, role, password_hash, created_at)"
                    " VALUES ('alice', 'alice', 'alice@example.com', 'member', 'x', :at)"
                ),
                {"at": at},
            )
        db_engine.upgrade(engine)
        with engine.begin() as connection:
            user = connection.execute(select(tables.users.c.id, tables.users.c.default_method)).one()
            days = connection.execute(select(tables.organisations.c.remember_device_days)).scalars().all()
            device_id = connection.execute(
                tables.remembered_devices.insert()
                .values(user_id=user.id, created_at=at, expires_at=at, last_used_at=at)
                .returning(tables.remembered_devices.c.id)
            ).scalar_one()
            connection.execute(
                tables.remembered_device_tokens.insert().values(token_hash=b"h" * 32, device_id=device_id, issued_at=at)
            )
        assert user.default_method is None and days == [None]
        db_engine.downgrade(engine, "0006")
        with engine.connect() as connection:
            assert connection.execute(select(tables.users.c.username)).scalars().all() == ["alice"]
        assert "remembered_devices" not in inspect(engine).get_table_names()
    finally:
        db_engine.upgrade(engine)
        engine.dispose()
