"""``nidan init``, and the rule it comes with: no command but ``init`` and ``serve`` creates an instance.

Pointed where no instance is (no SQLite file, or a database nidan never set up), a command refuses with
``instance_not_found``, naming the data directory and the database it looked at, and creates nothing. Every other
error a command reports names them too. On SQLite and, when ``NIDAN_TEST_DATABASE_URL`` is set, on PostgreSQL (an
empty database there is no instance either).
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nidan.bootstrap import Runtime, build_maintenance, instance_missing, place_of
from nidan.cli.main import app
from nidan.config import Settings
from tests.conftest import BACKENDS, PostgresDatabases
from tests.helpers import PASSWORD, make_user
from tests.integration.backup_support import assert_refused, cli_for, empty_instance


@pytest.fixture(params=BACKENDS)
def fresh(request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresDatabases | None) -> Iterator[Settings]:
    """Settings pointing where no instance is: no data directory; no SQLite file, or an empty PostgreSQL database."""
    with empty_instance(request.param, tmp_path, postgres) as settings:
        yield settings


def refusal(settings: Settings) -> str:
    place = place_of(settings)
    return (
        f"error [instance_not_found]: No nidan instance at {place.data_dir} (database {place.database}). Point at "
        "one with --data-dir or NIDAN_DATA_DIR, or create one with `nidan init`."
    )


COMMANDS = [
    ("user", "list"),
    ("user", "add", "alice", "--email", "alice@example.com", "--password-stdin"),
    ("user", "passwd", "alice", "--password-stdin"),
    ("admin", "recover", "root"),
    ("org", "list"),
    ("app", "list"),
    ("audit", "verify"),
    ("keys", "list"),
    ("keys", "rotate"),
    ("keys", "rotate-hash", "--yes"),
    ("doctor",),
    ("backup", "{tmp}/backup.tar.gz"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_command_where_no_instance_is_refuses_and_creates_nothing(
    fresh: Settings, tmp_path: Path, command: tuple[str, ...]
) -> None:
    arguments = [word.replace("{tmp}", str(tmp_path)) for word in command]
    result = cli_for(fresh, tmp_path)(*arguments, input=f"{PASSWORD}\n")
    assert assert_refused(result, "instance_not_found", exit_code=2) == refusal(fresh)
    assert result.stdout == ""
    assert not fresh.data_dir.exists()  # no data directory, no SQLite file, no keys
    assert instance_missing(fresh)  # and the database was not set up either
    assert not (tmp_path / "backup.tar.gz").exists()


def test_the_default_data_directory_is_named_as_the_person_would_type_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: a command run in some other directory used to make a fresh ./nidan-data there."""
    monkeypatch.chdir(tmp_path)
    unset: dict[str, str | None] = {
        name: None for name in ("NIDAN_DATA_DIR", "NIDAN_DATABASE_URL", "NIDAN_KEYS_DIR", "NIDAN_CONFIG")
    }
    result = CliRunner(env=unset).invoke(app, ["user", "list"])
    line = assert_refused(result, "instance_not_found", exit_code=2)
    assert line.startswith(
        f"error [instance_not_found]: No nidan instance at ./nidan-data (database SQLite, {tmp_path.resolve()}"
        "/nidan-data/nidan.db)."
    )
    assert not (tmp_path / "nidan-data").exists()


def test_init_creates_an_instance_and_says_what_to_do_next(fresh: Settings, tmp_path: Path) -> None:
    nidan = cli_for(fresh, tmp_path)
    result = nidan("init")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Created a nidan instance:\n")
    assert f"Data directory: {fresh.data_dir.resolve()}\n" in out
    assert f"Keys:           {fresh.resolved_keys_dir.resolve()} (new keys; back them up" in out
    assert f"Database:       {place_of(fresh).database}, every migration applied" in out
    assert "Start the server: nidan serve\n" in out
    assert "one-time link to create the first one" in out
    assert "nidan user add USERNAME --email EMAIL --role admin" in out

    assert stat.S_IMODE(fresh.data_dir.stat().st_mode) == 0o700
    assert {"hash.key", "primary"} <= {path.name for path in fresh.resolved_keys_dir.iterdir()}
    assert not instance_missing(fresh)
    maintenance = build_maintenance(fresh)
    try:
        database = maintenance.services.database
        assert database.revision() == database.head_revision() and database.pending_migrations() == []
    finally:
        maintenance.engine.dispose()

    # Every command works there now.
    assert nidan("user", "list").stdout.startswith("No users yet.")
    added = nidan("user", "add", "root", "--email", "root@example.com", "--role", "admin", "--password-stdin",
                  input=f"{PASSWORD}\n")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert nidan("doctor").exit_code == 0


