"""Password work driven in the caller's own thread, for callers without an event loop (the CLI, request threads).

``core.passwords`` describes a password's work as steps (``VerifyPassword``, ``HashPassword``, and ``Pause`` while
others' attempts settle); a face with an event loop awaits each (``web.hashing``), this waits for it. Here rather
than in ``core``, which never waits or sleeps.
"""

from __future__ import annotations

import time
from typing import TypeVar

from nidan.core.passwords import PasswordHashing, PasswordSteps, Pause

T = TypeVar("T")


def run_now(hashing: PasswordHashing, steps: PasswordSteps[T]) -> T:
    """Drive ``steps`` in this thread: each password's work is done (waiting for a hashing thread) and answered."""
    try:
        work = next(steps)
        while True:
            if isinstance(work, Pause):
                time.sleep(work.seconds)
                work = steps.send(True)
            else:
                work = steps.send(hashing.do(work))
    except StopIteration as done:
        result: T = done.value
        return result
