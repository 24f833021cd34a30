"""TOTP verification: window, input hygiene, replay rule, drift learning and clock diagnosis."""

from __future__ import annotations

import hmac
from collections.abc import Callable

import pytest

from nidan.core import totp as totp_module
from nidan.core.totp import (
    MAX_DRIFT_STEPS,
    PERIOD,
    WINDOW,
    TotpMatch,
    check_code,
    find_clock_offset,
    hotp,
    is_replay,
    match_code,
    normalize_code,
    time_step,
    totp,
)
from tests.unit.totp_support import KEY, NOW, NOW_STEP, code_at

_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
_ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


def test_fixture_codes_are_distinct() -> None:
    # Every refusal test below relies on no accidental collision between nearby steps.
    codes = [code_at(offset) for offset in range(-40, 41)]
    assert len(set(codes)) == len(codes)


# --- generation


def test_time_step_boundaries() -> None:
    assert time_step(0) == 0
    assert time_step(29.999) == 0
    assert time_step(30) == 1
    assert time_step(NOW) == NOW_STEP
    assert time_step(100, period=60, t0=40) == 1


def test_totp_defaults_to_six_digits_and_thirty_seconds() -> None:
    code = totp(KEY, NOW)
    assert len(code) == 6
    assert code.isdigit()
    assert code == hotp(KEY, NOW_STEP)
    assert totp(KEY, NOW_STEP * PERIOD) == code
    assert totp(KEY, NOW_STEP * PERIOD + 29) == code
    assert totp(KEY, NOW_STEP * PERIOD + 30) == hotp(KEY, NOW_STEP + 1)


def test_hotp_zero_pads() -> None:
    # Find a counter whose value has a leading zero; about one in ten does.
    counter = next(c for c in range(1000) if hotp(KEY, c).startswith("0"))
    assert len(hotp(KEY, counter)) == 6


@pytest.mark.parametrize("digits", [5, 11, 0, -6])
def test_hotp_rejects_unsupported_digit_counts(digits: int) -> None:
    with pytest.raises(ValueError, match="digits"):
        hotp(KEY, 1, digits=digits)


def test_hotp_rejects_negative_counter() -> None:
    with pytest.raises(ValueError, match="counter"):
        hotp(KEY, -1)


# --- window


def test_current_code_matches() -> None:
    assert match_code(KEY, code_at(0), NOW) == TotpMatch(step=NOW_STEP, drift=0)


@pytest.mark.parametrize("offset", [-WINDOW, WINDOW], ids=["previous-step", "next-step"])
def test_adjacent_steps_are_accepted(offset: int) -> None:
    assert WINDOW == 1
    assert match_code(KEY, code_at(offset), NOW) == TotpMatch(step=NOW_STEP + offset, drift=offset)


@pytest.mark.parametrize("offset", [-2, 2, -3, 3, -30, 30])
def test_steps_outside_the_window_are_refused(offset: int) -> None:
    assert match_code(KEY, code_at(offset), NOW) is None


def test_window_follows_the_clock_within_a_step() -> None:
    start = NOW_STEP * PERIOD
    for seconds in (0, 1, 15, 29):
        assert match_code(KEY, code_at(0), start + seconds) == TotpMatch(step=NOW_STEP, drift=0)
    # 61 s later the code is two steps old.
    assert match_code(KEY, code_at(0), start + 2 * PERIOD) is None


def test_codes_near_the_epoch_do_not_look_at_negative_steps() -> None:
    assert match_code(KEY, hotp(KEY, 0), 5) == TotpMatch(step=0, drift=0)
    assert match_code(KEY, hotp(KEY, 1), 5) == TotpMatch(step=1, drift=1)


def test_wrong_key_is_refused() -> None:
    other = bytes(20)
    assert match_code(other, code_at(0), NOW) is None


def test_every_candidate_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the module core looks it up on
    # The match is on the first candidate, yet all 2 * WINDOW + 1 are compared.
    assert match_code(KEY, code_at(-1), NOW) is not None
    assert len(calls) == 2 * WINDOW + 1


def test_the_earliest_matching_step_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # A code that happens to be valid for several steps of the window counts for the earliest one, so the
    # replay rule errs on the side of refusing.
    monkeypatch.setattr(totp_module, "hotp", lambda key, counter, **_: "123456")
    assert match_code(KEY, "123456", NOW) == TotpMatch(step=NOW_STEP - 1, drift=-1)
    assert match_code(KEY, "123456", NOW, last_used_step=NOW_STEP - 1) is None


