"""Key files on disk: the sealing keys (``seal-<fingerprint>.key``) and the token-hashing key (``hash.key``).

Keys never enter the database; the database only names them by fingerprint. Files are created with mode 0600 and
``O_EXCL``, so two processes starting at once cannot each write a different key.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from nidan.core.sealing import KEY_BYTES, KeyRing, fingerprint
from nidan.errors import ConfigurationError

HASH_KEY_FILE = "hash.key"
PRIMARY_FILE = "primary"


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


def _read_key(path: Path) -> bytes:
    try:
        key = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"The key file {path} cannot be read: {exc}") from exc
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"The key file {path} is damaged: it does not hold a {KEY_BYTES}-byte key.")
    return key


def create_keys_if_missing(keys_dir: Path) -> None:
    """First start: a sealing key, its name in ``primary``, and a hashing key. Existing files are kept."""
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_new(keys_dir / HASH_KEY_FILE, base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
    if not (keys_dir / PRIMARY_FILE).exists() and not list(keys_dir.glob("seal-*.key")):
        key = os.urandom(KEY_BYTES)
        name = fingerprint(key)
        _write_new(keys_dir / f"seal-{name}.key", base64.b64encode(key) + b"\n")
        _write_new(keys_dir / PRIMARY_FILE, name.encode() + b"\n")


def load_keys(keys_dir: Path) -> Keys:
    if not keys_dir.is_dir():
        raise ConfigurationError(f"The key directory {keys_dir} does not exist.")
    sealing = {path.stem.removeprefix("seal-"): _read_key(path) for path in keys_dir.glob("seal-*.key")}
    primary_path = keys_dir / PRIMARY_FILE
    try:
        primary = primary_path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ConfigurationError(f"{primary_path} is missing: it names the key that seals new secrets.") from exc
    return Keys(ring=KeyRing(sealing, primary), hash_key=_read_key(keys_dir / HASH_KEY_FILE))
