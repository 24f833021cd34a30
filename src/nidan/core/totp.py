"""HOTP (RFC 4226) and TOTP (RFC 6238): code generation and verification with a drift window.

Pure functions: time comes in as a Unix timestamp, state (last used step, learned drift) comes in and goes out as
values. Persisting the outcome atomically is the caller's job.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Literal

from nidan.core.codes import typed_code

Algorithm = Literal["sha1", "sha256", "sha512"]

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}

DIGITS = 6
PERIOD = 30
ALGORITHM: Algorithm = "sha1"
#: Steps accepted either side of the expected one (RFC 6238 §5.2 recommends at most one).
WINDOW = 1
#: The learned per-user offset never exceeds this many steps, so the accepted window stays small.
MAX_DRIFT_STEPS = 4
#: How far (in steps, either side) a wrong code is searched to diagnose a wrong device clock: 15 minutes.
SKEW_SEARCH_STEPS = 30


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, algorithm: Algorithm = ALGORITHM) -> str:
    """The RFC 4226 HOTP value of ``counter`` as a zero-padded decimal string."""
    if not 6 <= digits <= 10:
        raise ValueError("digits must be between 6 and 10")
    if counter < 0:
        raise ValueError("counter must not be negative")
    mac = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**digits).zfill(digits)


def time_step(unix_time: float, *, period: int = PERIOD, t0: int = 0) -> int:
    return int((unix_time - t0) // period)


def totp(
    key: bytes,
    unix_time: float,
    *,
    digits: int = DIGITS,
    period: int = PERIOD,
    algorithm: Algorithm = ALGORITHM,
    t0: int = 0,
) -> str:
    """The RFC 6238 TOTP value at ``unix_time``."""
    return hotp(key, time_step(unix_time, period=period, t0=t0), digits=digits, algorithm=algorithm)


def normalize_code(code: str) -> str | None:
    """The six ASCII digits of a typed code, read by ``typed_code`` (whitespace anywhere, as apps show ``123 456``;
    full-width digits and spaces from a Japanese IME); ``None`` when it cannot be a TOTP code."""
    compact = typed_code(code)
    if len(compact) != DIGITS or not compact.isascii() or not compact.isdigit():
        return None
    return compact


@dataclass(frozen=True, slots=True)
class TotpMatch:
    """A code matched ``step``; ``drift`` is the offset to remember for this device from now on."""

    step: int
    drift: int


def match_code(
    key: bytes, code: str, unix_time: float, *, drift: int = 0, last_used_step: int | None = None
) -> TotpMatch | None:
    """The step ``code`` matches: within ``WINDOW`` of now, or of now shifted by the device's learned ``drift``.

    Steps at or before ``last_used_step`` never match: a code, once used, and every older code are spent.
    Every candidate is compared in constant time, whatever matched first.
    """
    normalized = normalize_code(code)
    if normalized is None:
        return None
    now_step = time_step(unix_time)
    drift = max(-MAX_DRIFT_STEPS, min(MAX_DRIFT_STEPS, drift))
    # The current step ±WINDOW always counts; a learned drift widens that towards the device's own clock.
    first = now_step + min(0, drift) - WINDOW
    last = now_step + max(0, drift) + WINDOW
    found: int | None = None
    for step in range(first, last + 1):
        if step < 0:
            continue
        if hmac.compare_digest(hotp(key, step), normalized) and found is None:
            found = step
    if found is None or (last_used_step is not None and found <= last_used_step):
        return None
    learned = max(-MAX_DRIFT_STEPS, min(MAX_DRIFT_STEPS, found - now_step))
    return TotpMatch(step=found, drift=learned)


def find_clock_offset(key: bytes, code: str, unix_time: float) -> int | None:
    """Seconds by which the device clock that made ``code`` seems off, searched within ±15 minutes.

    Only for diagnosis after a code was rejected: the result never authenticates anyone.
    """
    normalized = normalize_code(code)
    if normalized is None:
        return None
    now_step = time_step(unix_time)
    for distance in range(WINDOW + 1, SKEW_SEARCH_STEPS + 1):
        for step in (now_step - distance, now_step + distance):
            if step >= 0 and hmac.compare_digest(hotp(key, step), normalized):
                return (step - now_step) * PERIOD
    return None


def is_replay(key: bytes, code: str, unix_time: float, *, drift: int, last_used_step: int | None) -> bool:
    """Whether ``code`` is valid for the window but its step was already spent (told apart for the audit trail)."""
    if last_used_step is None:
        return False
    return match_code(key, code, unix_time, drift=drift) is not None and not match_code(
        key, code, unix_time, drift=drift, last_used_step=last_used_step
    )


@dataclass(frozen=True, slots=True)
class CodeCheck:
    """``check_code``'s answer: the step to spend, or what kind of wrong."""

    match: TotpMatch | None
    #: Not accepted, but the code is one of the window's: its step (or a later one) is spent already.
    replayed: bool = False
    #: Not accepted and not replayed, but the code matches within ±``SKEW_SEARCH_STEPS``: how many seconds the
    #: device's clock seems off (``find_clock_offset``'s answer).
    clock_offset_seconds: int | None = None


def check_code(
    key: bytes, code: str, unix_time: float, *, drift: int = 0, last_used_step: int | None = None
) -> CodeCheck:
    """``match_code``, and for a code it does not accept, ``is_replay``'s and ``find_clock_offset``'s answers, with
    the same HMACs for EVERY code it does not accept: each step within ±``SKEW_SEARCH_STEPS`` of now once (61),
    whatever the key, the learned drift, the last used step or whether anything matched. So checking a wrong code
    against a stand-in key costs what it costs against a real one (the verify API must not tell who has an
    authenticator), and no step is computed twice. An accepted code costs the window's HMACs only."""
    normalized = normalize_code(code)
    if normalized is None:
        return CodeCheck(None)
    now_step = time_step(unix_time)
    drift = max(-MAX_DRIFT_STEPS, min(MAX_DRIFT_STEPS, drift))
    first = now_step + min(0, drift) - WINDOW
    last = now_step + max(0, drift) + WINDOW
    found: int | None = None
    for step in range(max(first, 0), last + 1):
        if hmac.compare_digest(hotp(key, step), normalized) and found is None:
            found = step
    if found is not None and (last_used_step is None or found > last_used_step):
        learned = max(-MAX_DRIFT_STEPS, min(MAX_DRIFT_STEPS, found - now_step))
        return CodeCheck(TotpMatch(step=found, drift=learned))
    # The rest of ±SKEW_SEARCH_STEPS (the window lies within it: |drift| + WINDOW < SKEW_SEARCH_STEPS), in
    # find_clock_offset's order: the nearest offset wins, the earlier side first. Window steps cannot match here
    # unless the code was replayed, and then no offset is reported.
    offset: int | None = None
    for distance in range(WINDOW + 1, SKEW_SEARCH_STEPS + 1):
        for step in (now_step - distance, now_step + distance):
            if step < 0 or first <= step <= last:
                continue
            if hmac.compare_digest(hotp(key, step), normalized) and offset is None:
                offset = (step - now_step) * PERIOD
    replayed = found is not None
    return CodeCheck(None, replayed=replayed, clock_offset_seconds=None if replayed else offset)
