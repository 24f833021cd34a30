"""Key files on disk: the sealing keys (``seal-<fingerprint>.key``) and the token-hashing key (``hash.key``).

Keys never enter the database; the database only names them by fingerprint. Files are created with mode 0600 and
``O_EXCL``, so two processes starting at once cannot each write a different key; ``primary`` and ``hash.key`` are
replaced by writing a new file and renaming it over the old one, so a reader sees the old or the new, never half.
A sealing key is never overwritten: its name is its fingerprint, so another key under that name is damage.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nidan.core.keys import (
    HASH_KEY_FILE,
    PRIMARY_FILE,
    RETIRED_DIR,
    SEAL_PREFIX,
    SEAL_SUFFIX,
    KeyInventory,
    fingerprint_of_file,
    seal_file,
)
from nidan.core.sealing import KEY_BYTES, KeyRing, decode_key_file, encode_key_file, fingerprint
from nidan.errors import ConfigurationError, KeyMissing, KeyRotationConflict

__all__ = ["HASH_KEY_FILE", "PRIMARY_FILE", "KeyFileDirectory", "Keys", "create_keys_if_missing", "load_keys"]

LOCK_FILE = ".rotation.lock"
FINGERPRINT_LENGTH = 16


@dataclass(frozen=True)
class Keys:
    ring: KeyRing
    hash_key: bytes


def _write_new(path: Path, content: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _write_replacing(path: Path, content: bytes) -> None:
    """Write ``content`` to a private temporary file beside ``path``, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    _write_new(temporary, content)
    os.replace(temporary, path)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key(path: Path) -> bytes:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"The key file {path} cannot be read: {exc.strerror or exc}.") from exc
    key = decode_key_file(content)
    if key is None:
        raise ConfigurationError(f"The key file {path} is damaged: it does not hold a {KEY_BYTES}-byte key.")
    return key


def _new_sealing_key(keys_dir: Path) -> str:
    key = os.urandom(KEY_BYTES)
    name = fingerprint(key)
    _write_new(keys_dir / seal_file(name), encode_key_file(key))
    return name


def create_keys_if_missing(keys_dir: Path) -> None:
    """First start of an empty instance: a sealing key, its name in ``primary``, and a hashing key.

    Existing files are kept. The caller makes sure the database holds no data: a new key then guards nothing yet.
    """
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_new(keys_dir / HASH_KEY_FILE, encode_key_file(os.urandom(KEY_BYTES)))
    if not (keys_dir / PRIMARY_FILE).exists() and not list(keys_dir.glob(f"{SEAL_PREFIX}*{SEAL_SUFFIX}")):
        name = _new_sealing_key(keys_dir)
        _write_new(keys_dir / PRIMARY_FILE, name.encode() + b"\n")


def _sealing_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            name = fingerprint_of_file(path.name)
            if name is not None and path.is_file():
                found[name] = path
    return found


def load_keys(keys_dir: Path) -> Keys:
    """The sealing keys (active and retired), ``primary`` and ``hash.key``; a missing or damaged file raises."""
    if not keys_dir.is_dir():
        raise ConfigurationError(f"The key directory {keys_dir} does not exist.")
    sealing = {name: _read_key(path) for name, path in _sealing_files(keys_dir / RETIRED_DIR).items()}
    sealing.update({name: _read_key(path) for name, path in _sealing_files(keys_dir).items()})
    primary_path = keys_dir / PRIMARY_FILE
    try:
        primary = primary_path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ConfigurationError(f"{primary_path} is missing: it names the key that seals new secrets.") from exc
    if primary not in sealing:
        raise KeyMissing(primary, keys_dir=str(keys_dir))
    hash_path = keys_dir / HASH_KEY_FILE
    if not hash_path.exists():
        raise ConfigurationError(f"{hash_path} is missing: it keys the hashes of session and sign-in tokens.")
    ring = KeyRing(sealing, primary, loader=lambda name: find_sealing_key(keys_dir, name))
    return Keys(ring=ring, hash_key=_read_key(hash_path))


def find_sealing_key(keys_dir: Path, name: str) -> bytes | None:
    """The key ``seal-<name>.key`` holds, in the key directory or ``retired/``; ``None`` if absent or damaged.

    A running process asks for a key it does not hold when a rotation re-sealed a secret under a key that was
    written after the process started (the ring checks the key really has that fingerprint)."""
    if len(name) != FINGERPRINT_LENGTH or name.strip("0123456789abcdef"):
        return None  # not a fingerprint: never a path
    for path in (keys_dir / seal_file(name), keys_dir / RETIRED_DIR / seal_file(name)):
        try:
            key = decode_key_file(path.read_bytes())
        except OSError:
            continue
        if key is not None:
            return key
    return None


