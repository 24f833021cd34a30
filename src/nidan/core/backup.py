"""What a backup archive holds and how it is checked, as pure functions over names, digests and JSON lines.

An archive (``nidan backup``) has these members:

    manifest.json           what the archive must hold (below) and a SHA-256 of every other member
    database.jsonl          the portable dump: a header line, then one line per row, tables in foreign-key order
    keys/seal-<fp>.key      every sealing key the data names (and the others in the key directory)
    keys/primary            the fingerprint of the key that seals new secrets
    keys/hash.key           the key of the session, sign-in and setup token hashes

The dump is portable between SQLite and PostgreSQL: values are JSON, except bytes (base64) and times (ISO 8601,
UTC), and the header says which column holds which kind. ``check_members`` and ``check_dump`` refuse an archive
that lacks a part or whose parts do not match the manifest, naming the part, before anything is restored.

The messages are for the operator at the terminal (``nidan restore``; the command line stays English): plain
strings, not msgids (``nidan.texts``); no page shows them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nidan.errors import BackupDamaged, BackupIncomplete

FORMAT = "nidan-backup"
FORMAT_VERSION = 1
DUMP_FORMAT = "nidan-dump"
DUMP_VERSION = 1

MANIFEST = "manifest.json"
DUMP = "database.jsonl"
KEYS_PREFIX = "keys/"
HASH_KEY_MEMBER = KEYS_PREFIX + "hash.key"
PRIMARY_MEMBER = KEYS_PREFIX + "primary"

#: Where sealed secrets live, and the column naming the key that sealed each.
SEALED_TABLE = "totp_credentials"
SEALED_COLUMN = "key_fingerprint"
#: Where the database records the fingerprints of the keys it is used with, by purpose.
RECORDED_KEYS_TABLE = "instance_keys"

#: How a column's values are written in the dump.
KIND_VALUE = "value"  # JSON as it is: integers, strings, null
KIND_BYTES = "bytes"  # base64
KIND_DATETIME = "datetime"  # ISO 8601 in UTC
KIND_BOOL = "bool"  # JSON true / false (SQLite hands back 0 / 1)
KINDS = frozenset({KIND_VALUE, KIND_BYTES, KIND_DATETIME, KIND_BOOL})


def seal_member(fingerprint: str) -> str:
    return f"{KEYS_PREFIX}seal-{fingerprint}.key"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 row``, ``2 rows``; ``nouns`` for irregular plurals (``batch``/``batches``)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


# -- values ----------------------------------------------------------------------------------------------------


def encode_value(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == KIND_BYTES:
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == KIND_DATETIME:
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        # Naive values are UTC by nidan's convention (SQLite keeps no offset).
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return aware.isoformat(timespec="microseconds")
    if kind == KIND_BOOL:
        if value not in (0, 1):  # True, False, and SQLite's 0 and 1
            raise TypeError(f"expected a boolean, got {value!r}")
        return bool(value)
    if value is not True and value is not False and isinstance(value, int | str):
        return value
    raise TypeError(f"a {type(value).__name__} has no portable form in the dump")


def decode_value(kind: str, raw: Any) -> Any:
    if raw is None:
        return None
    if kind == KIND_BYTES:
        if not isinstance(raw, str):
            raise ValueError("bytes must be a base64 string")
        return base64.b64decode(raw, validate=True)
    if kind == KIND_DATETIME:
        if not isinstance(raw, str):
            raise ValueError("a time must be an ISO 8601 string")
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            raise ValueError("a time must carry its UTC offset")
        return moment.astimezone(UTC)
    if kind == KIND_BOOL:
        if raw is not True and raw is not False:
            raise ValueError("a boolean must be true or false")
        return raw
    if raw is True or raw is False or not isinstance(raw, int | str):
        raise ValueError("a plain value must be an integer, a string or null")
    return raw


# -- the dump --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableLayout:
    name: str
    #: Column name → kind, in the table's column order.
    columns: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class DumpHeader:
    revision: str
    tables: tuple[TableLayout, ...]

    def table(self, name: str) -> TableLayout | None:
        return next((layout for layout in self.tables if layout.name == name), None)


@dataclass(frozen=True, slots=True)
class DumpSummary:
    """What a dump holds: its schema revision, rows per table, and TOTP secrets per sealing-key fingerprint."""

    revision: str
    row_counts: Mapping[str, int]
    sealed: Mapping[str, int]
    #: The key fingerprints the data records (``hash``, ``primary``), when its schema has them.
    recorded_keys: Mapping[str, str] = field(default_factory=dict)


def header_line(header: DumpHeader) -> bytes:
    document = {
        "format": DUMP_FORMAT,
        "version": DUMP_VERSION,
        "revision": header.revision,
        "tables": [{"name": t.name, "columns": dict(t.columns)} for t in header.tables],
    }
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def row_line(layout: TableLayout, row: Mapping[str, Any]) -> bytes:
    encoded = {name: encode_value(kind, row[name]) for name, kind in layout.columns.items()}
    return json.dumps({"table": layout.name, "row": encoded}, separators=(",", ":")).encode() + b"\n"


def _damaged_dump(line_number: int, why: str) -> BackupDamaged:
    return BackupDamaged(f"The database dump {DUMP} is damaged at line {line_number}: {why}. Nothing was restored.")


def parse_header(line: bytes) -> DumpHeader:
    try:
        document = json.loads(line)
        if not isinstance(document, dict) or document.get("format") != DUMP_FORMAT:
            raise ValueError("it is not a nidan dump header")
        if document.get("version") != DUMP_VERSION:
            raise BackupIncomplete(
                f"The database dump is in format version {document.get('version')}, which this nidan does not "
                "read: restore it with the nidan version that made it."
            )
        tables = []
        for entry in document["tables"]:
            columns = {str(k): str(v) for k, v in entry["columns"].items()}
            if set(columns.values()) - KINDS:
                raise ValueError(f"unknown column kinds in {entry['name']}")
            tables.append(TableLayout(str(entry["name"]), columns))
        return DumpHeader(str(document["revision"]), tuple(tables))
    except BackupIncomplete:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _damaged_dump(1, str(exc) or type(exc).__name__) from None


def read_dump(lines: Iterable[bytes]) -> tuple[DumpHeader, Iterator[tuple[TableLayout, dict[str, Any]]]]:
    """The header, and the rows decoded (bytes and times back to Python values), checked line by line."""
    iterator = iter(lines)
    first = next(iterator, None)
    if first is None:
        raise _damaged_dump(1, "it is empty")
    header = parse_header(first)
    layouts = {layout.name: layout for layout in header.tables}

    def rows() -> Iterator[tuple[TableLayout, dict[str, Any]]]:
        for number, line in enumerate(iterator, start=2):
            if not line.strip():
                continue
            try:
                document = json.loads(line)
                layout = layouts[document["table"]]
                raw = document["row"]
                if not isinstance(raw, dict) or set(raw) != set(layout.columns):
                    raise ValueError(f"the row does not have the columns of {layout.name}")
                row = {name: decode_value(kind, raw[name]) for name, kind in layout.columns.items()}
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise _damaged_dump(number, str(exc) or type(exc).__name__) from None
            yield layout, row

    return header, rows()


class Tally:
    """Counts rows as they go by: per table, sealed secrets per key, and the recorded key fingerprints."""

    def __init__(self, header: DumpHeader) -> None:
        self.revision = header.revision
        self.counts = {layout.name: 0 for layout in header.tables}
        self.sealed: dict[str, int] = {}
        self.recorded: dict[str, str] = {}

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        self.counts[table] += 1
        if table == SEALED_TABLE:
            name = str(row[SEALED_COLUMN])
            self.sealed[name] = self.sealed.get(name, 0) + 1
        elif table == RECORDED_KEYS_TABLE:
            self.recorded[str(row["purpose"])] = str(row["fingerprint"])

    def summary(self) -> DumpSummary:
        return DumpSummary(self.revision, dict(self.counts), dict(self.sealed), dict(self.recorded))


def summarize(header: DumpHeader, rows: Iterable[tuple[TableLayout, Mapping[str, Any]]]) -> DumpSummary:
    """Count a dump's rows per table and its sealed secrets per key fingerprint (reads every row once)."""
    tally = Tally(header)
    for layout, row in rows:
        tally.add(layout.name, row)
    return tally.summary()


