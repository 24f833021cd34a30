"""``nidan user events``: a user's security log on the server, for the person helping them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from nidan.bootstrap import Runtime
from nidan.config import Settings
from nidan.core.models import ClientInfo
from nidan.errors import InvalidCredentials
from nidan.services import signin, throttling
from tests.helpers import make_user
from tests.integration.backup_support import assert_refused, cli_for

Invoke = Callable[..., Result]
CLIENT = ClientInfo(ip="192.0.2.7")


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    return cli_for(settings, tmp_path)


def test_the_log_lists_the_users_events_newest_first(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    make_user(ctx, "bob")
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="alice", password="not it", client=CLIENT)
    throttling.clear(ctx, username="alice", actor=None, client=CLIENT, reason="ticket 12")

    table = nidan("user", "events", "ALICE")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "(UTC)", "EVENT", "BY", "ADDRESS", "DETAILS"]
    kinds = [line.split()[3] for line in lines[1:]]
    assert kinds == ["backoff.cleared", "sign_in.password_failed", "user.created"]  # bob's are not here
    assert "reason=ticket 12" in lines[1] and "192.0.2.7" in lines[2]

    as_json = nidan("user", "events", "alice", "--limit", "1", "--json")
    assert as_json.exit_code == 0, as_json.output
    (only,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert only["event_type"] == "backoff.cleared" and only["subject_username"] == "alice"  # as `audit export`


def test_an_unknown_user_is_refused_by_name(nidan: Invoke, runtime: Runtime) -> None:
    assert_refused(nidan("user", "events", "nobody"), "user_not_found")
