"""``nidan user disable`` and ``nidan user enable`` (issue 16), driven in process on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import Result

from nidan.bootstrap import Runtime
from nidan.config import Settings
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole
from nidan.errors import AccountDisabled, InvalidCredentials
from nidan.services import accounts, audit, signin
from tests.helpers import PASSWORD, make_user
from tests.integration.backup_support import assert_refused, cli_for

Invoke = Callable[..., Result]
CLIENT = ClientInfo(ip="192.0.2.8")


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    return cli_for(settings, tmp_path)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def test_disable_then_enable_from_the_command_line(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    ctx.clock.set(datetime.now(UTC))  # type: ignore[attr-defined]  # the command line runs on the system clock
    make_user(ctx)
    signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    out = ok(nidan("user", "disable", "ALICE", "--reason", "left the company, ticket 16"))
    assert out.strip() == ("Disabled alice: 1 session(s) ended, 0 token(s) revoked, 0 remembered browser(s) forgotten.")
    assert ok(nidan("user", "disable", "alice", "--reason", "again")).strip() == (
        "alice was disabled already: nothing changed."
    )
    with pytest.raises(AccountDisabled):
        signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="alice", password="wrong password", client=CLIENT)
    assert ok(nidan("user", "enable", "alice", "--reason", "came back")).strip() == "alice can sign in again."
    assert isinstance(signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT), signin.Authenticated)
    logged = [r.event for r in audit.all_events(ctx, username="alice")]
    kinds = [e.event_type for e in logged]
    assert EventType.USER_DISABLED in kinds and EventType.USER_ENABLED in kinds
    disabled = next(e for e in logged if e.event_type == EventType.USER_DISABLED)
    assert disabled.actor_username is None and disabled.details["reason"] == "left the company, ticket 16"


def test_the_command_line_refuses_the_last_administrator_and_a_missing_reason(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    assert_refused(nidan("user", "disable", "root", "--reason", "ticket 16"), "last_administrator")
    assert accounts.find_user(ctx, "root").disabled_at is None
    assert_refused(nidan("user", "disable", "root", "--reason", "x"), "invalid_request")
    assert_refused(nidan("user", "disable", "nobody", "--reason", "ticket 16"), "user_not_found")
