"""Remembered browsers ("don't ask for the second step again here"): their records and their rotating tokens.

A remembered browser holds a token of 256 random bits; only its keyed hash is stored. Each use rotates it: the
answer carries the next token and the one used stops working. A rotated token that comes back was copied (the
browser itself moved on to the next one), so the whole device is revoked. The expiry is fixed when the browser is
remembered and never extended by use: a lost laptop stays a risk for at most the policy's days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

#: Tells a device token apart from the other kinds at a glance (logs, a pasted secret) and by ``looks_like_token``.
DEVICE_TOKEN_PREFIX = "nidan_d_"  # noqa: S105 (a prefix, not a secret)
#: Separates the device tokens' keyed hashes from every other kind's (``ServiceContext.hash_token``).
DEVICE_TOKEN_PURPOSE = "remembered_device"  # noqa: S105


@dataclass(frozen=True, slots=True)
class RememberedDeviceRecord:
    """A remembered browser as stored (never its token)."""

    id: int
    user_id: int
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    revoked_at: datetime | None
    first_ip: str | None
    last_ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class PresentedToken:
    """A device token found by its hash, whatever its state: the device it belongs to, and when it was rotated
    (``None``: it is the device's current token)."""

    device: RememberedDeviceRecord
    rotated_at: datetime | None


def usable_until(device: RememberedDeviceRecord, policy_days: int) -> datetime:
    """When the device stops being admitted: its own expiry, or earlier when the user's policy is now shorter than
    it was (0: at once). A policy made stricter applies to browsers remembered before."""
    return min(device.expires_at, device.created_at + timedelta(days=policy_days))


def is_usable(device: RememberedDeviceRecord, policy_days: int, now: datetime) -> bool:
    return device.revoked_at is None and policy_days > 0 and now < usable_until(device, policy_days)
