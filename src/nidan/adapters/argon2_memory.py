"""argon2id password checks in memory each hashing thread keeps, instead of a fresh ``malloc`` per check.

libargon2 allocates its memory cost (7 MiB by default) for every hash and frees it after. With one malloc arena
for the process (``bootstrap.share_one_malloc_arena``), two hashing threads that allocate and free their buffers
in turn between the request threads' small allocations leave holes in the heap that later ones do not fit: a
worker's resident memory grew by about 28 MiB for 18 MiB of buffers in use (9 MiB each, the cost then). Giving
libargon2 (through the allocation callbacks of its ``argon2_ctx``) one buffer per hashing thread, allocated at the
thread's first check and kept, holds exactly one buffer per thread, and costs no page faults (returning the memory
to the system after each hash made a check about 15 % slower). libargon2 wipes the buffer after each hash, as it
wipes freed memory.

Only threads that ask for it (the hashing threads' initializer, ``keep_in_this_thread``) keep a buffer: any other
thread checks through argon2-cffi's usual path, so no request or command-line thread holds 7 MiB for good.
"""

from __future__ import annotations

import base64
import hmac
import threading
from typing import Any

from _argon2_cffi_bindings import ffi, lib
from argon2 import Type
from argon2.low_level import ARGON2_VERSION

#: libargon2's ARGON2_MEMORY_ALLOCATION_ERROR: what the allocation callback answers when it raises.
_ALLOCATION_ERROR = -22
_PREFIX = "$argon2id$"


class Argon2Memory:
    """The buffers of the threads that keep one, and the check that uses them."""

    def __init__(self) -> None:
        self._local = threading.local()
        #: How many buffers were allocated (one per keeping thread, grown if a larger cost is met).
        self.allocations = 0
        self._allocate = ffi.callback("int(uint8_t **, size_t)", self._give_buffer, error=_ALLOCATION_ERROR)
        self._free = ffi.callback("void(uint8_t *, size_t)", _keep)

    def keep_in_this_thread(self) -> None:
        """Called first in a hashing thread: its checks use (and keep) a buffer of its own."""
        self._local.keeps = True
        self._local.buffer = None

    def kept_here(self) -> bool:
        return bool(getattr(self._local, "keeps", False))

    def _give_buffer(self, memory: Any, size: int) -> int:
        buffer = self._local.buffer
        if buffer is None or len(buffer) < size:
            buffer = self._local.buffer = ffi.new("uint8_t[]", size)
            self.allocations += 1
        memory[0] = buffer
        return int(lib.ARGON2_OK)

    def verify(self, stored_hash: str, password: str) -> bool | None:
        """Whether ``password`` matches ``stored_hash`` (an argon2id hash string), in this thread's buffer; ``None``
        when the string is not one this parses (the caller checks it the usual way)."""
        parsed = _parse(stored_hash)
        if parsed is None:
            return None
        memory_kib, time_cost, lanes, salt, digest = parsed
        secret = password.encode("utf-8")
        out = ffi.new("uint8_t[]", len(digest))
        salt_buffer = ffi.new("uint8_t[]", salt)
        secret_buffer = ffi.new("uint8_t[]", secret)
        context = ffi.new(
            "argon2_context *",
            {
                "out": out,
                "outlen": len(digest),
                "pwd": secret_buffer,
                "pwdlen": len(secret),
                "salt": salt_buffer,
                "saltlen": len(salt),
                "secret": ffi.NULL,
                "secretlen": 0,
                "ad": ffi.NULL,
                "adlen": 0,
                "t_cost": time_cost,
                "m_cost": memory_kib,
                "lanes": lanes,
                "threads": lanes,
                "version": ARGON2_VERSION,
                "allocate_cbk": self._allocate,
                "free_cbk": self._free,
                "flags": lib.ARGON2_DEFAULT_FLAGS,
            },
        )
        if lib.argon2_ctx(context, Type.ID.value) != lib.ARGON2_OK:
            return False  # parameters libargon2 refuses: nothing can match them
        return hmac.compare_digest(bytes(ffi.buffer(out, len(digest))), digest)


def _keep(memory: Any, size: int) -> None:
    """The free callback: the buffer stays with its thread for the next check (libargon2 wiped it)."""


def _parse(stored_hash: str) -> tuple[int, int, int, bytes, bytes] | None:
    """``$argon2id$v=19$m=M,t=T,p=P$salt$digest`` -> (M, T, P, salt, digest); ``None`` for anything else."""
    if not stored_hash.startswith(_PREFIX):
        return None
    parts = stored_hash[len(_PREFIX) :].split("$")
    if len(parts) != 4 or parts[0] != f"v={ARGON2_VERSION}":
        return None
    try:
        costs = dict(item.split("=", 1) for item in parts[1].split(","))
        memory_kib, time_cost, lanes = int(costs["m"]), int(costs["t"]), int(costs["p"])
        salt, digest = _unpadded_b64(parts[2]), _unpadded_b64(parts[3])
    except (ValueError, KeyError):
        return None
    if set(costs) != {"m", "t", "p"} or min(memory_kib, time_cost, lanes) < 1 or not salt or not digest:
        return None
    return memory_kib, time_cost, lanes, salt, digest


def _unpadded_b64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
