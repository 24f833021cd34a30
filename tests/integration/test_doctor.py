"""``nidan doctor`` (database, migrations, keys, permissions, clock; changes nothing) and the start-up key checks
that refuse, by name, to run with keys that do not fit the data — on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from nidan.adapters.clocksync import SystemClockSync
from nidan.bootstrap import Runtime, build_maintenance, build_runtime
from nidan.config import Settings
from nidan.core.models import ClockSync
from nidan.core.sealing import KEY_BYTES, encode_key_file
from nidan.db import engine as db_engine
from nidan.db import tables as t
from nidan.errors import HashKeyMismatch, HashKeyMissing, KeyMissing
from nidan.services import doctor
from tests.conftest import FixedClock, PostgresDatabases
from tests.integration.backup_support import (
    Invoke,
    Population,
    assert_refused,
    cli_for,
    empty_instance,
    populate,
    sign_in_with_totp,
)

SYNCED = ClockSync(True, "timedatectl", "NTPSynchronized=yes")


@pytest.fixture(autouse=True)
def synchronised_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line asks this host's clock; the tests decide what it says."""
    monkeypatch.setattr("nidan.bootstrap.SystemClockSync", lambda: lambda: SYNCED)


@pytest.fixture
def population(runtime: Runtime) -> Population:
    return populate(runtime.services)


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    return cli_for(settings, tmp_path)


def diagnose(settings: Settings, clock: FixedClock | None = None, sync: ClockSync = SYNCED) -> doctor.Diagnosis:
    maintenance = build_maintenance(settings, clock=clock, clock_sync=lambda: sync)
    try:
        return doctor.diagnose(maintenance.services)
    finally:
        maintenance.engine.dispose()


def lines(diagnosis: doctor.Diagnosis, status: doctor.Status) -> list[str]:
    return [f"{c.name}: {c.message}" for c in diagnosis.checks if c.status is status]


def keys_of(settings: Settings) -> Sequence[str]:
    return sorted(str(p.relative_to(settings.resolved_keys_dir)) for p in settings.resolved_keys_dir.rglob("*"))


# -- a healthy instance --------------------------------------------------------------------------------------


def test_a_healthy_instance(runtime: Runtime, population: Population, nidan: Invoke) -> None:
    result = nidan("doctor")
    assert result.exit_code == 0, result.output
    out = result.stdout.splitlines()
    assert [line.split()[:2] for line in out[:-1]] == [
        ["OK", "database"],
        ["OK", "migrations"],
        ["OK", "keys"],
        ["OK", "permissions"],
        ["OK", "clock"],
        *([["OK", "clock"]] if runtime.engine.dialect.name == "postgresql" else []),
    ]
    assert "every key the data names is there (2 TOTP secrets)" in result.stdout
    assert out[-1] == "Everything nidan needs is in place."


def test_doctor_refuses_where_no_instance_is_and_changes_nothing(
    tmp_path: Path, postgres: PostgresDatabases | None
) -> None:
    for backend in ("sqlite", "postgresql") if postgres else ("sqlite",):
        with empty_instance(backend, tmp_path, postgres) as settings:
            result = cli_for(settings, tmp_path)("doctor")
            line = assert_refused(result, "instance_not_found", exit_code=2)
            assert f"No nidan instance at {settings.data_dir}" in line and "`nidan init`" in line
            assert not settings.data_dir.exists()  # no data directory, no SQLite file, no keys
            maintenance = build_maintenance(settings)
            try:
                assert maintenance.services.database.revision() is None  # not migrated
            finally:
                maintenance.engine.dispose()


def test_pending_migrations_are_listed_not_applied(runtime: Runtime, settings: Settings, nidan: Invoke) -> None:
    db_engine.downgrade(runtime.engine, "0001")
    result = nidan("doctor")
    assert result.exit_code == 0, result.output
    assert "WARN  migrations" in result.stdout
    pending = sorted(db_engine.pending_migrations(runtime.engine))
    assert pending[0] == "0002" and len(pending) >= 4  # 0002 ... the newest, none applied
    assert f"at revision 0001; pending: {', '.join(pending)}" in result.stdout