# --- input hygiene


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda c: f"{c[:3]} {c[3:]}", id="space-in-middle"),
        pytest.param(lambda c: f" {c} ", id="surrounding-spaces"),
        pytest.param(lambda c: " ".join(c), id="space-between-every-digit"),
        pytest.param(lambda c: f"{c[:3]}\u00a0{c[3:]}", id="no-break-space"),
    ],
)
def test_spaces_are_allowed(typed: Callable[[str], str]) -> None:
    code = code_at(0)
    assert normalize_code(typed(code)) == code
    assert match_code(KEY, typed(code), NOW) == TotpMatch(step=NOW_STEP, drift=0)


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param(lambda c: c.translate(_FULLWIDTH), id="fullwidth-digits"),
        pytest.param(lambda c: f"{c[:3]}\u3000{c[3:]}".translate(_FULLWIDTH), id="fullwidth-ideographic-space"),
        pytest.param(lambda c: f"\u3000{c}\u3000", id="ideographic-spaces-around"),
        pytest.param(lambda c: c.translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")), id="superscript-digits"),
    ],
)
def test_full_width_digits_are_read_as_digits(typed: Callable[[str], str]) -> None:
    """As a Japanese IME in full-width mode types them: NFKC (``nidan.core.codes.typed_code``)."""
    code = code_at(0)
    assert normalize_code(typed(code)) == code
    assert match_code(KEY, typed(code), NOW) == TotpMatch(step=NOW_STEP, drift=0)
    assert check_code(KEY, typed(code), NOW).match == TotpMatch(step=NOW_STEP, drift=0)


def _bad_inputs() -> list[object]:
    code = code_at(0)
    return [
        pytest.param("", id="empty"),
        pytest.param("      ", id="only-spaces"),
        pytest.param(code[:-1], id="five-digits"),
        pytest.param(code + "0", id="seven-digits"),
        pytest.param("0" + code, id="seven-digits-leading-zero"),
        pytest.param(code[:5] + "a", id="letter"),
        pytest.param(code[:3] + "-" + code[3:], id="dash"),
        pytest.param("+" + code[1:], id="plus-sign"),
        pytest.param(code[:5] + ".", id="dot"),
        pytest.param(code.translate(_ARABIC_INDIC), id="arabic-indic-digits"),  # NFKC keeps them: not ASCII
        pytest.param(code[:5] + "\u0301" + code[5], id="combining-mark"),  # NFKC keeps it
        pytest.param("".join(d + "\u20e3" for d in code), id="keycap-digits"),  # 1⃣: a digit and a mark
        pytest.param(code[:3] + "\u30fc" + code[3:], id="prolonged-sound-mark"),  # a dash, which TOTP has not
        pytest.param("\ud800" * 6, id="lone-surrogates"),
        pytest.param("\x00" * 6, id="nul-bytes"),
    ]


@pytest.mark.parametrize("bad", _bad_inputs())
def test_malformed_codes_are_refused_without_exceptions(bad: str) -> None:
    assert normalize_code(bad) is None
    assert match_code(KEY, bad, NOW) is None
    assert match_code(KEY, bad, NOW, drift=2, last_used_step=NOW_STEP - 5) is None
    assert find_clock_offset(KEY, bad, NOW) is None
    assert is_replay(KEY, bad, NOW, drift=0, last_used_step=NOW_STEP) is False


# --- replay


def test_a_used_step_is_refused() -> None:
    first = match_code(KEY, code_at(0), NOW)
    assert first is not None
    assert match_code(KEY, code_at(0), NOW, last_used_step=first.step) is None
    # Still refused a few seconds later within the same step and after the step ended (now the previous step).
    assert match_code(KEY, code_at(0), NOW + 5, last_used_step=first.step) is None
    assert match_code(KEY, code_at(0), NOW + PERIOD, last_used_step=first.step) is None


def test_older_steps_than_the_used_one_are_refused() -> None:
    assert match_code(KEY, code_at(-1), NOW, last_used_step=NOW_STEP) is None
    assert match_code(KEY, code_at(0), NOW, last_used_step=NOW_STEP + 1) is None


def test_a_newer_step_is_accepted_after_use() -> None:
    assert match_code(KEY, code_at(1), NOW, last_used_step=NOW_STEP) == TotpMatch(step=NOW_STEP + 1, drift=1)
    assert match_code(KEY, code_at(0), NOW, last_used_step=NOW_STEP - 1) == TotpMatch(step=NOW_STEP, drift=0)


def test_login_sequence_over_time() -> None:
    last: int | None = None
    drift = 0
    for minutes in (0, 1, 5, 60):
        now = NOW + minutes * 60
        code = totp(KEY, now)
        result = match_code(KEY, code, now, drift=drift, last_used_step=last)
        assert result is not None, minutes
        assert match_code(KEY, code, now, drift=result.drift, last_used_step=result.step) is None
        last, drift = result.step, result.drift


def test_is_replay() -> None:
    assert is_replay(KEY, code_at(0), NOW, drift=0, last_used_step=NOW_STEP) is True
    assert is_replay(KEY, code_at(-1), NOW, drift=0, last_used_step=NOW_STEP) is True
    # Not spent yet, or never anything spent.
    assert is_replay(KEY, code_at(0), NOW, drift=0, last_used_step=NOW_STEP - 1) is False
    assert is_replay(KEY, code_at(0), NOW, drift=0, last_used_step=None) is False
    # Spent but outside the window: a plain wrong code, not a replay.
    assert is_replay(KEY, code_at(-5), NOW, drift=0, last_used_step=NOW_STEP) is False
    # A wrong code is never a replay.
    assert is_replay(bytes(20), code_at(0), NOW, drift=0, last_used_step=NOW_STEP) is False
    # The window used for the decision follows the remembered drift.
    assert is_replay(KEY, code_at(3), NOW, drift=3, last_used_step=NOW_STEP + 3) is True
    assert is_replay(KEY, code_at(3), NOW, drift=0, last_used_step=NOW_STEP + 3) is False


