"""``nidan user forget-devices``, ``nidan org policy --remember-device-days`` and ``policy.remember_device_days``,
driven in process on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import Result

from nidan.bootstrap import Runtime
from nidan.config import Settings
from nidan.core.audit import EventType
from tests.helpers import make_user
from tests.integration.backup_support import assert_refused, cli_for
from tests.integration.devices_support import admit, events, remembered, remembering

Invoke = Callable[..., Result]


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    monkeypatch.setenv("NIDAN_POLICY_REMEMBER_DEVICE_DAYS", "30")
    return cli_for(settings, tmp_path)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_forget_devices_forgets_every_remembered_browser_with_the_reason(nidan: Invoke, runtime: Runtime) -> None:
    ctx = remembering(runtime, 30).services
    ctx.clock.set(datetime.now(UTC))  # type: ignore[attr-defined]  # the command line runs on the system clock
    alice = make_user(ctx)
    tokens = [remembered(ctx, alice).token, remembered(ctx, alice).token]
    out = ok(nidan("user", "forget-devices", "ALICE", "--reason", "lost laptop, ticket 12"))
    assert out.strip() == "Forgot 2 remembered browsers of alice: each asks for the second step again."
    assert all(admit(ctx, alice.id, token) is None for token in tokens)
    (event,) = events(ctx, EventType.REMEMBERED_DEVICES_FORGOTTEN)
    assert event.actor_user_id is None and event.subject_username == "alice"
    assert event.details == {"count": 2, "reason": "lost laptop, ticket 12"}
    assert event.user_agent is not None and "command line" in event.user_agent
    again = ok(nidan("user", "forget-devices", "alice", "--reason", "once more"))
    assert again.strip() == "Forgot 0 remembered browsers of alice: each asks for the second step again."


def test_forget_devices_needs_a_reason_and_a_user(nidan: Invoke, runtime: Runtime) -> None:
    make_user(runtime.services)
    assert nidan("user", "forget-devices", "alice").exit_code == 2  # --reason is required
    assert_refused(nidan("user", "forget-devices", "alice", "--reason", "x"), "invalid_request")
    assert_refused(nidan("user", "forget-devices", "nobody", "--reason", "lost laptop"), "user_not_found")
    assert events(runtime.services, EventType.REMEMBERED_DEVICES_FORGOTTEN) == []


def test_org_policy_sets_and_shows_the_days(nidan: Invoke) -> None:
    shown = ok(nidan("org", "policy", "default"))
    assert "Remembering:     a browser may skip the second step for 30 days (the instance's setting)" in shown
    changed = ok(nidan("org", "policy", "default", "--remember-device-days", "7"))
    assert "Remembering:     a browser may skip the second step for 7 days" in changed
    assert "(the instance's setting)" not in changed.split("Remembering:")[1]
    off = ok(nidan("org", "policy", "default", "--remember-device-days", "0"))
    assert "Remembering:     off: the second step at every sign-in" in off
    # Another change keeps it; --instance-remember-days gives it back to the instance.
    assert "off: the second step at every sign-in" in ok(nidan("org", "policy", "default", "--grace-days", "3"))
    back = ok(nidan("org", "policy", "default", "--instance-remember-days"))
    assert "for 30 days (the instance's setting)" in back
    assert "for 30 days (the instance's setting)" in ok(nidan("org", "show", "default"))


def test_org_policy_refuses_days_out_of_bounds(nidan: Invoke) -> None:
    assert nidan("org", "policy", "default", "--remember-device-days", "91").exit_code == 2
    both = nidan("org", "policy", "default", "--remember-device-days", "3", "--instance-remember-days")
    assert both.exit_code == 2 and "not both" in " ".join(both.stderr.replace("│", " ").split())


def test_an_instance_setting_out_of_bounds_stops_nidan(nidan: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIDAN_POLICY_REMEMBER_DEVICE_DAYS", "91")
    refused = assert_refused(nidan("org", "show", "default"), "configuration_error", exit_code=2)
    assert "policy.remember_device_days (NIDAN_POLICY_REMEMBER_DEVICE_DAYS)" in refused