def test_an_unreachable_database_fails(tmp_path: Path, settings: Settings) -> None:
    unreachable = settings.model_copy(update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    result = cli_for(unreachable, tmp_path)("doctor")
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL  database")
    assert "The database cannot be used" in result.stdout
    assert "1 check failed: fix it first." in result.stdout


# -- keys ----------------------------------------------------------------------------------------------------


def test_a_missing_sealing_key_fails_by_name(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke
) -> None:
    keys_dir = settings.resolved_keys_dir
    primary = (keys_dir / "primary").read_text().strip()
    (keys_dir / f"seal-{primary}.key").unlink()
    result = nidan("doctor")
    assert result.exit_code == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert any(
        f"seal-{primary}.key is missing from {keys_dir}: it sealed 2 TOTP secrets" in line
        and "Restore" in line
        and "from your backup" in line
        for line in failed
    ), failed
    assert any(f"primary names key {primary}" in line for line in failed)


def test_missing_hash_key_and_loose_permissions(
    runtime: Runtime, population: Population, settings: Settings, clock: FixedClock
) -> None:
    keys_dir = settings.resolved_keys_dir
    (keys_dir / "hash.key").unlink()
    primary = (keys_dir / "primary").read_text().strip()
    (keys_dir / f"seal-{primary}.key").chmod(0o644)
    (keys_dir / "primary").chmod(0o640)
    keys_dir.chmod(0o755)
    diagnosis = diagnose(settings, clock)
    assert diagnosis.failed
    failed, warned = lines(diagnosis, doctor.Status.FAIL), lines(diagnosis, doctor.Status.WARN)
    assert any(line.startswith("keys:") and "hash.key is missing" in line for line in failed)
    assert any(f"seal-{primary}.key is 0644" in line and "chmod 600" in line for line in failed)
    assert any("primary is 0640" in line for line in warned)  # group only: a warning
    assert any(f"{keys_dir} is 0755; run `chmod 700 {keys_dir}`" in line for line in failed)


def test_an_unfinished_rotation_is_a_warning(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke, clock: FixedClock
) -> None:
    assert nidan("keys", "rotate", "--prepare").exit_code == 0
    diagnosis = diagnose(settings, clock)
    assert not diagnosis.failed
    assert any(
        line.startswith("rotation:") and "2 secrets under" in line and "nidan keys rotate --reseal" in line
        for line in lines(diagnosis, doctor.Status.WARN)
    )


def test_damaged_key_file_fails(runtime: Runtime, population: Population, settings: Settings) -> None:
    keys_dir = settings.resolved_keys_dir
    primary = (keys_dir / "primary").read_text().strip()
    (keys_dir / f"seal-{primary}.key").write_bytes((keys_dir / "hash.key").read_bytes())
    failed = lines(diagnose(settings), doctor.Status.FAIL)
    assert any(f"seal-{primary}.key: it does not hold the key it is named after" in line for line in failed)


# -- the clock -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sync", "status", "says"),
    [
        (SYNCED, doctor.Status.OK, "synchronised (timedatectl: NTPSynchronized=yes)"),
        (
            ClockSync(False, "timedatectl", "NTPSynchronized=no"),
            doctor.Status.FAIL,
            "not synchronised (timedatectl: NTPSynchronized=no); TOTP codes depend on the time",
        ),
        (
            ClockSync(None, "timedatectl, chronyc"),
            doctor.Status.WARN,
            "cannot tell whether the clock is synchronised; TOTP depends on it: run NTP (chrony/systemd-timesyncd)",
        ),
    ],
)
def test_clock_synchronisation(
    runtime: Runtime, settings: Settings, sync: ClockSync, status: doctor.Status, says: str
) -> None:
    diagnosis = diagnose(settings, sync=sync)
    clock_checks = [c for c in diagnosis.checks if c.name == "clock"]
    assert clock_checks[0].status is status
    assert says in clock_checks[0].message
    assert diagnosis.failed is (status is doctor.Status.FAIL)


