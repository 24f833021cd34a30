"""Single-use recovery codes: generation, normalisation and hashing.

Codes look like ``7kq2m-x9c4t``: ten characters of Crockford's base32 (50 bits), typed in any case, with or
without the dash; the look-alikes ``o``, ``i`` and ``l`` are read as ``0``, ``1`` and ``1``. Full-width letters
and digits, and any dash a keyboard or an IME gives (``ー``, ``－``, ``―``, ``‐``), are read as typed codes are
everywhere (``nidan.core.codes.typed_code``).

NIST SP 800-63B asks look-up secrets under 112 bits to be stored salted and hashed with a password-hashing
scheme. A set shares one salt, so an attempt costs one argon2id computation whose digest is compared (in constant
time) with every stored digest of the set, instead of sixteen computations.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw

from nidan.core.codes import typed_code

ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_LOOKALIKES = str.maketrans({"o": "0", "i": "1", "l": "1"})
CODES_PER_SET = 16
CODE_LENGTH = 10
SALT_BYTES = 16


@dataclass(frozen=True, slots=True)
class HashParameters:
    """argon2id cost; the defaults are one of OWASP's equal settings (7 MiB, 5 passes, 1 lane)."""

    time_cost: int = 5
    memory_cost_kib: int = 7 * 1024
    parallelism: int = 1
    digest_bytes: int = 32


def encode_parameters(params: HashParameters) -> str:
    """The cost a set was hashed with, stored beside it so changing the settings never breaks issued codes."""
    return f"argon2id$m={params.memory_cost_kib},t={params.time_cost},p={params.parallelism},l={params.digest_bytes}"


def decode_parameters(text: str) -> HashParameters:
    scheme, _, rest = text.partition("$")
    values = dict(part.split("=", 1) for part in rest.split(","))
    if scheme != "argon2id" or set(values) != {"m", "t", "p", "l"}:
        raise ValueError(f"unknown recovery-code hash parameters: {text!r}")
    return HashParameters(
        memory_cost_kib=int(values["m"]),
        time_cost=int(values["t"]),
        parallelism=int(values["p"]),
        digest_bytes=int(values["l"]),
    )


def generate_codes(random_bytes: Callable[[int], bytes], count: int = CODES_PER_SET) -> list[str]:
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        raw = random_bytes(CODE_LENGTH)
        # 256 is a multiple of 32, so taking each byte modulo 32 is unbiased.
        chars = "".join(ALPHABET[b % len(ALPHABET)] for b in raw)
        if chars not in seen:
            seen.add(chars)
            codes.append(f"{chars[:5]}-{chars[5:]}")
    return codes


def normalize(code: str) -> str | None:
    """The canonical ten characters of a typed code, or ``None`` when it cannot be a recovery code."""
    compact = typed_code(code).replace("-", "")
    if not compact.isascii():
        return None
    compact = compact.lower().translate(_LOOKALIKES)
    if len(compact) != CODE_LENGTH or any(c not in ALPHABET for c in compact):
        return None
    return compact


def digest(code: str, salt: bytes, params: HashParameters) -> bytes:
    """argon2id of the normalised code; ``code`` must already be normalised."""
    return hash_secret_raw(
        code.encode("ascii"),
        salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
        hash_len=params.digest_bytes,
        type=Type.ID,
    )


def find_position(candidate: bytes, stored: Sequence[tuple[int, bytes]]) -> int | None:
    """The position whose digest equals ``candidate``; every digest is compared, so timing says nothing."""
    found: int | None = None
    for position, stored_digest in stored:
        if hmac.compare_digest(candidate, stored_digest) and found is None:
            found = position
    return found