def test_init_where_an_instance_is_creates_nothing(fresh: Settings, tmp_path: Path) -> None:
    nidan = cli_for(fresh, tmp_path)
    assert nidan("init").exit_code == 0
    hash_key = (fresh.resolved_keys_dir / "hash.key").read_bytes()
    again = nidan("init")
    assert again.exit_code == 0, again.output
    place = place_of(fresh)
    assert again.stdout.splitlines() == [
        f"A nidan instance is already at {place.data_dir} (database {place.database}): nothing created.",
        "It has no administrator yet: start it with `nidan serve` to get the setup link.",
    ]
    assert (fresh.resolved_keys_dir / "hash.key").read_bytes() == hash_key


def test_the_data_dir_option_wins_over_the_environment(tmp_path: Path, postgres: PostgresDatabases | None) -> None:
    with empty_instance("sqlite", tmp_path, postgres) as settings:
        elsewhere = settings.model_copy(update={"data_dir": tmp_path / "elsewhere"})
        nidan = cli_for(elsewhere, tmp_path)  # NIDAN_DATA_DIR names "elsewhere"
        made = nidan("--data-dir", str(settings.data_dir), "init")
        assert made.exit_code == 0, made.output
        assert f"Start the server: nidan --data-dir {settings.data_dir} serve" in made.stdout
        assert settings.data_dir.is_dir() and not elsewhere.data_dir.exists()
        assert nidan("--data-dir", str(settings.data_dir), "user", "list").exit_code == 0
        assert assert_refused(nidan("user", "list"), "instance_not_found", exit_code=2) == refusal(elsewhere)


def test_every_error_names_the_data_directory_and_database(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    make_user(runtime.services, "alice")
    nidan = cli_for(settings, tmp_path)
    where = f"(data directory {settings.data_dir}; database {place_of(settings).database})"
    taken = nidan("user", "add", "alice", "--email", "a@example.com", "--password-stdin", input=f"{PASSWORD}\n")
    assert assert_refused(taken, "username_taken").endswith(f"Choose another one. {where}")
    weak = nidan("user", "passwd", "alice", "--password-stdin", input="qwerty123456\n")
    assert assert_refused(weak, "weak_password").endswith(where)
    unknown = nidan("org", "show", "no-such-org")
    assert assert_refused(unknown, "organisation_not_found").endswith(where)


def test_the_database_is_named_without_its_password() -> None:
    settings = Settings(data_dir=Path("/srv/nidan"), database_url="postgresql+psycopg://nidan:s3cret@db.internal/nidan")
    place = place_of(settings)
    assert place.database == "PostgreSQL, postgresql+psycopg://nidan:***@db.internal/nidan"
    assert str(place) == f"data directory /srv/nidan; database {place.database}"
    assert "s3cret" not in str(place)


def test_restore_makes_an_instance_without_init(
    runtime: Runtime, settings: Settings, fresh: Settings, tmp_path: Path
) -> None:
    """Restoring an archive is the other way to make an instance: it needs none where it writes."""
    make_user(runtime.services, "alice")
    archive = tmp_path / "backup.tar.gz"
    assert cli_for(settings, tmp_path)("backup", str(archive)).exit_code == 0
    restored = cli_for(fresh, tmp_path)("restore", str(archive))
    assert restored.exit_code == 0, restored.output
    listed = cli_for(fresh, tmp_path)("user", "list", "--json")
    assert [user["username"] for user in json.loads(listed.stdout)] == ["alice"]
