"""Awaiting the hashing threads from the event loop, for use cases written as ``PasswordSteps``."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from nidan.core.passwords import PasswordHashing, PasswordSteps

T = TypeVar("T")


async def awaiting_hashes(hashing: PasswordHashing, steps: PasswordSteps[T]) -> T:
    """Drive ``steps`` on the event loop: their database work runs right here (for embedded SQLite, where it
    takes microseconds), and each password's argon2id on the hashing threads while the loop serves others. No
    request thread waits for a hash, and none is handed the request on the way there and back."""
    try:
        work = next(steps)
        while True:
            work = steps.send(await asyncio.wrap_future(hashing.submit(work)))
    except StopIteration as done:
        result: T = done.value
        return result
