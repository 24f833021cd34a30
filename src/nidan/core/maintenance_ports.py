"""What the maintenance commands need from the outside world (backup, restore, keys, diagnosis), as Protocols;
``nidan.db.admin`` and ``nidan.adapters`` implement them. The use cases' ports are in ``core/ports.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from nidan.core.backup import DumpSummary
from nidan.core.keys import KeyInventory
from nidan.core.models import ClockSync
from nidan.core.sealing import KeyRing


class DatabaseAdmin(Protocol):
    """Whole-database work for backup, restore and diagnosis, beside the use cases' units of work."""

    #: ``sqlite`` or ``postgresql``.
    backend: str

    def describe(self) -> str:
        """Where the database is, for people (a password never shows)."""
        ...

    def exists(self) -> bool:
        """``False`` when an SQLite file does not exist yet (looking does not create it); else ``True``."""
        ...

    def ping(self) -> None:
        """Connect and run a trivial query; raises ``ConfigurationError`` saying why it cannot."""
        ...

    def revision(self) -> str | None:
        """The schema revision the database is at (``None``: no nidan tables yet)."""
        ...

    def head_revision(self) -> str: ...
    def knows_revision(self, revision: str) -> bool: ...
    def pending_migrations(self) -> list[str]: ...

    def has_data(self) -> bool:
        """Whether the database holds anything beyond what an empty migrated database holds."""
        ...

    def sealed_counts(self) -> Mapping[str, int]:
        """Sealed secrets per key fingerprint (empty without tables)."""
        ...

    def recorded_keys(self) -> Mapping[str, str]:
        """The key fingerprints the database is used with, by purpose (``hash``, ``primary``)."""
        ...

    def record_keys(self, fingerprints: Mapping[str, str], at: datetime) -> Mapping[str, str]:
        """Record the fingerprints of purposes not recorded yet (atomically: the first process wins); return what
        the database then holds."""
        ...

    def replace_recorded_key(self, purpose: str, fingerprint: str, at: datetime) -> None: ...

    def server_time(self) -> datetime | None:
        """The database server's clock, when it has its own (PostgreSQL); ``None`` for SQLite."""
        ...

    def dump(self, out: BinaryIO, *, after_table: Callable[[str], None] | None = None) -> DumpSummary:
        """Write the portable dump of every table from one consistent snapshot; ``after_table`` is a test hook."""
        ...

    def restore(self, lines: Iterable[bytes], *, replace: bool) -> DumpSummary:
        """Load a dump: schema to the dump's revision, then every row in one transaction (refusing a database
        with data unless ``replace``), then migrations up to the newest revision."""
        ...


class KeyDirectory(Protocol):
    """The key files (``nidan.core.keys``); keys never enter the database."""

    location: str

    def inventory(self) -> KeyInventory: ...

    def load_ring(self) -> KeyRing:
        """The active and retired sealing keys, ``primary`` sealing; raises when a file is missing or damaged."""
        ...

    def export(self, sealing: Iterable[str]) -> Mapping[str, bytes]:
        """Key-file contents by file name: ``primary``, ``hash.key``, every active sealing key, and the retired
        ones among ``sealing``."""
        ...

    def check_install(self, files: Mapping[str, bytes]) -> None:
        """Raise if ``install`` would have to overwrite a sealing key with a different one or cannot write."""
        ...

    def install(self, files: Mapping[str, bytes]) -> list[str]:
        """Write key files (by file name). A sealing key with the same name is never overwritten; a different
        ``primary`` or ``hash.key`` is moved aside first. Returns a note per file moved aside."""
        ...

    def add_sealing_key(self) -> str:
        """A new sealing key's file; its fingerprint."""
        ...

    def set_primary(self, fingerprint: str) -> None: ...

    def retire(self, fingerprint: str) -> None:
        """Move ``seal-<fp>.key`` into ``retired/``."""
        ...

    def replace_hash_key(self) -> None:
        """A new ``hash.key``; the old one (if any) is moved into ``retired/``."""
        ...

    def rotation_lock(self) -> AbstractContextManager[None]:
        """Held while a rotation changes the directory; raises ``KeyRotationConflict`` if another holds it."""
        ...


class ArchiveWriter(Protocol):
    def member(self, name: str) -> AbstractContextManager[BinaryIO]:
        """A new member to stream into."""
        ...

    def add(self, name: str, content: bytes) -> None: ...

    def digests(self) -> Mapping[str, str]:
        """SHA-256 (hex) of every member written so far."""
        ...


class ArchiveReader(Protocol):
    def digests(self) -> Mapping[str, str]:
        """SHA-256 (hex) of every member."""
        ...

    def read(self, name: str) -> bytes: ...

    def lines(self, name: str) -> AbstractContextManager[Iterable[bytes]]: ...


class BackupArchives(Protocol):
    def create(self, destination: Path) -> AbstractContextManager[ArchiveWriter]:
        """An archive that appears at ``destination`` (whole, mode 0600) only when the block ends without error."""
        ...

    def open(self, source: Path) -> AbstractContextManager[ArchiveReader]:
        """An archive's members, unpacked privately and checked for unsafe names; removed afterwards."""
        ...


class ClockSyncProbe(Protocol):
    def __call__(self) -> ClockSync:
        """Whether the operating system says its clock is synchronised (NTP), and who said so."""
        ...
