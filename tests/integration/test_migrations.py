"""Migrations: upgrade, downgrade and upgrade again on each back end, and the result equals the models."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select, text

from nidan.bootstrap import Runtime
from nidan.core.models import ClientInfo
from nidan.db import engine as db_engine
from nidan.db import tables
from nidan.errors import ConfigurationError
from nidan.services import accounts, signin
from tests.helpers import PASSWORD


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


def _old_key(username: str) -> str:
    """A username's key before 0008: NFKC, spaces around dropped, case folded."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def test_0008_keeps_every_name_of_before_signing_in(runtime: Runtime, database_url: str) -> None:
    """Users created under the ASCII rule (keys NFKC + case folded) sign in after the PRECIS rule took over with the
    names they always used; ``ß`` is the one key that changes (kept, not folded to ``ss``)."""
    ctx = runtime.services
    for name in ("Alice", "bob.smith", "Straße"):
        accounts.create_user(ctx, username=name, email="someone@example.com", password=PASSWORD)
    engine = db_engine.make_engine(database_url)
    users = tables.users.c
    try:
        db_engine.downgrade(engine, "0007")
        with engine.connect() as connection:
            keys = {
                row.username: row.username_key for row in connection.execute(select(users.username, users.username_key))
            }
        assert keys == {name: _old_key(name) for name in ("Alice", "bob.smith", "Straße")}
        assert keys["Straße"] == "strasse"
        db_engine.upgrade(engine)
        with engine.connect() as connection:
            keys = {
                row.username: row.username_key for row in connection.execute(select(users.username, users.username_key))
            }
        assert keys == {"Alice": "alice", "bob.smith": "bob.smith", "Straße": "straße"}
    finally:
        db_engine.upgrade(engine)
        engine.dispose()
    for typed in ("alice", "ALICE", "ａｌｉｃｅ", "bob.smith", "Straße", "STRAẞE"):
        answer = signin.login(ctx, username=typed, password=PASSWORD, client=ClientInfo(ip="192.0.2.8"))
        assert isinstance(answer, signin.Authenticated), typed


def test_0008_stops_naming_the_users_whose_names_would_clash(database_url: str) -> None:
    """Rows nidan did not write (another tool, an edited database) can hold names that become one under PRECIS, or
    names it refuses: the upgrade names them and changes nothing."""
    engine = db_engine.make_engine(database_url)
    at = datetime(2026, 3, 14, tzinfo=UTC)
    imported = [("Tanaka", "tanaka"), ("Ｔａｎａｋａ", "imported-tanaka"), ("p\u0430ypal", "imported-paypal")]
    try:
        db_engine.downgrade(engine, "0007")
        with engine.begin() as connection:
            for username, key in imported:
                connection.execute(
                    text(
                        "INSERT INTO users (username, username_key, email, role, password_hash, created_at)"
                        " VALUES (:username, :key, 'x@example.com', 'member', 'x', :at)"
                    ),
                    {"username": username, "key": key, "at": at},
                )
        with pytest.raises(ConfigurationError) as stopped:
            db_engine.upgrade(engine)
        message = stopped.value.message
        assert "would have the same username: 'Tanaka' (id 1) and 'Ｔａｎａｋａ' (id 2)" in message
        assert "not valid: 'p\u0430ypal' (id 3)" in message
        assert "then run the upgrade again" in message
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0007"
            keys = connection.execute(select(tables.users.c.username, tables.users.c.username_key)).all()
        assert sorted(tuple(row) for row in keys) == sorted(imported)
        with engine.begin() as connection:  # the administrator renames them, and upgrades again
            connection.execute(text("UPDATE users SET username = 'tanaka2' WHERE id = 2"))
            connection.execute(text("UPDATE users SET username = 'paypal2' WHERE id = 3"))
        db_engine.upgrade(engine)
        with engine.connect() as connection:
            keys = connection.execute(select(tables.users.c.username_key).order_by(tables.users.c.id)).scalars().all()
        assert keys == ["tanaka", "tanaka2", "paypal2"]
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM users"))
        db_engine.upgrade(engine)
        engine.dispose()


