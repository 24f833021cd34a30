"""Password checks in a buffer each hashing thread keeps: the same answers as argon2-cffi's own check, one buffer
per thread that asked for it, and argon2-cffi's usual path everywhere else."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from argon2 import PasswordHasher, Type

from nidan.adapters.argon2_memory import Argon2Memory
from nidan.adapters.password_hashing import ThreadedPasswordHashing
from nidan.core.passwords import PasswordHashing, unmatchable_hash
from nidan.core.recovery import HashParameters

FAST = HashParameters(memory_cost_kib=1024, time_cost=1)
PASSWORD = "correct horse battery staple"


def in_a_keeping_thread(memory: Argon2Memory, stored: str, password: str) -> bool | None:
    answers: list[bool | None] = []

    def check() -> None:
        memory.keep_in_this_thread()
        answers.append(memory.verify(stored, password))

    thread = threading.Thread(target=check)
    thread.start()
    thread.join()
    return answers[0]


@pytest.mark.parametrize(
    ("memory_kib", "time_cost", "lanes"), [(1024, 1, 1), (2048, 2, 2), (9216, 4, 1)], ids=["fast", "2 lanes", "default"]
)
def test_answers_are_argon2_cffis(memory_kib: int, time_cost: int, lanes: int) -> None:
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=lanes, type=Type.ID)
    stored = hasher.hash(PASSWORD)
    memory = Argon2Memory()
    assert in_a_keeping_thread(memory, stored, PASSWORD) is True
    assert in_a_keeping_thread(memory, stored, PASSWORD[:-1]) is False
    assert in_a_keeping_thread(memory, stored, "") is False
    assert (
        in_a_keeping_thread(memory, unmatchable_hash(HashParameters(time_cost, memory_kib, lanes)), PASSWORD) is False
    )


@pytest.mark.parametrize(
    "stored",
    [
        "not a hash",
        "$argon2i$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",  # another variant: argon2-cffi checks it
        "$argon2id$v=16$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",  # another version
        "$argon2id$v=19$m=1024,t=1$c2FsdHNhbHRzYWx0$aGFzaA",
        "$argon2id$v=19$m=1024,t=1,p=1,x=2$c2FsdHNhbHRzYWx0$aGFzaA",
        "$argon2id$v=19$m=0,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
        "$argon2id$v=19$m=1024,t=1,p=1$!!!$aGFzaA",
        "$argon2id$v=19$m=1024,t=1,p=1$$aGFzaA",
    ],
)
def test_strings_it_does_not_parse_are_left_to_argon2_cffi(stored: str) -> None:
    assert in_a_keeping_thread(Argon2Memory(), stored, PASSWORD) is None


def test_a_hashing_thread_allocates_its_buffer_once() -> None:
    memory = Argon2Memory()
    hashing = PasswordHashing(FAST)
    stored = hashing.hash(PASSWORD)
    with ThreadPoolExecutor(2, initializer=memory.keep_in_this_thread) as threads:
        answers = list(threads.map(lambda i: memory.verify(stored, PASSWORD if i % 2 else "wrong"), range(40)))
    assert answers == [i % 2 == 1 for i in range(40)]
    assert 1 <= memory.allocations <= 2  # one per thread that checked, whatever the count of checks


def test_password_hashing_checks_in_kept_buffers_only_on_threads_that_keep_one() -> None:
    memory = Argon2Memory()
    with ThreadPoolExecutor(2, "argon2-test", initializer=memory.keep_in_this_thread) as hashers:
        hashing = ThreadedPasswordHashing(FAST, hashers=hashers, memory=memory)
        stored = hashing.hash(PASSWORD)
        assert hashing.verify(stored, PASSWORD) is True
        assert hashing.verify(stored, "wrong") is False
        assert hashing.verify(None, PASSWORD) is False  # unknown user: the unmatchable hash
        assert hashing.verify(stored, "\ud800") is False  # no UTF-8 can hold it
        assert memory.allocations >= 1
    # Without hashing threads the caller's thread checks, and keeps nothing.
    here = ThreadedPasswordHashing(FAST, memory=memory)
    before = memory.allocations
    assert here.verify(stored, PASSWORD) is True
    assert memory.allocations == before
    assert not memory.kept_here()
