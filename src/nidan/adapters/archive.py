"""Backup archives as ``.tar.gz`` files: written whole or not at all, read back only into a private directory.

Writing stages every member in a private directory beside the destination, packs them into a temporary file
(mode 0600) and renames it into place, so a crash or a full disk never leaves a half archive under the final name.
Reading unpacks only regular files with the names a backup has (no paths outside the archive, no links).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from nidan.core.backup import DUMP, KEYS_PREFIX, MANIFEST
from nidan.errors import BackupDamaged, InvalidInput

__all__ = ["TarArchiveReader", "TarArchiveWriter", "TarArchives"]

#: The names a backup's members may have.
MEMBER_NAME = re.compile(
    rf"^(?:{re.escape(MANIFEST)}|{re.escape(DUMP)}|{re.escape(KEYS_PREFIX)}(?:seal-[0-9a-f]{{16}}\.key|primary|hash\.key))$"
)
CHUNK = 1024 * 1024


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _private_file(path: Path) -> BinaryIO:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


class TarArchiveWriter:
    def __init__(self, staging: Path) -> None:
        self._staging = staging
        self._members: dict[str, Path] = {}
        self._digests: dict[str, str] = {}

    @contextlib.contextmanager
    def member(self, name: str) -> Iterator[BinaryIO]:
        if name in self._members:
            raise ValueError(f"{name} was already written")
        path = self._staging / str(len(self._members))
        with _private_file(path) as handle:
            yield handle
        self._members[name] = path
        self._digests[name] = _sha256_of(path)

    def add(self, name: str, content: bytes) -> None:
        with self.member(name) as handle:
            handle.write(content)

    def digests(self) -> Mapping[str, str]:
        return dict(self._digests)

    def pack(self, target: BinaryIO) -> None:
        now = int(time.time())
        with tarfile.open(fileobj=target, mode="w:gz") as tar:
            for name, path in self._members.items():
                info = tarfile.TarInfo(name)
                info.size = path.stat().st_size
                info.mode = 0o600
                info.mtime = now
                with path.open("rb") as handle:
                    tar.addfile(info, handle)


class TarArchiveReader:
    def __init__(self, members: Mapping[str, Path], digests: Mapping[str, str]) -> None:
        self._members = members
        self._digests = digests

    def digests(self) -> Mapping[str, str]:
        return dict(self._digests)

    def read(self, name: str) -> bytes:
        return self._members[name].read_bytes()

    @contextlib.contextmanager
    def lines(self, name: str) -> Iterator[Iterable[bytes]]:
        with self._members[name].open("rb") as handle:
            yield handle


def _unreadable(source: Path, why: object) -> BackupDamaged:
    return BackupDamaged(f"{source} is not a readable nidan backup (a .tar.gz archive): {why}. Nothing was restored.")


class TarArchives:
    """The ``BackupArchives`` port."""

    @contextlib.contextmanager
    def create(self, destination: Path) -> Iterator[TarArchiveWriter]:
        destination = destination.absolute()
        if destination.is_dir():
            raise InvalidInput(f"{destination} is a directory: name the archive file to write.")
        parent = destination.parent
        try:
            staging_dir = tempfile.TemporaryDirectory(dir=parent, prefix=".nidan-backup-")
        except OSError as exc:
            raise InvalidInput(f"Cannot write the backup into {parent}: {exc.strerror or exc}.") from None
        with staging_dir as staging:
            writer = TarArchiveWriter(Path(staging))
            yield writer
            temporary = Path(staging) / "archive.tar.gz"
            try:
                with _private_file(temporary) as packed:
                    writer.pack(packed)
                    packed.flush()
                    os.fsync(packed.fileno())
                os.replace(temporary, destination)
                directory = os.open(parent, os.O_RDONLY)
                try:
                    os.fsync(directory)
                finally:
                    os.close(directory)
            except OSError as exc:
                raise InvalidInput(f"Cannot write {destination}: {exc.strerror or exc}.") from None

    @contextlib.contextmanager
    def open(self, source: Path) -> Iterator[TarArchiveReader]:
        if not source.is_file():
            raise InvalidInput(f"{source} does not exist or is not a file.")
        with tempfile.TemporaryDirectory(prefix="nidan-restore-") as staging:
            members: dict[str, Path] = {}
            digests: dict[str, str] = {}
            try:
                with tarfile.open(source, mode="r:gz") as tar:
                    for info in tar:
                        name = info.name
                        if not MEMBER_NAME.match(name):
                            raise BackupDamaged(
                                f"The archive holds {name!r}, which is no part of a nidan backup: it is not one, "
                                "or it was altered. Nothing was restored."
                            )
                        if not info.isreg() or name in members:
                            raise BackupDamaged(f"The archive's member {name} is not a single regular file.")
                        extracted = tar.extractfile(info)
                        assert extracted is not None
                        path = Path(staging) / str(len(members))
                        digest = hashlib.sha256()
                        with extracted, _private_file(path) as out:
                            while chunk := extracted.read(CHUNK):
                                digest.update(chunk)
                                out.write(chunk)
                        members[name] = path
                        digests[name] = digest.hexdigest()
            except (tarfile.TarError, EOFError, zlib.error) as exc:
                raise _unreadable(source, exc) from None
            except OSError as exc:
                raise _unreadable(source, exc.strerror or exc) from None
            yield TarArchiveReader(members, digests)