def test_a_database_server_clock_far_from_ours_is_a_warning(runtime: Runtime, settings: Settings) -> None:
    off = FixedClock()
    off.set(off.now().replace(year=2020))
    warned = lines(diagnose(settings, off), doctor.Status.WARN)
    server_clock = [line for line in warned if "the database server's clock is" in line]
    if runtime.engine.dialect.name == "postgresql":
        assert any("ahead of this host's" in line for line in server_clock), warned
    else:  # SQLite runs in this process: it has no clock of its own to disagree with
        assert server_clock == []


def fake_runner(answers: dict[str, str | None]) -> object:
    def run(command: Sequence[str]) -> str | None:
        return answers.get(command[0])

    return run


@pytest.mark.parametrize(
    ("answers", "flag", "expected"),
    [
        ({"timedatectl": "yes\n"}, False, (True, "timedatectl")),
        ({"timedatectl": "no\n"}, False, (False, "timedatectl")),
        ({"timedatectl": None}, True, (True, "flag")),
        ({"chronyc": "Reference ID    : A\nLeap status     : Normal\n"}, False, (True, "chronyc tracking")),
        ({"chronyc": "Leap status     : Not synchronised\n"}, False, (False, "chronyc tracking")),
        ({}, False, (None, "timedatectl, /run/systemd/timesync/synchronized, chronyc")),
    ],
)
def test_clock_sync_probe(
    tmp_path: Path, answers: dict[str, str | None], flag: bool, expected: tuple[bool | None, str]
) -> None:
    flag_file = tmp_path / "synchronized"
    if flag:
        flag_file.touch()
    probe = SystemClockSync(run=fake_runner(answers), flag=flag_file)  # type: ignore[arg-type]
    found = probe()
    source = str(flag_file) if expected[1] == "flag" else expected[1]
    assert (found.synchronised, found.source) == (expected[0], source)


# -- start-up key checks ---------------------------------------------------------------------------------------


@pytest.fixture
def stopped(runtime: Runtime, population: Population) -> Iterator[Runtime]:
    runtime.engine.dispose()
    yield runtime


def test_start_refuses_without_hash_key_once_there_is_data(stopped: Runtime, settings: Settings, nidan: Invoke) -> None:
    keys_dir = settings.resolved_keys_dir
    (keys_dir / "hash.key").unlink()
    before = keys_of(settings)
    with pytest.raises(HashKeyMissing) as raised:
        build_runtime(settings)
    assert str(keys_dir) in raised.value.message
    assert "Restore hash.key from your backup" in raised.value.message
    assert "nidan keys rotate-hash" in raised.value.message
    line = assert_refused(nidan("user", "list"), "hash_key_missing", exit_code=2)
    assert "every session, sign-in attempt and setup link would stop working" in line
    assert keys_of(settings) == before  # no new hash.key was made behind the administrator's back

    assert nidan("keys", "rotate-hash", "--yes").exit_code == 0  # the deliberate way out
    assert nidan("user", "list").exit_code == 0


def test_a_brand_new_instance_makes_its_keys(tmp_path: Path, postgres: PostgresDatabases | None) -> None:
    with empty_instance("sqlite", tmp_path, postgres) as settings:
        runtime = build_runtime(settings)
        runtime.engine.dispose()
        assert {"hash.key", "primary"} <= set(keys_of(settings))


def test_an_instance_that_ran_once_makes_no_new_keys(runtime: Runtime, settings: Settings) -> None:
    """No data yet, but a process recorded its keys: a new hash.key would not be the one other processes hold."""
    runtime.engine.dispose()
    (settings.resolved_keys_dir / "hash.key").unlink()
    with pytest.raises(HashKeyMissing):
        build_runtime(settings)
    assert not (settings.resolved_keys_dir / "hash.key").exists()