# -- the manifest ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    nidan_version: str
    revision: str
    created_at: datetime
    #: The back end the dump was read from (``sqlite``, ``postgresql``); a dump restores into either.
    source_database: str
    #: Sealing keys in the archive, the primary among them.
    key_fingerprints: tuple[str, ...]
    primary: str
    #: TOTP secrets per fingerprint of the key that sealed them: the keys the data names.
    sealed: Mapping[str, int]
    row_counts: Mapping[str, int]
    #: SHA-256 (hex) of every member but the manifest.
    members: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "nidan_version": self.nidan_version,
            "alembic_revision": self.revision,
            "created_at": self.created_at.astimezone(UTC).isoformat(timespec="seconds"),
            "source_database": self.source_database,
            "key_fingerprints": sorted(self.key_fingerprints),
            "primary_key": self.primary,
            "sealed_fingerprints": dict(sorted(self.sealed.items())),
            "row_counts": dict(self.row_counts),
            "members": dict(sorted(self.members.items())),
        }
        return json.dumps(document, indent=2).encode() + b"\n"


def parse_manifest(content: bytes) -> Manifest:
    unreadable = BackupDamaged(
        f"The archive's {MANIFEST} cannot be read: the archive is damaged or not a nidan backup."
    )
    try:
        document = json.loads(content)
    except ValueError:
        raise unreadable from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise unreadable
    if document.get("format_version") != FORMAT_VERSION:
        raise BackupIncomplete(
            f"The archive is in backup format {document.get('format_version')} (nidan "
            f"{document.get('nidan_version')}), which this nidan does not read: restore it with that version."
        )
    try:
        return Manifest(
            nidan_version=str(document["nidan_version"]),
            revision=str(document["alembic_revision"]),
            created_at=datetime.fromisoformat(document["created_at"]),
            source_database=str(document["source_database"]),
            key_fingerprints=tuple(str(f) for f in document["key_fingerprints"]),
            primary=str(document["primary_key"]),
            sealed={str(k): int(v) for k, v in document["sealed_fingerprints"].items()},
            row_counts={str(k): int(v) for k, v in document["row_counts"].items()},
            members={str(k): str(v) for k, v in document["members"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise unreadable from None


# -- checks ----------------------------------------------------------------------------------------------------


def _lacks_key(fingerprint: str, secrets: int) -> BackupIncomplete:
    return BackupIncomplete(
        f"The archive lacks key seal-{fingerprint}.key which sealed {plural(secrets, 'TOTP secret')}; restore it "
        "from the backup it came from (or from that instance's key directory). Nothing was restored."
    )


def check_members(manifest: Manifest, digests: Mapping[str, str]) -> None:
    """Every part the manifest lists is there with its checksum, no other part is, and the keys cover the data.

    ``digests``: the SHA-256 of every member found in the archive except the manifest."""
    if DUMP not in manifest.members or DUMP not in digests:
        raise BackupIncomplete(f"The archive lacks the database dump {DUMP}. Nothing was restored.")
    for fingerprint, secrets in sorted(manifest.sealed.items()):
        member = seal_member(fingerprint)
        if member not in digests:
            raise _lacks_key(fingerprint, secrets)
    for name, required in (
        (HASH_KEY_MEMBER, "which hashes session, sign-in and setup tokens"),
        (PRIMARY_MEMBER, "which names the key that seals new secrets"),
    ):
        if name not in digests:
            raise BackupIncomplete(
                f"The archive lacks key file {name.removeprefix(KEYS_PREFIX)}, {required}; restore it from the "
                "backup it came from. Nothing was restored."
            )
    for name in sorted(manifest.members):
        if name not in digests:
            raise BackupIncomplete(f"The archive lacks {name}, which its manifest lists. Nothing was restored.")
    for name in sorted(digests):
        if name not in manifest.members:
            raise BackupDamaged(f"The archive holds {name}, which its manifest does not list: it was altered.")
        if digests[name] != manifest.members[name]:
            raise BackupDamaged(
                f"The archive member {name} does not match its checksum in {MANIFEST}: the archive is damaged or "
                "was altered. Nothing was restored."
            )
    if manifest.primary not in manifest.key_fingerprints:
        raise BackupDamaged(f"The manifest names primary key {manifest.primary}, which the archive does not hold.")


def check_key_files(manifest: Manifest, fingerprints_of_files: Mapping[str, str | None], primary: str) -> None:
    """Each archived ``seal-<fp>.key`` holds the key named ``fp`` (``None``: unreadable), and ``primary`` agrees."""
    for name, actual in sorted(fingerprints_of_files.items()):
        expected = name.removeprefix(KEYS_PREFIX + "seal-").removesuffix(".key")
        if actual != expected:
            raise BackupDamaged(f"The archived key file {name} does not hold the key it is named after: it is damaged.")
    if primary != manifest.primary:
        raise BackupDamaged(f"The archived {PRIMARY_MEMBER} does not name the primary key the manifest names.")


def check_dump(manifest: Manifest, summary: DumpSummary, archived_keys: frozenset[str]) -> None:
    """The dump's sealed secrets name only keys the archive holds (``archived_keys``), and it has the revision,
    row counts and sealing keys the manifest promised."""
    for fingerprint, secrets in sorted(summary.sealed.items()):
        if fingerprint not in archived_keys:
            raise _lacks_key(fingerprint, secrets)
    if summary.revision != manifest.revision:
        raise BackupDamaged(
            f"The dump is at schema revision {summary.revision} but the manifest says {manifest.revision}: the "
            "archive was altered. Nothing was restored."
        )
    for table in sorted(set(summary.row_counts) | set(manifest.row_counts)):
        found, promised = summary.row_counts.get(table, 0), manifest.row_counts.get(table)
        if promised is None or found != promised:
            raise BackupDamaged(
                f"The dump holds {plural(found, 'row')} of {table} but the manifest says "
                f"{'none' if promised is None else promised}: the archive is damaged or was altered. Nothing was "
                "restored."
            )
    if dict(summary.sealed) != dict(manifest.sealed):
        raise BackupDamaged(
            "The sealing keys the dump's TOTP secrets name do not match the manifest's: the archive was altered. "
            "Nothing was restored."
        )


def check_recorded_keys(summary: DumpSummary, hash_fingerprint: str, archived_keys: frozenset[str]) -> None:
    """The keys the data says it is used with are the archived ones."""
    recorded_hash = summary.recorded_keys.get("hash")
    if recorded_hash is not None and recorded_hash != hash_fingerprint:
        raise BackupDamaged(
            f"The archived hash.key (fingerprint {hash_fingerprint}) is not the one its database was used with "
            f"({recorded_hash}): the archive mixes parts of two instances. Nothing was restored."
        )
    recorded_primary = summary.recorded_keys.get("primary")
    if recorded_primary is not None and recorded_primary not in archived_keys:
        raise BackupIncomplete(
            f"The archive lacks key seal-{recorded_primary}.key, the primary sealing key its database names; "
            "restore it from the backup it came from. Nothing was restored."
        )
