"""Remembered browsers' pure parts: how many days a user's policy allows, when a device stops being admitted, and a
User-Agent in words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nidan.core import user_agents
from nidan.core.devices import RememberedDeviceRecord, is_usable, usable_until
from nidan.core.models import Method
from nidan.core.policy import MAX_REMEMBER_DEVICE_DAYS, TwoFactorPolicy, checked_policy, remember_days_in_force
from nidan.errors import InvalidInput

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
DAY = timedelta(days=1)


# --- the policy ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("organisations", "instance", "days"),
    [
        ([], 0, 0),
        ([], 30, 30),  # in no organisation: the instance's
        ([None], 30, 30),  # an organisation without a setting: the instance's
        ([None, 60], 30, 30),
        ([7, 60, None], 30, 7),  # the strictest wins
        ([0, 60], 30, 0),  # one organisation turning it off turns it off
        ([60], 0, 60),  # an organisation may allow it when the instance does not
        ([14, 14], 90, 14),
    ],
)
def test_the_strictest_organisation_wins_unset_is_the_instances(
    organisations: list[int | None], instance: int, days: int
) -> None:
    assert remember_days_in_force(organisations, instance) == days


def test_a_stored_value_out_of_bounds_is_never_laxer_than_the_bounds() -> None:
    assert remember_days_in_force([MAX_REMEMBER_DEVICE_DAYS + 500], 0) == MAX_REMEMBER_DEVICE_DAYS
    assert remember_days_in_force([-3], 30) == 0


@pytest.mark.parametrize("days", [-1, MAX_REMEMBER_DEVICE_DAYS + 1, 365])
def test_an_organisation_remembers_for_0_to_90_days(days: int) -> None:
    with pytest.raises(InvalidInput, match="0 to 90 days"):
        checked_policy(TwoFactorPolicy.OPTIONAL, 0, list(Method), None, instance_tolerated=1, remember_device_days=days)


@pytest.mark.parametrize("days", [None, 0, 1, MAX_REMEMBER_DEVICE_DAYS])
def test_the_bounds_and_unset_are_accepted(days: int | None) -> None:
    policy = checked_policy(
        TwoFactorPolicy.OPTIONAL, 0, list(Method), None, instance_tolerated=1, remember_device_days=days
    )
    assert policy.remember_device_days == days


# --- a device's life -------------------------------------------------------------------------------------------


def device(created: datetime = NOW, days: int = 30, revoked: datetime | None = None) -> RememberedDeviceRecord:
    return RememberedDeviceRecord(1, 1, created, None, created + days * DAY, revoked, None, None, None)


def test_a_device_is_admitted_until_its_fixed_expiry() -> None:
    remembered = device()
    assert usable_until(remembered, 30) == NOW + 30 * DAY
    assert is_usable(remembered, 30, NOW + 30 * DAY - timedelta(seconds=1))
    assert not is_usable(remembered, 30, NOW + 30 * DAY)
    assert usable_until(remembered, 90) == NOW + 30 * DAY  # a longer policy later does not extend it


def test_a_shorter_policy_or_none_at_all_applies_to_devices_remembered_before() -> None:
    remembered = device()
    assert usable_until(remembered, 7) == NOW + 7 * DAY
    assert not is_usable(remembered, 7, NOW + 8 * DAY)
    assert not is_usable(remembered, 0, NOW)


def test_a_revoked_device_is_never_admitted() -> None:
    assert not is_usable(device(revoked=NOW), 30, NOW + DAY)


# --- a User-Agent in words -------------------------------------------------------------------------------------

AGENTS = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36": "Chrome on Windows",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36 Edg/126.0.2592.68": "Edge on Windows",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15": "Safari on macOS",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0": "Firefox on macOS",
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0": "Firefox on Linux",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 "
    "Safari/537.36 OPR/111.0.0.0": "Opera on Linux",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1": "Safari on iOS",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1": "Chrome on iOS",
    "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/127.0 "
    "Mobile/15E148 Safari/605.1.15": "Firefox on iOS",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 "
    "Mobile Safari/537.36": "Chrome on Android",
    "Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 "
    "Chrome/121.0.0.0 Mobile Safari/537.36": "Samsung Internet on Android",
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36": "Chrome on ChromeOS",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
    "Safari/537.36 Vivaldi/6.8": "Vivaldi on Windows",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Safari/537.36": "Unknown browser on Linux",
    "curl/8.8.0": "Unknown browser",
    "python-httpx/0.27.0": "Unknown browser",
    "Mozilla/5.0 (compatible; Firefox/128.0)": "Firefox",
    "": "Unknown browser",
}


@pytest.mark.parametrize(("agent", "words"), list(AGENTS.items()))
def test_a_user_agent_in_words(agent: str, words: str) -> None:
    assert user_agents.describe(agent) == words


def test_no_user_agent_or_a_huge_one_is_still_words() -> None:
    assert user_agents.describe(None) == "Unknown browser"
    assert user_agents.describe("Windows " + "x" * 100_000 + " Firefox/1") == "Unknown browser on Windows"
