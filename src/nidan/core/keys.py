"""What a key directory holds, as a plain value: which sealing keys, which is primary, the hashing key, modes.

The key directory (``keys/``) holds ``seal-<fingerprint>.key`` files, ``primary`` (the fingerprint of the key that
seals new secrets), ``hash.key``, and ``retired/`` (sealing keys a rotation replaced; nidan still loads them, so a
secret sealed by a process that had not yet restarted opens, but no new secret is sealed with them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

SEAL_PREFIX = "seal-"
SEAL_SUFFIX = ".key"
HASH_KEY_FILE = "hash.key"
PRIMARY_FILE = "primary"
RETIRED_DIR = "retired"
#: What ``instance_keys`` records, by purpose.
PURPOSE_HASH = "hash"
PURPOSE_PRIMARY = "primary"


def seal_file(fingerprint: str) -> str:
    return f"{SEAL_PREFIX}{fingerprint}{SEAL_SUFFIX}"


def fingerprint_of_file(name: str) -> str | None:
    """``seal-<fp>.key`` → ``fp``; ``None`` for any other name."""
    if name.startswith(SEAL_PREFIX) and name.endswith(SEAL_SUFFIX) and len(name) > len(SEAL_PREFIX + SEAL_SUFFIX):
        return name[len(SEAL_PREFIX) : -len(SEAL_SUFFIX)]
    return None


@dataclass(frozen=True, slots=True)
class KeyInventory:
    """A key directory as found; nothing in it is trusted yet (damaged files are listed, not raised)."""

    location: str
    exists: bool
    #: Permission bits of the directory, and of every key file by its name relative to the directory.
    directory_mode: int | None = None
    file_modes: Mapping[str, int] = field(default_factory=dict)
    #: What ``primary`` names (``None``: the file is missing or empty).
    primary: str | None = None
    #: Sealing keys in the directory and in ``retired/`` whose content matches their name.
    active: frozenset[str] = frozenset()
    retired: frozenset[str] = frozenset()
    hash_key: bool = False
    #: The fingerprint of the key in ``hash.key`` (``None``: missing or unreadable).
    hash_fingerprint: str | None = None
    #: Key files that cannot be used, with why (``seal-x.key: it does not hold the key it is named after``).
    damaged: tuple[str, ...] = ()

    @property
    def sealing(self) -> frozenset[str]:
        """Every sealing key a process loads: the active ones and the retired ones."""
        return self.active | self.retired
