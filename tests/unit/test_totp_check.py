"""``totp.check_code``: ``match_code``, ``is_replay`` and ``find_clock_offset`` in one pass, with the same HMACs for
every code it refuses (issue 14: a wrong code must cost the same whoever's key it is checked against)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from nidan.core import totp as totp_module
from nidan.core.totp import (
    MAX_DRIFT_STEPS,
    PERIOD,
    SKEW_SEARCH_STEPS,
    CodeCheck,
    TotpMatch,
    check_code,
    find_clock_offset,
    hotp,
    is_replay,
    match_code,
)
from tests.unit.totp_support import KEY, NOW, NOW_STEP, code_at

#: Every step within ±SKEW_SEARCH_STEPS of now, once.
EVERY_STEP = 2 * SKEW_SEARCH_STEPS + 1


def hmacs_of(monkeypatch: pytest.MonkeyPatch, key: bytes = KEY, **kwargs: Any) -> tuple[CodeCheck, int]:
    """``check_code(key, ..., NOW)``'s answer and how many HOTP values it computed."""
    count = 0
    real = totp_module.hotp

    def counting(key: bytes, counter: int, **options: Any) -> str:
        nonlocal count
        count += 1
        return real(key, counter, **options)

    with monkeypatch.context() as patched:
        patched.setattr(totp_module, "hotp", counting)
        return check_code(key, unix_time=NOW, **kwargs), count


def expected(code: str, drift: int, last_used_step: int | None) -> CodeCheck:
    """What the three separate functions answer, as ``factors.check_totp`` combined them before."""
    found = match_code(KEY, code, NOW, drift=drift, last_used_step=last_used_step)
    if found is not None:
        return CodeCheck(found)
    replayed = is_replay(KEY, code, NOW, drift=drift, last_used_step=last_used_step)
    return CodeCheck(None, replayed, None if replayed else find_clock_offset(KEY, code, NOW))


@pytest.mark.parametrize("drift", range(-MAX_DRIFT_STEPS, MAX_DRIFT_STEPS + 1))
def test_it_answers_what_match_code_is_replay_and_find_clock_offset_answer(drift: int) -> None:
    offsets = range(-SKEW_SEARCH_STEPS - 2, SKEW_SEARCH_STEPS + 3)
    last_used = (None, NOW_STEP - 10, NOW_STEP - 1, NOW_STEP, NOW_STEP + 2, NOW_STEP + MAX_DRIFT_STEPS + 1)
    for offset, last_used_step in itertools.product(offsets, last_used):
        code = code_at(offset)
        assert check_code(KEY, code, NOW, drift=drift, last_used_step=last_used_step) == expected(
            code, drift, last_used_step
        ), (offset, last_used_step)


def test_the_answers_cover_each_kind_of_code() -> None:
    assert check_code(KEY, code_at(1), NOW) == CodeCheck(TotpMatch(step=NOW_STEP + 1, drift=1))
    assert check_code(KEY, code_at(0), NOW, last_used_step=NOW_STEP) == CodeCheck(None, replayed=True)
    assert check_code(KEY, code_at(-5), NOW) == CodeCheck(None, clock_offset_seconds=-5 * PERIOD)
    far = code_at(SKEW_SEARCH_STEPS + 1)
    assert check_code(KEY, far, NOW) == CodeCheck(None)
    assert check_code(KEY, "12345", NOW) == CodeCheck(None)


@pytest.mark.parametrize("drift", [0, 2, -MAX_DRIFT_STEPS, MAX_DRIFT_STEPS])
@pytest.mark.parametrize("last_used_step", [None, NOW_STEP - 100, NOW_STEP])
@pytest.mark.parametrize("offset", [0, -1, 3, -7, SKEW_SEARCH_STEPS, SKEW_SEARCH_STEPS + 5])
def test_every_refused_code_costs_every_step_once(
    monkeypatch: pytest.MonkeyPatch, drift: int, last_used_step: int | None, offset: int
) -> None:
    """Whatever the drift, the last used step, and whether the code was replayed, matches far off or nowhere."""
    answer, hmacs = hmacs_of(monkeypatch, code=code_at(offset), drift=drift, last_used_step=last_used_step)
    if answer.match is None:
        assert hmacs == EVERY_STEP
    else:  # accepted: only the window is computed (the owner of the code learns nothing from its time)
        assert hmacs == 2 * totp_module.WINDOW + 1 + abs(drift)


def test_another_key_costs_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    other = bytes(20)
    near = range(NOW_STEP - SKEW_SEARCH_STEPS - 1, NOW_STEP + SKEW_SEARCH_STEPS + 2)
    taken = {hotp(key, step) for key in (KEY, other) for step in near}
    wrong = next(c for c in (f"{n:06d}" for n in range(10**6)) if c not in taken)
    used_before = hmacs_of(monkeypatch, code=wrong, drift=-2, last_used_step=NOW_STEP - 1)
    never_used = hmacs_of(monkeypatch, key=other, code=wrong, drift=0, last_used_step=None)
    assert used_before == never_used == (CodeCheck(None), EVERY_STEP)


def test_a_code_that_cannot_be_one_costs_nothing_whoever_it_is_for(monkeypatch: pytest.MonkeyPatch) -> None:
    assert hmacs_of(monkeypatch, code="12 34", drift=3, last_used_step=NOW_STEP) == (CodeCheck(None), 0)