def test_0010_adds_the_disabled_columns_with_every_account_enabled_and_drops_them_again(database_url: str) -> None:
    """Up from 0009 keeps every user, all of them enabled; down drops the two columns and keeps the users (a disabled
    one is then enabled: the revision before had no such state)."""
    engine = db_engine.make_engine(database_url)
    at = datetime(2026, 3, 14, tzinfo=UTC)
    try:
        db_engine.downgrade(engine, "0009")
        assert not {"disabled_at", "disabled_reason"} & {c["name"] for c in inspect(engine).get_columns("users")}
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO users (username, username_key, email, role, password_hash, created_at)"
                    " VALUES ('alice', 'alice', 'alice@example.com', 'member', 'x', :at)"
                ),
                {"at": at},
            )
        db_engine.upgrade(engine)
        users = tables.users.c
        with engine.begin() as connection:
            row = connection.execute(select(users.disabled_at, users.disabled_reason)).one()
            assert tuple(row) == (None, None)
            connection.execute(tables.users.update().values(disabled_at=at, disabled_reason="left, ticket 16"))
        db_engine.downgrade(engine, "0009")
        assert not {"disabled_at", "disabled_reason"} & {c["name"] for c in inspect(engine).get_columns("users")}
        with engine.connect() as connection:
            assert connection.execute(select(users.username)).scalars().all() == ["alice"]
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM users"))
        db_engine.upgrade(engine)
        engine.dispose()


def test_0011_never_hands_a_deleted_users_id_out_again_and_tells_links_apart(database_url: str) -> None:
    """Up from 0010 keeps every user and every recovery link (now of purpose ``recovery``); a deleted account's id
    is never given to the next one, on SQLite too (AUTOINCREMENT), and deleting takes the account's rows along. Down
    drops the purpose column and the set-password links, and keeps the users."""
    engine = db_engine.make_engine(database_url)
    at = datetime(2026, 3, 14, tzinfo=UTC)
    users = tables.users.c
    links = tables.recovery_links.c
    try:
        db_engine.downgrade(engine, "0010")
        assert "purpose" not in {c["name"] for c in inspect(engine).get_columns("recovery_links")}
        with engine.begin() as connection:
            for name in ("alice", "bob"):
                connection.execute(
                    text(
                        "INSERT INTO users (username, username_key, email, role, password_hash, created_at)"
                        " VALUES (:name, :name, 'x@example.com', 'member', 'x', :at)"
                    ),
                    {"name": name, "at": at},
                )
            bob = connection.execute(select(users.id).where(users.username == "bob")).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO recovery_links (user_id, token_hash, created_at, expires_at)"
                    " VALUES (:user_id, :hash, :at, :at)"
                ),
                {"user_id": bob, "hash": b"r" * 32, "at": at},
            )
        db_engine.upgrade(engine)
        with engine.begin() as connection:
            assert connection.execute(select(users.username).order_by(users.id)).scalars().all() == ["alice", "bob"]
            assert connection.execute(select(links.user_id, links.purpose)).all() == [(bob, "recovery")]
            if connection.dialect.name == "sqlite":
                schema = connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'users'")).scalar_one()
                assert "AUTOINCREMENT" in schema
                assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            connection.execute(
                tables.recovery_links.insert().values(
                    user_id=bob, token_hash=b"p" * 32, created_at=at, expires_at=at, purpose="password"
                )
            )
            # bob, the highest id, goes (with his links); the next account gets a new id all the same.
            connection.execute(tables.users.delete().where(users.id == bob))
            assert connection.execute(select(links.id)).all() == []
            carol = connection.execute(
                tables.users.insert()
                .values(username="carol", username_key="carol", email="c@example.com", role="member",
                        password_hash="x", created_at=at)
                .returning(users.id)
            ).scalar_one()  # fmt: skip
            assert carol > bob
            connection.execute(
                tables.recovery_links.insert().values(
                    user_id=carol, token_hash=b"q" * 32, created_at=at, expires_at=at, purpose="password"
                )
            )
        db_engine.downgrade(engine, "0010")
        assert "purpose" not in {c["name"] for c in inspect(engine).get_columns("recovery_links")}
        with engine.connect() as connection:
            assert connection.execute(select(users.username).order_by(users.id)).scalars().all() == ["alice", "carol"]
            assert connection.execute(text("SELECT count(*) FROM recovery_links")).scalar_one() == 0
    finally:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM recovery_links"))
            connection.execute(text("DELETE FROM users"))
        db_engine.upgrade(engine)
        engine.dispose()
