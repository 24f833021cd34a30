"""``nidan doctor``: look at the database, the keys and the clock without changing anything, and say what to fix.

Each check ends OK, WARN (works, but needs attention) or FAIL (nidan will not work, or not safely). Nothing here
creates a key, a file or a table, or applies a migration.

The findings are for the operator at the terminal (the command line stays English): plain strings, not msgids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from nidan.core.backup import plural
from nidan.core.keys import PURPOSE_HASH, PURPOSE_PRIMARY, KeyInventory, seal_file
from nidan.errors import ConfigurationError
from nidan.services.maintenance import MaintenanceContext

#: A database server clock further off than this from ours is worth a warning (TOTP steps are 30 s).
CLOCK_TOLERANCE = timedelta(seconds=15)


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    name: str
    message: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    checks: list[Check]

    @property
    def failed(self) -> bool:
        return any(check.status is Status.FAIL for check in self.checks)


@dataclass(frozen=True, slots=True)
class _Database:
    reachable: bool
    has_data: bool
    sealed: Mapping[str, int]
    #: The key fingerprints the database is used with (``hash``, ``primary``).
    recorded: Mapping[str, str] = field(default_factory=dict)


def _database_checks(ctx: MaintenanceContext, checks: list[Check]) -> _Database:
    database = ctx.database
    where = database.describe()
    if not database.exists():
        checks.append(Check(Status.WARN, "database", f"no database yet ({where}); `nidan serve` creates it"))
        return _Database(reachable=False, has_data=False, sealed={})
    try:
        database.ping()
    except ConfigurationError as exc:
        checks.append(Check(Status.FAIL, "database", exc.message))
        return _Database(reachable=False, has_data=False, sealed={})
    checks.append(Check(Status.OK, "database", f"reachable ({where})"))
    revision, head = database.revision(), database.head_revision()
    if revision is None:
        checks.append(Check(Status.WARN, "migrations", "no nidan tables yet; `nidan serve` creates them"))
    elif not database.knows_revision(revision):
        checks.append(
            Check(
                Status.FAIL,
                "migrations",
                f"the database is at revision {revision}, which this nidan ({ctx.version}) does not know: a newer "
                "nidan migrated it; run that version",
            )
        )
    elif pending := database.pending_migrations():
        checks.append(
            Check(
                Status.WARN,
                "migrations",
                f"at revision {revision}; pending: {', '.join(pending)}. The next `nidan serve` (or any nidan "
                "command but doctor, backup and restore) applies them: make a backup first (`nidan backup FILE`)",
            )
        )
    else:
        checks.append(Check(Status.OK, "migrations", f"at revision {revision}, the newest ({head})"))
    return _Database(
        reachable=True,
        has_data=database.has_data(),
        sealed=database.sealed_counts(),
        recorded=database.recorded_keys(),
    )


def _key_checks(ctx: MaintenanceContext, data: _Database, checks: list[Check]) -> KeyInventory:
    inventory = ctx.keys.inventory()
    where = inventory.location
    if not inventory.exists:
        if data.has_data:
            checks.append(
                Check(
                    Status.FAIL,
                    "keys",
                    f"the key directory {where} does not exist, but the database holds data: restore the key "
                    "directory from your backup (nidan will not start without it)",
                )
            )
        else:
            checks.append(Check(Status.WARN, "keys", f"no key directory yet ({where}); the first start creates it"))
        return inventory
    problems = 0
    for name, secrets in sorted(data.sealed.items()):
        if name not in inventory.sealing:
            problems += 1
            checks.append(
                Check(
                    Status.FAIL,
                    "keys",
                    f"{seal_file(name)} is missing from {where}: it sealed {plural(secrets, 'TOTP secret')}, which "
                    f"nobody can use without it. Restore {seal_file(name)} from your backup into {where} and "
                    "restart nidan",
                )
            )
    for damage in inventory.damaged:
        problems += 1
        checks.append(Check(Status.FAIL, "keys", f"damaged key file in {where}: {damage}; restore it from backup"))
    if inventory.primary is None:
        problems += 1
        checks.append(
            Check(
                Status.FAIL if data.has_data or inventory.sealing else Status.WARN,
                "keys",
                f"{where}/primary is missing: it names the key that seals new secrets; restore it from your backup",
            )
        )
    elif inventory.primary not in inventory.active:
        problems += 1
        checks.append(
            Check(
                Status.FAIL,
                "keys",
                f"{where}/primary names key {inventory.primary}, but {seal_file(inventory.primary)} is not in "
                f"{where}: restore it from your backup",
            )
        )
    if not inventory.hash_key:
        problems += 1
        checks.append(
            Check(
                Status.FAIL if data.has_data else Status.WARN,
                "keys",
                f"{where}/hash.key is missing or unreadable: it keys the session, sign-in and setup token hashes. "
                "Restore it from your backup (nidan does not start without it once the database holds data)",
            )
        )
    recorded_hash = data.recorded.get(PURPOSE_HASH)
    if recorded_hash and inventory.hash_fingerprint and recorded_hash != inventory.hash_fingerprint:
        problems += 1
        checks.append(
            Check(
                Status.FAIL,
                "keys",
                f"{where}/hash.key (fingerprint {inventory.hash_fingerprint}) is not the one the database is used "
                f"with ({recorded_hash}): copy hash.key from a process that works (or from your backup); every "
                "process needs the same key files",
            )
        )
    recorded_primary = data.recorded.get(PURPOSE_PRIMARY)
    if recorded_primary and recorded_primary not in inventory.sealing:
        problems += 1
        checks.append(
            Check(
                Status.FAIL,
                "keys",
                f"the database's primary sealing key {recorded_primary} is not in {where}: copy "
                f"{seal_file(recorded_primary)} and `primary` from the host where the key rotation ran",
            )
        )
    elif recorded_primary and inventory.primary and recorded_primary != inventory.primary:
        checks.append(
            Check(
                Status.WARN,
                "keys",
                f"{where}/primary names {inventory.primary}, but the database's primary sealing key is "
                f"{recorded_primary}: this host seals new secrets with an older key; copy `primary` from the host "
                "where the key rotation ran and restart",
            )
        )
    if not problems:
        in_use = sum(data.sealed.values())
        checks.append(
            Check(
                Status.OK,
                "keys",
                f"{plural(len(inventory.sealing), 'sealing key')} and hash.key in {where}; every key the data "
                f"names is there ({plural(in_use, 'TOTP secret')})",
            )
        )
    stale = {name: n for name, n in data.sealed.items() if name != inventory.primary and name in inventory.sealing}
    if stale and inventory.primary in inventory.active:
        listed = ", ".join(f"{plural(n, 'secret')} under {name}" for name, n in sorted(stale.items()))
        checks.append(
            Check(
                Status.WARN,
                "rotation",
                f"{listed}, not the primary {inventory.primary}: a rotation is unfinished, or a process still runs "
                "with the old key. Restart every nidan process, then run `nidan keys rotate --reseal`",
            )
        )
    return inventory


def _permission_checks(inventory: KeyInventory, checks: list[Check]) -> None:
    if not inventory.exists:
        return
    where = inventory.location
    loose = {name: mode for name, mode in inventory.file_modes.items() if mode & 0o077}
    directory = inventory.directory_mode or 0
    if not loose and not directory & 0o077:
        checks.append(Check(Status.OK, "permissions", f"{where} is 0700 and its key files 0600 (or stricter)"))
        return
    for name, mode in sorted(loose.items()):
        status = Status.FAIL if mode & 0o007 else Status.WARN
        checks.append(
            Check(
                status,
                "permissions",
                f"{where}/{name} is {mode:04o}: others than nidan's user can read it; run `chmod 600 {where}/{name}`",
            )
        )
    if directory & 0o077:
        status = Status.FAIL if directory & 0o007 else Status.WARN
        checks.append(Check(status, "permissions", f"{where} is {directory:04o}; run `chmod 700 {where}`"))


def _clock_checks(ctx: MaintenanceContext, data: _Database, checks: list[Check]) -> None:
    sync = ctx.clock_sync()
    if sync.synchronised is None:
        checks.append(
            Check(
                Status.WARN,
                "clock",
                "cannot tell whether the clock is synchronised; TOTP depends on it: run NTP (chrony/systemd-timesyncd)",
            )
        )
    elif sync.synchronised:
        checks.append(
            Check(Status.OK, "clock", f"synchronised ({sync.source}{': ' + sync.detail if sync.detail else ''})")
        )
    else:
        checks.append(
            Check(
                Status.FAIL,
                "clock",
                f"not synchronised ({sync.source}: {sync.detail}); TOTP codes depend on the time: turn on NTP "
                "(`timedatectl set-ntp true`, or start chronyd)",
            )
        )
    if not data.reachable:
        return
    server = ctx.database.server_time()
    if server is None:
        return
    offset = server - ctx.clock.now()
    seconds = round(offset.total_seconds())
    if abs(offset) > CLOCK_TOLERANCE:
        checks.append(
            Check(
                Status.WARN,
                "clock",
                f"the database server's clock is {abs(seconds)} s {'ahead of' if seconds > 0 else 'behind'} this "
                "host's: one of them is not synchronised (TOTP uses this host's clock; run NTP on both)",
            )
        )
    else:
        checks.append(
            Check(Status.OK, "clock", f"the database server's clock agrees with this host's ({seconds:+d} s)")
        )


def diagnose(ctx: MaintenanceContext) -> Diagnosis:
    checks: list[Check] = []
    data = _database_checks(ctx, checks)
    inventory = _key_checks(ctx, data, checks)
    _permission_checks(inventory, checks)
    _clock_checks(ctx, data, checks)
    return Diagnosis(checks)