class KeyFileDirectory:
    """The ``KeyDirectory`` port over a directory of key files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    # -- reading ---------------------------------------------------------------------------------------------

    def inventory(self) -> KeyInventory:
        directory = self.path
        if not directory.is_dir():
            return KeyInventory(location=self.location, exists=False)
        modes: dict[str, int] = {}
        damaged: list[str] = []
        found: dict[str, set[str]] = {"active": set(), "retired": set()}
        for where, folder in (("active", directory), ("retired", directory / RETIRED_DIR)):
            for name, path in _sealing_files(folder).items():
                relative = str(path.relative_to(directory))
                modes[relative] = stat.S_IMODE(path.stat().st_mode)
                key = self._decode(path)
                if key is None:
                    damaged.append(f"{relative}: it cannot be read or does not hold a {KEY_BYTES}-byte key")
                elif fingerprint(key) != name:
                    damaged.append(f"{relative}: it does not hold the key it is named after")
                else:
                    found[where].add(name)
        hash_path = directory / HASH_KEY_FILE
        hash_key: bytes | None = None
        if hash_path.is_file():
            modes[HASH_KEY_FILE] = stat.S_IMODE(hash_path.stat().st_mode)
            hash_key = self._decode(hash_path)
            if hash_key is None:
                damaged.append(f"{HASH_KEY_FILE}: it cannot be read or does not hold a {KEY_BYTES}-byte key")
        primary: str | None = None
        primary_path = directory / PRIMARY_FILE
        if primary_path.is_file():
            modes[PRIMARY_FILE] = stat.S_IMODE(primary_path.stat().st_mode)
            with contextlib.suppress(OSError, UnicodeDecodeError):
                primary = primary_path.read_text(encoding="ascii").strip() or None
        return KeyInventory(
            location=self.location,
            exists=True,
            directory_mode=stat.S_IMODE(directory.stat().st_mode),
            file_modes=modes,
            primary=primary,
            active=frozenset(found["active"]),
            retired=frozenset(found["retired"] - found["active"]),
            hash_key=hash_key is not None,
            hash_fingerprint=fingerprint(hash_key) if hash_key is not None else None,
            damaged=tuple(damaged),
        )

    @staticmethod
    def _decode(path: Path) -> bytes | None:
        try:
            return decode_key_file(path.read_bytes())
        except OSError:
            return None

    def load_ring(self) -> KeyRing:
        return load_keys(self.path).ring

    def export(self, sealing: Iterable[str]) -> Mapping[str, bytes]:
        files: dict[str, bytes] = {}
        wanted = set(sealing) | set(_sealing_files(self.path))
        for name in sorted(wanted):
            # A rotation may move a key into retired/ while we read: look in both places.
            for path in (self.path / seal_file(name), self.path / RETIRED_DIR / seal_file(name)):
                with contextlib.suppress(FileNotFoundError):
                    files[seal_file(name)] = path.read_bytes()
                    break
        for fixed in (PRIMARY_FILE, HASH_KEY_FILE):
            with contextlib.suppress(FileNotFoundError):
                files[fixed] = (self.path / fixed).read_bytes()
        return files

    # -- writing ---------------------------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigurationError(f"The key directory {self.path} cannot be created: {exc.strerror}.") from exc

    def check_install(self, files: Mapping[str, bytes]) -> None:
        for name, content in files.items():
            if name not in (PRIMARY_FILE, HASH_KEY_FILE) and fingerprint_of_file(name) is None:
                raise ConfigurationError(f"{name} is not a key file name.")
            target = self.path / name
            if (
                fingerprint_of_file(name) is not None
                and target.exists()
                and self._decode(target) != decode_key_file(content)
            ):
                raise ConfigurationError(
                    f"The key directory already holds {target} with a different key: that file is damaged (a "
                    "sealing key's name is its fingerprint). Move it away, then run the restore again."
                )
        probe_dir = self.path
        while not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent  # the nearest directory that exists: where mkdir would write
        if not os.access(probe_dir, os.W_OK | os.X_OK):
            raise ConfigurationError(f"The key directory {self.path} cannot be written: check its permissions.")

    def install(self, files: Mapping[str, bytes]) -> list[str]:
        self.check_install(files)
        self._ensure_directory()
        notes: list[str] = []
        aside: Path | None = None
        for name in sorted(files, key=lambda n: (n == PRIMARY_FILE, n)):  # primary last: its key is there first
            content = files[name]
            target = self.path / name
            if fingerprint_of_file(name) is not None:
                _write_new(target, content)
                continue
            if target.exists():
                if target.read_bytes().strip() == content.strip():
                    continue
                if aside is None:
                    aside = self.path / f"replaced-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
                    aside.mkdir(mode=0o700, exist_ok=True)
                os.replace(target, aside / name)
                notes.append(f"{target} held another key; it was moved to {aside / name}")
            _write_replacing(target, content)
        return notes

    def add_sealing_key(self) -> str:
        self._ensure_directory()
        return _new_sealing_key(self.path)

    def set_primary(self, fingerprint: str) -> None:
        if not (self.path / seal_file(fingerprint)).is_file():
            raise KeyMissing(fingerprint, keys_dir=self.location)
        _write_replacing(self.path / PRIMARY_FILE, fingerprint.encode() + b"\n")

    def retire(self, fingerprint: str) -> None:
        source = self.path / seal_file(fingerprint)
        retired = self.path / RETIRED_DIR
        retired.mkdir(mode=0o700, exist_ok=True)
        target = retired / seal_file(fingerprint)
        if target.exists() and self._decode(target) != self._decode(source):
            raise ConfigurationError(f"{target} holds a different key than {source}: it is damaged.")
        os.replace(source, target)
        _sync_directory(self.path)

    def replace_hash_key(self) -> None:
        self._ensure_directory()
        current = self.path / HASH_KEY_FILE
        if current.exists():
            retired = self.path / RETIRED_DIR
            retired.mkdir(mode=0o700, exist_ok=True)
            os.replace(current, retired / f"hash-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}.key")
        _write_replacing(current, encode_key_file(os.urandom(KEY_BYTES)))

    @contextlib.contextmanager
    def rotation_lock(self) -> Iterator[None]:
        self._ensure_directory()
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigurationError(f"The key directory {self.path} cannot be written: {exc.strerror}.") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise KeyRotationConflict(
                    f"Another `nidan keys` command is changing the key directory {self.path}; wait for it to end."
                ) from None
            yield
        finally:
            os.close(fd)
