"""Password hashing on hashing threads of their own, each checking in the argon2 buffer it keeps.

``nidan.core.passwords.PasswordHashing`` computes in the caller's thread; this subclass hands the work to an
executor and checks in ``Argon2Memory``'s kept buffers. Both are process infrastructure (threads, the C heap), so
they live here and the composition root wires them in; the answers are the core's.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TypeVar

from nidan.adapters.argon2_memory import Argon2Memory
from nidan.core.passwords import PasswordHashing
from nidan.core.recovery import HashParameters

T = TypeVar("T")


class ThreadedPasswordHashing(PasswordHashing):
    def __init__(
        self, params: HashParameters, *, hashers: Executor | None = None, memory: Argon2Memory | None = None
    ) -> None:
        """``hashers``: where the hashes are computed, e.g. a thread pool with one thread per core (the callers
        wait their turn). The C library keeps each thread's freed argon2 buffer for its next hash, so with every
        request thread hashing, a worker that had served 16 sign-ins at once held 16 of them (440 MiB at 19 MiB
        each); more at once would only share the cores anyway. Without one, the caller's thread computes it.
        ``memory``: the buffers the hashing threads keep (their initializer is ``memory.keep_in_this_thread``), so
        that checking a password allocates nothing (see ``nidan.adapters.argon2_memory``)."""
        super().__init__(params)
        self._hashers = hashers
        self._memory = memory

    def _run(self, call: Callable[[], T]) -> T:
        return self._hashers.submit(call).result() if self._hashers is not None else call()

    def _start(self, call: Callable[[], bool | str]) -> Future[bool | str]:
        return self._hashers.submit(call) if self._hashers is not None else super()._start(call)

    def _check(self, stored_hash: str, password: str) -> bool:
        # Only a thread that keeps a buffer checks in it; any other (and a string it does not parse) goes the usual way.
        if self._memory is not None and self._memory.kept_here():
            kept = self._memory.verify(stored_hash, password)
            if kept is not None:
                return kept
        return super()._check(stored_hash, password)
