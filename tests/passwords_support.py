"""Cheap argon2 parameters and a use case written as password steps, for the tests of password hashing."""

from __future__ import annotations

from nidan.core.passwords import (
    HashPassword,
    PasswordSteps,
    VerifyPassword,
)
from nidan.core.recovery import HashParameters

#: Cheap argon2id parameters, for unit tests only.
FAST = HashParameters(memory_cost_kib=1024, time_cost=1)


#: The password the timing equaliser's hash was once made of: it must not open anything either.
DUMMY_PASSWORD = "nidan-timing-equaliser"


def steps_of_a_login(stored: str, typed: str) -> PasswordSteps[str]:
    matched = yield VerifyPassword(stored, typed)
    if not matched:
        raise ValueError("wrong password")
    rehashed = yield HashPassword(typed)
    assert isinstance(rehashed, str)
    return rehashed
