"""Backup and restore: one archive with everything an instance needs, checked whole before anything is restored.

``backup`` reads the database from one consistent snapshot (the server may keep running), adds the key files the
data needs, and refuses to write an archive that would be incomplete. ``restore`` refuses an archive that lacks a
part or whose parts disagree with its manifest, naming the part, and refuses a database that holds data unless
told to replace it; only then does it load the rows (one transaction) and write the key files.

Only the command line runs these (``nidan backup``, ``nidan restore``), for the operator, in English: their messages
are plain strings, not msgids (``nidan.texts``); no page shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nidan.core import backup as fmt
from nidan.core.backup import DumpSummary, Manifest
from nidan.core.keys import HASH_KEY_FILE, PRIMARY_FILE, PURPOSE_HASH, PURPOSE_PRIMARY, fingerprint_of_file
from nidan.core.sealing import decode_key_file, fingerprint
from nidan.errors import (
    BackupDamaged,
    BackupIncomplete,
    ConfigurationError,
    DatabaseNotEmpty,
    HashKeyMismatch,
    InvalidInput,
    KeyMissing,
)
from nidan.services.maintenance import MaintenanceContext


@dataclass(frozen=True, slots=True)
class RestoreReport:
    manifest: Manifest
    loaded: DumpSummary
    #: Key files that were already there with other content and were moved aside (never overwritten).
    moved_aside: list[str] = field(default_factory=list)


def _key_fingerprints(files: Mapping[str, bytes]) -> dict[str, str | None]:
    """``seal-<fp>.key`` file name → the fingerprint of the key it really holds (``None``: not a key)."""
    found: dict[str, str | None] = {}
    for name, content in files.items():
        if fingerprint_of_file(name) is not None:
            key = decode_key_file(content)
            found[name] = fingerprint(key) if key is not None else None
    return found


def backup(ctx: MaintenanceContext, destination: Path, *, after_table: Callable[[str], None] | None = None) -> Manifest:
    """Write the archive at ``destination`` (whole or not at all) and return its manifest.

    ``after_table`` is called after each table is dumped (tests use it to write while the dump runs)."""
    database = ctx.database
    if not database.exists():
        raise InvalidInput(f"There is no database yet ({database.describe()}): there is nothing to back up.")
    database.ping()
    if database.revision() is None:
        raise InvalidInput(f"The database ({database.describe()}) has no nidan tables yet: nothing to back up.")
    with ctx.archives.create(destination) as archive:
        with archive.member(fmt.DUMP) as out:
            summary = database.dump(out, after_table=after_table)
        files = ctx.keys.export(summary.sealed)
        held = {
            name: actual for name, actual in _key_fingerprints(files).items() if actual == fingerprint_of_file(name)
        }
        present = frozenset(str(actual) for actual in held.values())
        for name, secrets in sorted(summary.sealed.items()):
            if name not in present:
                raise KeyMissing(name, secrets=secrets, keys_dir=ctx.keys.location)
        hash_key = decode_key_file(files.get(HASH_KEY_FILE, b""))
        if hash_key is None:
            raise ConfigurationError(
                f"The key directory {ctx.keys.location} has no usable hash.key: the backup would be incomplete. "
                "Restore hash.key from an earlier backup first. No archive was written."
            )
        recorded_hash = summary.recorded_keys.get(PURPOSE_HASH)
        if recorded_hash is not None and recorded_hash != fingerprint(hash_key):
            raise HashKeyMismatch(fingerprint(hash_key), recorded_hash, ctx.keys.location)
        recorded_primary = summary.recorded_keys.get(PURPOSE_PRIMARY)
        if recorded_primary is not None and recorded_primary not in present:
            raise KeyMissing(
                recorded_primary,
                keys_dir=ctx.keys.location,
                message=f"The database's primary sealing key {recorded_primary} is not in the key directory "
                f"{ctx.keys.location}: the backup would be incomplete. Copy seal-{recorded_primary}.key from the "
                "host where the key rotation ran. No archive was written.",
            )
        primary = files.get(PRIMARY_FILE, b"").decode("ascii", "replace").strip()
        if primary not in present:
            raise ConfigurationError(
                f"The key directory {ctx.keys.location} has no usable primary key (the file `primary` and the key "
                "it names): the backup would be incomplete. No archive was written."
            )
        for name in (*sorted(held), PRIMARY_FILE, HASH_KEY_FILE):
            archive.add(fmt.KEYS_PREFIX + name, files[name])
        manifest = Manifest(
            nidan_version=ctx.version,
            revision=summary.revision,
            created_at=ctx.clock.now(),
            source_database=database.backend,
            key_fingerprints=tuple(sorted(present)),
            primary=primary,
            sealed=dict(summary.sealed),
            row_counts=dict(summary.row_counts),
            members=dict(archive.digests()),
        )
        archive.add(fmt.MANIFEST, manifest.to_json())
    return manifest


def restore(ctx: MaintenanceContext, source: Path, *, replace: bool = False) -> RestoreReport:
    """Check the archive at ``source`` whole, then load it into the configured database and key directory."""
    with ctx.archives.open(source) as archive:
        digests = dict(archive.digests())
        if fmt.MANIFEST not in digests:
            raise BackupIncomplete(
                f"The archive lacks {fmt.MANIFEST}: it is not a complete nidan backup (make one with `nidan "
                "backup`). Nothing was restored."
            )
        manifest = fmt.parse_manifest(archive.read(fmt.MANIFEST))
        del digests[fmt.MANIFEST]
        fmt.check_members(manifest, digests)
        key_files = {
            name.removeprefix(fmt.KEYS_PREFIX): archive.read(name)
            for name in digests
            if name.startswith(fmt.KEYS_PREFIX)
        }
        sealing = _key_fingerprints(key_files)
        primary = key_files[PRIMARY_FILE].decode("ascii", "replace").strip()
        fmt.check_key_files(manifest, {fmt.KEYS_PREFIX + name: fp for name, fp in sealing.items()}, primary)
        hash_key = decode_key_file(key_files[HASH_KEY_FILE])
        if hash_key is None:
            raise BackupDamaged("The archived key file hash.key does not hold a key: it is damaged.")
        archived_keys = frozenset(fp for fp in sealing.values() if fp is not None)
        with archive.lines(fmt.DUMP) as lines:
            header, rows = fmt.read_dump(lines)
            summary = fmt.summarize(header, rows)
        fmt.check_dump(manifest, summary, archived_keys)
        fmt.check_recorded_keys(summary, fingerprint(hash_key), archived_keys)
        # The archive is whole. Now the target: refuse before changing anything.
        database = ctx.database
        if database.exists():
            database.ping()
            if not replace and database.has_data():
                raise DatabaseNotEmpty(
                    f"The database ({database.describe()}) already holds data. Restore into an empty database, or "
                    "pass --force to replace everything in it with the backup."
                )
        ctx.keys.check_install(key_files)
        with archive.lines(fmt.DUMP) as lines:
            loaded = database.restore(lines, replace=replace)
        moved = ctx.keys.install(key_files)
    return RestoreReport(manifest=manifest, loaded=loaded, moved_aside=moved)
