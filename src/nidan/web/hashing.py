"""Awaiting the hashing threads from the event loop, for use cases written as ``PasswordSteps``."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from fastapi.concurrency import run_in_threadpool

from nidan.core.passwords import PasswordHashing, PasswordSteps, PasswordWork, Pause

T = TypeVar("T")


async def awaiting_hashes(hashing: PasswordHashing, steps: PasswordSteps[T], *, in_thread: bool = False) -> T:
    """Drive ``steps`` from the event loop, each password's argon2id on the hashing threads while the loop serves
    others: no request thread waits for a hash. The database work between the hashes runs right here (embedded
    SQLite: microseconds), or with ``in_thread`` on a request thread, a stretch at a time (a database server's
    round trips), the thread given back while the hash is computed."""
    finished, value = await _advance(steps, None, in_thread)
    while not finished:
        work: PasswordWork | Pause = value
        answer: bool | str
        if isinstance(work, Pause):  # others' attempts are settling: the loop serves the rest meanwhile
            await asyncio.sleep(work.seconds)
            answer = True
        else:
            answer = await asyncio.wrap_future(hashing.submit(work))
        finished, value = await _advance(steps, answer, in_thread)
    result: T = value
    return result


async def _advance(steps: PasswordSteps[Any], answer: bool | str | None, in_thread: bool) -> tuple[bool, Any]:
    return await run_in_threadpool(_step, steps, answer) if in_thread else _step(steps, answer)


def _step(steps: PasswordSteps[Any], answer: bool | str | None) -> tuple[bool, Any]:
    """(done, the next work or the result): a generator's StopIteration cannot cross a thread's future."""
    try:
        return False, steps.send(answer)  # type: ignore[arg-type]  # None starts it, as next() would
    except StopIteration as done:
        return True, done.value
