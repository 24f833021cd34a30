"""A use case written as password steps, driven from the event loop: the same answers as in the caller's thread."""

from __future__ import annotations

import asyncio

import pytest

from nidan.core.passwords import PasswordHashing
from nidan.web.hashing import awaiting_hashes
from tests.passwords_support import steps_of_a_login


@pytest.mark.parametrize("in_thread", [False, True], ids=["steps on the loop", "steps on a request thread"])
def test_the_event_loop_awaits_the_same_answers(either: PasswordHashing, in_thread: bool) -> None:
    stored = either.hash("correct horse battery staple")
    login = steps_of_a_login(stored, "correct horse battery staple")
    rehashed = asyncio.run(awaiting_hashes(either, login, in_thread=in_thread))
    assert either.verify(rehashed, "correct horse battery staple")
    with pytest.raises(ValueError, match="wrong password"):
        asyncio.run(awaiting_hashes(either, steps_of_a_login(stored, "wrong"), in_thread=in_thread))