# --- drift


def test_drift_is_learned_from_an_adjacent_step() -> None:
    assert match_code(KEY, code_at(1), NOW) == TotpMatch(step=NOW_STEP + 1, drift=1)
    assert match_code(KEY, code_at(-1), NOW) == TotpMatch(step=NOW_STEP - 1, drift=-1)
    # Learned from where the code matched relative to now, not added to the drift passed in.
    assert match_code(KEY, code_at(2), NOW, drift=1) == TotpMatch(step=NOW_STEP + 2, drift=2)


@pytest.mark.parametrize("sign", [1, -1], ids=["fast-device", "slow-device"])
def test_drifted_device_is_accepted_once_drift_is_remembered(sign: int) -> None:
    offset = 3 * sign
    assert match_code(KEY, code_at(offset), NOW) is None
    result = match_code(KEY, code_at(offset), NOW, drift=offset)
    assert result == TotpMatch(step=NOW_STEP + offset, drift=offset)
    # The server's own step ±1 always counts: a device whose clock was corrected is not locked out.
    assert match_code(KEY, code_at(0), NOW, drift=offset) == TotpMatch(step=NOW_STEP, drift=0)


@pytest.mark.parametrize("sign", [1, -1], ids=["fast-device", "slow-device"])
def test_learned_drift_is_capped(sign: int) -> None:
    assert MAX_DRIFT_STEPS == 4
    edge = (MAX_DRIFT_STEPS + WINDOW) * sign
    result = match_code(KEY, code_at(edge), NOW, drift=MAX_DRIFT_STEPS * sign)
    assert result == TotpMatch(step=NOW_STEP + edge, drift=MAX_DRIFT_STEPS * sign)


@pytest.mark.parametrize("sign", [1, -1], ids=["fast-device", "slow-device"])
def test_drift_follows_a_wandering_clock_up_to_the_cap(sign: int) -> None:
    """A device clock that runs away one step per login is followed until the cap, then refused."""
    drift = 0
    last: int | None = None
    now = NOW
    for offset in range(1, MAX_DRIFT_STEPS + WINDOW + 1):
        now += 10 * PERIOD
        device_code = totp(KEY, now + offset * sign * PERIOD)
        result = match_code(KEY, device_code, now, drift=drift, last_used_step=last)
        assert result is not None, offset
        assert result.drift == sign * min(offset, MAX_DRIFT_STEPS)
        assert abs(result.drift) <= MAX_DRIFT_STEPS
        drift, last = result.drift, result.step
    now += 10 * PERIOD
    too_far = totp(KEY, now + (MAX_DRIFT_STEPS + WINDOW + 1) * sign * PERIOD)
    assert match_code(KEY, too_far, now, drift=drift, last_used_step=last) is None


def test_drift_relaxes_when_the_device_clock_is_corrected_gradually() -> None:
    result = match_code(KEY, code_at(2), NOW, drift=3)
    assert result == TotpMatch(step=NOW_STEP + 2, drift=2)


# --- clock diagnosis


@pytest.mark.parametrize(
    ("device_offset_seconds", "expected"),
    [
        pytest.param(7 * 60, 7 * 60, id="plus-7-min"),
        pytest.param(-12 * 60, -12 * 60, id="minus-12-min"),
        pytest.param(2 * PERIOD, 2 * PERIOD, id="plus-2-steps"),
        pytest.param(-2 * PERIOD, -2 * PERIOD, id="minus-2-steps"),
        pytest.param(15 * 60, 15 * 60, id="plus-15-min"),
        pytest.param(-15 * 60, -15 * 60, id="minus-15-min"),
        pytest.param(7 * 60 + 5, 7 * 60, id="plus-7-min-5-s"),
    ],
)
def test_find_clock_offset(device_offset_seconds: int, expected: int) -> None:
    code = totp(KEY, NOW + device_offset_seconds)
    assert match_code(KEY, code, NOW) is None
    assert find_clock_offset(KEY, code, NOW) == expected


@pytest.mark.parametrize("device_offset_seconds", [16 * 60, -16 * 60, 60 * 60, -24 * 3600])
def test_find_clock_offset_gives_up_beyond_15_minutes(device_offset_seconds: int) -> None:
    assert find_clock_offset(KEY, totp(KEY, NOW + device_offset_seconds), NOW) is None


def test_find_clock_offset_for_a_code_that_is_simply_wrong() -> None:
    known = {hotp(KEY, NOW_STEP + d) for d in range(-40, 41)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in known)
    assert find_clock_offset(KEY, wrong, NOW) is None
    assert find_clock_offset(bytes(20), code_at(7), NOW) is None


def test_find_clock_offset_accepts_spaced_input() -> None:
    code = code_at(-10)
    assert find_clock_offset(KEY, f"{code[:3]} {code[3:]}", NOW) == -10 * PERIOD