def test_a_process_with_another_hash_key_refuses(runtime: Runtime, settings: Settings, tmp_path: Path) -> None:
    """Two hosts on one database, each with its own key directory: the second refuses, naming both keys."""
    other = settings.model_copy(update={"data_dir": tmp_path / "other-host"})
    (other.data_dir / "keys").mkdir(parents=True)
    for name in ("primary", *(p.name for p in settings.resolved_keys_dir.glob("seal-*.key"))):
        (other.data_dir / "keys" / name).write_bytes((settings.resolved_keys_dir / name).read_bytes())
    (other.data_dir / "keys" / "hash.key").write_bytes(encode_key_file(os.urandom(KEY_BYTES)))  # its own
    with pytest.raises(HashKeyMismatch) as raised:
        build_runtime(other)
    assert "is not the one this database is used with" in raised.value.message
    failed = lines(diagnose(other), doctor.Status.FAIL)
    assert any(
        "hash.key (fingerprint" in line and "is not the one the database is used with" in line for line in failed
    )


def test_a_process_without_the_rotated_primary_refuses(
    runtime: Runtime, population: Population, settings: Settings, nidan: Invoke, tmp_path: Path
) -> None:
    """A host whose key directory was not given the key ``keys rotate --prepare`` made refuses to start."""
    stale_keys = tmp_path / "stale-keys"
    stale_keys.mkdir()
    for path in settings.resolved_keys_dir.iterdir():
        (stale_keys / path.name).write_bytes(path.read_bytes())
    assert nidan("keys", "rotate", "--prepare").exit_code == 0
    new = (settings.resolved_keys_dir / "primary").read_text().strip()
    stale = settings.model_copy(update={"keys_dir": stale_keys})
    with pytest.raises(KeyMissing) as raised:
        build_runtime(stale)
    assert raised.value.fingerprint == new
    assert f"The database's primary sealing key is {new}" in raised.value.message
    failed = lines(diagnose(stale), doctor.Status.FAIL)
    assert any(f"the database's primary sealing key {new} is not in {stale_keys}" in line for line in failed)


def test_start_refuses_without_the_key_directory_and_makes_no_keys(
    stopped: Runtime, settings: Settings, nidan: Invoke
) -> None:
    keys_dir = settings.resolved_keys_dir
    primary = (keys_dir / "primary").read_text().strip()
    keys_dir.rename(keys_dir.with_name("keys-elsewhere"))
    with pytest.raises(KeyMissing) as raised:
        build_runtime(settings)
    assert raised.value.fingerprint == primary
    assert f"sealed 2 TOTP secrets is not in the key directory {keys_dir}" in raised.value.message
    assert f"Restore the key file seal-{primary}.key from your backup" in raised.value.message
    assert not keys_dir.exists()
    assert f"seal-{primary}.key" in assert_refused(nidan("serve"), "key_missing", exit_code=2)


def test_a_secret_under_a_retired_key_still_opens_at_start(
    stopped: Runtime, population: Population, settings: Settings, clock: FixedClock
) -> None:
    keys_dir = settings.resolved_keys_dir
    primary = (keys_dir / "primary").read_text().strip()
    (keys_dir / "retired").mkdir()
    (keys_dir / f"seal-{primary}.key").rename(keys_dir / "retired" / f"seal-{primary}.key")
    new_maintenance = build_maintenance(settings)
    try:
        new = new_maintenance.services.keys.add_sealing_key()
        new_maintenance.services.keys.set_primary(new)
    finally:
        new_maintenance.engine.dispose()
    restarted = build_runtime(settings, clock=clock)
    try:
        assert restarted.services.keyring.primary == new
        with restarted.engine.connect() as connection:
            named = set(connection.execute(select(t.totp_credentials.c.key_fingerprint)).scalars())
        assert named == {primary}
        secret = population.secrets["alice"]
        assert sign_in_with_totp(restarted.services, "alice", secret).user.username == "alice"
    finally:
        restarted.engine.dispose()
