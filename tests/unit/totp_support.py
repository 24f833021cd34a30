"""A fixed key and time, and the codes around it, for the TOTP tests."""

from __future__ import annotations

from nidan.core.totp import (
    PERIOD,
    hotp,
)

KEY = bytes.fromhex("8c0f3b2a6d1e4f5a7b9c0d1e2f3a4b5c6d7e8f90")


#: 10 s into a step, so ±few seconds of jitter never crosses a step boundary by accident.
NOW_STEP = 56_666_667


NOW = NOW_STEP * PERIOD + 10


def code_at(offset_steps: int) -> str:
    """The code a device shows whose clock is ``offset_steps`` steps ahead of the server's."""
    return hotp(KEY, NOW_STEP + offset_steps)
