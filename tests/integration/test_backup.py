"""``nidan backup`` and ``nidan restore``: one archive with the data and the keys, restored into either back end,
and refused, changing nothing, when a part is missing or does not match the manifest (the Atlassian "incomplete
restore" case).

The source instance runs on every configured back end (the ``runtime`` fixture); each restore goes into a
brand-new instance on every configured back end, so SQLite → PostgreSQL and PostgreSQL → SQLite are both tested.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import select

from nidan.bootstrap import Runtime, build_maintenance, build_runtime
from nidan.config import Settings
from nidan.core import backup as fmt
from nidan.core.sealing import KEY_BYTES, decode_key_file, encode_key_file, fingerprint
from nidan.db import engine as db_engine
from nidan.db import tables as t
from nidan.errors import (
    BackupDamaged,
    BackupIncomplete,
    ConfigurationError,
    DatabaseNotEmpty,
    HashKeyMismatch,
    KeyMissing,
)
from nidan.services import audit, backup, signin
from tests.conftest import BACKENDS, FixedClock, PostgresDatabases
from tests.helpers import make_user
from tests.integration.backup_support import (
    Invoke,
    Population,
    assert_refused,
    cli_for,
    empty_instance,
    populate,
    read_archive,
    sign_in_with_recovery_code,
    sign_in_with_totp,
    write_archive,
)


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresDatabases | None) -> Iterator[Settings]:
    """A brand-new instance on each back end, to restore into."""
    with empty_instance(request.param, tmp_path, postgres) as settings:
        yield settings


@pytest.fixture
def population(runtime: Runtime) -> Population:
    return populate(runtime.services)


def make_backup(settings: Settings, path: Path, clock: FixedClock) -> fmt.Manifest:
    maintenance = build_maintenance(settings, clock=clock)
    try:
        return backup.backup(maintenance.services, path)
    finally:
        maintenance.engine.dispose()


def run_restore(settings: Settings, path: Path, *, replace: bool = False) -> backup.RestoreReport:
    maintenance = build_maintenance(settings, create_data_dir=True)
    try:
        return backup.restore(maintenance.services, path, replace=replace)
    finally:
        maintenance.engine.dispose()


@pytest.fixture
def archive(runtime: Runtime, population: Population, settings: Settings, clock: FixedClock, tmp_path: Path) -> Path:
    path = tmp_path / "backup.tar.gz"
    make_backup(settings, path, clock)
    return path


# -- the round trip --------------------------------------------------------------------------------------------


def test_restored_instance_signs_old_users_in(
    runtime: Runtime, population: Population, archive: Path, target: Settings, clock: FixedClock
) -> None:
    report = run_restore(target, archive)
    assert report.loaded.row_counts["users"] == 2
    assert report.moved_aside == []

    restored = build_runtime(target, clock=clock)
    try:
        ctx = restored.services
        # The same secret as before the backup opens: a code computed from it signs alice in.
        assert sign_in_with_totp(ctx, "alice", population.secrets["alice"]).user.username == "alice"
        assert sign_in_with_recovery_code(ctx, "alice", population.recovery_codes["alice"][0]).user.username == "alice"
        # hash.key came back too: bob's session from before the backup is still valid.
        assert signin.current_session(ctx, population.sessions["bob"]).user.username == "bob"
        # Every row came back unchanged: the audit chain (a hash over every event's content and time) is intact.
        verification = audit.verify(ctx)
        assert verification.problem is None and verification.events > 0
        # New rows do not collide with restored ids (PostgreSQL sequences continue after the highest id).
        carol = make_user(ctx, "carol")
        assert carol.id > max(u.id for u in population.users.values())
        assert audit.verify(ctx).problem is None
    finally:
        restored.engine.dispose()


def test_archive_holds_everything_with_a_manifest(
    runtime: Runtime, population: Population, archive: Path, settings: Settings
) -> None:
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    members = read_archive(archive)
    keys_dir = settings.resolved_keys_dir
    primary = (keys_dir / "primary").read_text().strip()
    assert set(members) == {
        "manifest.json",
        "database.jsonl",
        f"keys/seal-{primary}.key",
        "keys/primary",
        "keys/hash.key",
    }
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "nidan-backup"
    assert manifest["nidan_version"]
    assert manifest["alembic_revision"] == newest_revision(runtime)
    assert manifest["created_at"].endswith("+00:00")
    assert manifest["source_database"] == runtime.engine.dialect.name
    assert manifest["key_fingerprints"] == [primary]
    assert manifest["primary_key"] == primary
    assert manifest["sealed_fingerprints"] == {primary: 2}  # alice's active app and bob's pending one
    assert set(manifest["row_counts"]) == set(t.metadata.tables)
    assert manifest["row_counts"]["users"] == 2
    assert manifest["row_counts"]["recovery_codes"] == 16
    for name, content in members.items():
        if name != "manifest.json":
            assert manifest["members"][name] == hashlib.sha256(content).hexdigest()
    assert members[f"keys/seal-{primary}.key"] == (keys_dir / f"seal-{primary}.key").read_bytes()

    lines = members["database.jsonl"].splitlines()
    header = json.loads(lines[0])
    order = [table["name"] for table in header["tables"]]
    assert order.index("users") < order.index("totp_credentials") < len(order)
    assert order.index("recovery_code_sets") < order.index("recovery_codes")
    totp_row = next(json.loads(line)["row"] for line in lines[1:] if json.loads(line)["table"] == "totp_credentials")
    assert header["tables"][order.index("totp_credentials")]["columns"]["sealed_secret"] == "bytes"
    assert totp_row["created_at"].endswith("+00:00")  # times in UTC with their offset, on both back ends


def test_backup_is_a_consistent_snapshot_while_others_write(
    runtime: Runtime, population: Population, settings: Settings, clock: FixedClock, tmp_path: Path, target: Settings
) -> None:
    """A user added (with a membership, an audit event and an app) after the dump has read ``users``, but before it
    reads the tables that refer to users, is in none of them: the dump is one moment, so it restores whole."""
    written: list[str] = []

    def write_meanwhile(table: str) -> None:
        if table == "users":
            late = make_user(runtime.services, "late")
            written.append(late.username)

    path = tmp_path / "snapshot.tar.gz"
    maintenance = build_maintenance(settings, clock=clock)
    try:
        manifest = backup.backup(maintenance.services, path, after_table=write_meanwhile)
    finally:
        maintenance.engine.dispose()
    assert written == ["late"]
    assert manifest.row_counts["users"] == 2
    assert manifest.row_counts["memberships"] == 2
    run_restore(target, path)  # foreign keys hold: nothing refers to the user the dump did not see
    restored = build_runtime(target, clock=clock)
    try:
        assert audit.verify(restored.services).problem is None
    finally:
        restored.engine.dispose()


def test_backup_refuses_a_hash_key_the_database_was_not_used_with(
    runtime: Runtime, population: Population, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    (settings.resolved_keys_dir / "hash.key").write_bytes(encode_key_file(os.urandom(KEY_BYTES)))
    path = tmp_path / "mixed.tar.gz"
    with pytest.raises(HashKeyMismatch):
        make_backup(settings, path, clock)
    assert not path.exists()


def test_backup_with_a_missing_key_writes_nothing(
    runtime: Runtime, population: Population, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    keys_dir = settings.resolved_keys_dir
    primary = (keys_dir / "primary").read_text().strip()
    (keys_dir / f"seal-{primary}.key").rename(tmp_path / "elsewhere.key")
    path = tmp_path / "incomplete.tar.gz"
    with pytest.raises(KeyMissing) as raised:
        make_backup(settings, path, clock)
    assert f"seal-{primary}.key" in raised.value.message
    assert "2 TOTP secrets" in raised.value.message
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".nidan-backup")] == []


def newest_revision(runtime: Runtime) -> str:
    head = ScriptDirectory.from_config(db_engine.alembic_config(runtime.engine)).get_current_head()
    assert head is not None
    return head


def test_a_backup_of_an_older_schema_restores_and_is_migrated(
    runtime: Runtime,
    population: Population,
    settings: Settings,
    clock: FixedClock,
    tmp_path: Path,
    target: Settings,
) -> None:
    """Back up before upgrading: ``nidan backup`` dumps the database at the revision it is at (applying no
    migration); the restore loads it at that revision, then migrates it."""
    db_engine.downgrade(runtime.engine, "0001")
    path = tmp_path / "old.tar.gz"
    manifest = make_backup(settings, path, clock)
    assert manifest.revision == "0001"
    assert "audit_events" not in manifest.row_counts and manifest.row_counts["users"] == 2
    # The backup did not migrate: every revision after 0001 is still to apply (they are numbered 0002, 0003, ...).
    pending = set(db_engine.pending_migrations(runtime.engine))
    assert pending == {f"{n:04d}" for n in range(2, int(newest_revision(runtime)) + 1)}

    run_restore(target, path)
    restored = build_runtime(target, clock=clock)
    try:
        assert db_engine.pending_migrations(restored.engine) == []
        assert sign_in_with_totp(restored.services, "alice", population.secrets["alice"]).user.username == "alice"
    finally:
        restored.engine.dispose()


# -- refusals --------------------------------------------------------------------------------------------------


def _rewrite(archive: Path, tmp_path: Path, change: str) -> Path:
    members = read_archive(archive)
    manifest = json.loads(members["manifest.json"])
    sealing = next(name for name in members if name.startswith("keys/seal-"))
    if change == "no manifest":
        del members["manifest.json"]
    elif change == "no dump":
        del members["database.jsonl"]
    elif change == "no sealing key":
        del members[sealing]
    elif change == "no hash key":
        del members["keys/hash.key"]
    elif change == "dump edited":
        members["database.jsonl"] = members["database.jsonl"].replace(b'"bob"', b'"eve"')
    elif change == "row removed":
        lines = members["database.jsonl"].splitlines(keepends=True)
        lines = [line for line in lines if not (b'"table":"users"' in line and b'"bob"' in line)]
        members["database.jsonl"] = b"".join(lines)
        manifest["members"]["database.jsonl"] = hashlib.sha256(members["database.jsonl"]).hexdigest()
    elif change == "key swapped":
        members[sealing] = members["keys/hash.key"]
        manifest["members"][sealing] = hashlib.sha256(members[sealing]).hexdigest()
    elif change == "hash key from elsewhere":
        members["keys/hash.key"] = encode_key_file(os.urandom(KEY_BYTES))
        manifest["members"]["keys/hash.key"] = hashlib.sha256(members["keys/hash.key"]).hexdigest()
    elif change == "stranger":
        members["keys/seal-0123456789abcdef.key"] = members["keys/hash.key"]
    if "manifest.json" in members:
        members["manifest.json"] = json.dumps(manifest).encode()
    return write_archive(tmp_path / f"{change.replace(' ', '-')}.tar.gz", members)


@pytest.mark.parametrize(
    ("change", "code", "says"),
    [
        ("no manifest", "backup_incomplete", "The archive lacks manifest.json"),
        ("no dump", "backup_incomplete", "The archive lacks the database dump database.jsonl"),
        ("no sealing key", "backup_incomplete", "which sealed 2 TOTP secrets; restore it from the backup it came from"),
        ("no hash key", "backup_incomplete", "The archive lacks key file hash.key"),
        ("dump edited", "backup_damaged", "database.jsonl does not match its checksum"),
        ("row removed", "backup_damaged", "The dump holds 1 row of users but the manifest says 2"),
        ("key swapped", "backup_damaged", "does not hold the key it is named after"),
        ("stranger", "backup_damaged", "which its manifest does not list"),
        ("hash key from elsewhere", "backup_damaged", "mixes parts of two instances"),
    ],
)
def test_restore_refuses_an_incomplete_or_altered_archive_and_changes_nothing(
    archive: Path, tmp_path: Path, target: Settings, change: str, code: str, says: str
) -> None:
    broken = _rewrite(archive, tmp_path, change)
    result = cli_for(target, tmp_path)("restore", str(broken))
    line = assert_refused(result, code)
    assert says in line
    if change == "no sealing key":
        primary = json.loads(read_archive(archive)["manifest.json"])["primary_key"]
        assert f"The archive lacks key seal-{primary}.key which sealed 2 TOTP secrets" in line
    assert not (target.data_dir / "keys").exists()
    maintenance = build_maintenance(target)
    try:
        assert not maintenance.services.database.has_data()
        assert maintenance.services.database.revision() is None  # not even migrated
    finally:
        maintenance.engine.dispose()


def test_restore_refuses_what_is_not_an_archive(tmp_path: Path, target: Settings) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not gzip")
    assert "is not a readable nidan backup" in assert_refused(
        cli_for(target, tmp_path)("restore", str(junk)), "backup_damaged"
    )
    unsafe = write_archive(tmp_path / "unsafe.tar.gz", {"../../etc/evil": b"x"})
    assert "no part of a nidan backup" in assert_refused(
        cli_for(target, tmp_path)("restore", str(unsafe)), "backup_damaged"
    )


def test_restore_refuses_a_database_with_data_unless_forced(
    runtime: Runtime, population: Population, archive: Path, settings: Settings, tmp_path: Path, clock: FixedClock
) -> None:
    make_user(runtime.services, "after-backup")
    nidan = cli_for(settings, tmp_path)
    line = assert_refused(nidan("restore", str(archive)), "database_not_empty")
    assert "--force" in line

    result = nidan("restore", str(archive), "--force")
    assert result.exit_code == 0, result.output
    with runtime.engine.connect() as connection:
        names = set(connection.execute(select(t.users.c.username)).scalars())
    assert names == {"alice", "bob"}  # replaced by the backup's rows
    assert sign_in_with_totp(runtime.services, "alice", population.secrets["alice"]).user.username == "alice"


def test_forced_restore_moves_other_keys_aside_and_never_overwrites_a_sealing_key(
    runtime: Runtime, population: Population, archive: Path, target: Settings, tmp_path: Path, clock: FixedClock
) -> None:
    # The target instance ran once: it has its own keys and data.
    other = build_runtime(target, clock=clock)
    make_user(other.services, "someone")
    other.engine.dispose()
    keys_dir = target.resolved_keys_dir
    own_hash = (keys_dir / "hash.key").read_bytes()
    own_primary = (keys_dir / "primary").read_text().strip()

    report = run_restore(target, archive, replace=True)
    assert len(report.moved_aside) == 2  # primary and hash.key held other content
    aside = next(keys_dir.glob("replaced-*"))
    assert (aside / "hash.key").read_bytes() == own_hash
    assert (keys_dir / f"seal-{own_primary}.key").exists()  # kept: the archive has another name for its key
    restored = build_runtime(target, clock=clock)
    try:
        assert sign_in_with_totp(restored.services, "alice", population.secrets["alice"]).user.username == "alice"
        assert signin.current_session(restored.services, population.sessions["bob"]).user.username == "bob"
    finally:
        restored.engine.dispose()


def test_restore_refuses_a_sealing_key_file_with_other_content(archive: Path, target: Settings, tmp_path: Path) -> None:
    members = read_archive(archive)
    sealing = next(name for name in members if name.startswith("keys/seal-"))
    keys_dir = target.resolved_keys_dir
    keys_dir.mkdir(parents=True)
    damaged = keys_dir / sealing.removeprefix("keys/")
    damaged.write_bytes(members["keys/hash.key"])  # another key under the sealing key's name
    with pytest.raises(ConfigurationError) as raised:
        run_restore(target, archive)
    assert "different key" in raised.value.message
    assert damaged.read_bytes() == members["keys/hash.key"]
    maintenance = build_maintenance(target)
    try:
        assert maintenance.services.database.revision() is None
    finally:
        maintenance.engine.dispose()


def test_a_newer_archive_format_is_refused(archive: Path, tmp_path: Path, target: Settings) -> None:
    members = read_archive(archive)
    manifest = json.loads(members["manifest.json"])
    manifest["format_version"] = 99
    members["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(BackupIncomplete, match="format 99"):
        run_restore(target, write_archive(tmp_path / "newer.tar.gz", members))


def test_a_damaged_hash_key_is_refused_at_start(
    runtime: Runtime, population: Population, archive: Path, target: Settings, clock: FixedClock
) -> None:
    run_restore(target, archive)
    (target.resolved_keys_dir / "hash.key").write_bytes((target.resolved_keys_dir / "hash.key").read_bytes()[::-1])
    with pytest.raises(ConfigurationError):
        build_runtime(target, clock=clock)  # a damaged hash.key is refused by name, not used


# -- the command line ------------------------------------------------------------------------------------------


def test_backup_and_restore_on_the_command_line(
    runtime: Runtime,
    population: Population,
    settings: Settings,
    target: Settings,
    tmp_path: Path,
    clock: FixedClock,
) -> None:
    path = tmp_path / "cli.tar.gz"
    source: Invoke = cli_for(settings, tmp_path)
    result = source("backup", str(path))
    assert result.exit_code == 0, result.output
    assert f"Backed up to {path} (mode 0600)." in result.stdout
    assert "2 users" in result.stdout and "2 TOTP secrets sealed" in result.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    result = cli_for(target, tmp_path)("restore", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"Restored {path} (made ")
    assert "2 users" in result.stdout
    assert stat.S_IMODE(target.resolved_keys_dir.stat().st_mode) == 0o700
    for key_file in target.resolved_keys_dir.iterdir():
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600, key_file
    restored = build_runtime(target, clock=clock)
    try:
        assert sign_in_with_totp(restored.services, "alice", population.secrets["alice"]).user.username == "alice"
    finally:
        restored.engine.dispose()


def test_backup_replaces_an_existing_file_atomically(
    runtime: Runtime, population: Population, settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "rolling.tar.gz"
    path.write_bytes(b"yesterday")
    os.chmod(path, 0o644)
    assert cli_for(settings, tmp_path)("backup", str(path)).exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "manifest.json" in read_archive(path)


def test_backup_of_an_instance_that_never_ran(tmp_path: Path, postgres: PostgresDatabases | None) -> None:
    with empty_instance("sqlite", tmp_path, postgres) as settings:
        result = cli_for(settings, tmp_path)("backup", str(tmp_path / "x.tar.gz"))
        line = assert_refused(result, "instance_not_found", exit_code=2)
        assert f"No nidan instance at {settings.data_dir}" in line
        assert not settings.data_dir.exists() and not (tmp_path / "x.tar.gz").exists()


def test_fingerprints_in_the_manifest_are_the_keys(archive: Path) -> None:
    members = read_archive(archive)
    manifest = fmt.parse_manifest(members["manifest.json"])
    for name in manifest.key_fingerprints:
        decoded = decode_key_file(members[f"keys/seal-{name}.key"])
        assert decoded is not None and fingerprint(decoded) == name


def test_a_garbled_manifest_is_refused(archive: Path, tmp_path: Path, target: Settings) -> None:
    members = read_archive(archive)
    members["manifest.json"] = b"{not json"
    with pytest.raises(BackupDamaged, match=r"manifest\.json cannot be read"):
        run_restore(target, write_archive(tmp_path / "garbled.tar.gz", members))


def test_restoring_twice_is_refused_the_second_time(archive: Path, target: Settings) -> None:
    run_restore(target, archive)
    with pytest.raises(DatabaseNotEmpty):
        run_restore(target, archive)
