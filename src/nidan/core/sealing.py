"""AES-256-GCM sealing of recoverable secrets (TOTP seeds) under a key ring.

Each sealed value is stored with the fingerprint of the key that sealed it, so a process that lacks that key says
which one (``KeyMissing``) instead of silently rejecting every code. The associated data binds a sealed value to
its owner and purpose, so a seed copied onto another user's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nidan.errors import ConfigurationError, KeyMissing
from nidan.texts import _

KEY_BYTES = 32
NONCE_BYTES = 12


def fingerprint(key: bytes) -> str:
    """A short public name for a key: the first 16 hex digits of SHA-256 over it."""
    return hashlib.sha256(b"nidan-key-fingerprint:" + key).hexdigest()[:16]


def encode_key_file(key: bytes) -> bytes:
    """A key file's content: the key in base64 and a newline."""
    return base64.b64encode(key) + b"\n"


def decode_key_file(content: bytes) -> bytes | None:
    """The key a key file holds, or ``None`` when the content is not a base64 ``KEY_BYTES``-byte key."""
    try:
        key = base64.b64decode(content.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) == KEY_BYTES else None


@dataclass(frozen=True, slots=True)
class Sealed:
    key_fingerprint: str
    blob: bytes


#: Finds a key the ring was not built with, by fingerprint (``None``: not there either).
KeyLoader = Callable[[str], bytes | None]


class KeyRing:
    """The sealing keys a process holds; ``primary`` seals, every key unseals what it sealed.

    With a ``loader``, a secret sealed under a key the ring does not hold yet (a rotation re-sealed it under a key
    written after this process started) makes the ring ask for that key once, and keep it if it is the one named.
    """

    def __init__(self, keys: Mapping[str, bytes], primary: str, *, loader: KeyLoader | None = None) -> None:
        for name, key in keys.items():
            if len(key) != KEY_BYTES or fingerprint(key) != name:
                # English on purpose (a plain str): a ring is built at start-up, for the operator at the terminal.
                raise ConfigurationError(f"The key file for {name} is damaged: it does not match its name.")
        if primary not in keys:
            raise KeyMissing(primary)
        self._keys = dict(keys)
        self._loader = loader
        self.primary = primary

    def _key(self, name: str) -> bytes:
        key = self._keys.get(name)
        if key is None and self._loader is not None:
            found = self._loader(name)
            if found is not None and len(found) == KEY_BYTES and fingerprint(found) == name:
                self._keys[name] = key = found
        if key is None:
            raise KeyMissing(name)
        return key

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(self._keys)

    def seal(self, plaintext: bytes, *, context: str, random_bytes: Callable[[int], bytes]) -> Sealed:
        nonce = random_bytes(NONCE_BYTES)
        blob = nonce + AESGCM(self._keys[self.primary]).encrypt(nonce, plaintext, context.encode())
        return Sealed(self.primary, blob)

    def unseal(self, sealed: Sealed, *, context: str) -> bytes:
        key = self._key(sealed.key_fingerprint)
        nonce, body = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
        try:
            return AESGCM(key).decrypt(nonce, body, context.encode())
        except InvalidTag as exc:
            raise ConfigurationError(
                _(
                    "A sealed secret failed its integrity check: the stored value was altered or moved to another "
                    "account. Restore it from a backup or reset this user's two-step verification."
                )
            ) from exc
