"""``nidan app add/list/remove`` and ``nidan user revoke-tokens``, driven in process on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from nidan.bootstrap import Runtime
from nidan.config import Settings
from nidan.core.access_tokens import TokenKind
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo
from nidan.errors import AppKeyInvalid
from nidan.services import applications, audit, tokens
from tests.helpers import make_user
from tests.integration.backup_support import assert_refused, cli_for

Invoke = Callable[..., Result]
KEY = re.compile(r"^nidan_key_[A-Za-z0-9_-]{43}$")
CLIENT = ClientInfo()


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    return cli_for(settings, tmp_path)


def test_app_add_prints_the_key_once_on_stdout(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    result = nidan("app", "add", "Wiki")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == 'Application "Wiki" added. Its API key, shown only this once:'
    assert len(lines) == 2 and KEY.match(lines[1]), result.stdout
    # The hint goes to stderr, so `KEY=$(nidan app add wiki | tail -1)` gets just the key.
    assert "Authorization: Bearer" in result.stderr and lines[1] not in result.stderr
    assert applications.authenticate(ctx, lines[1]).name == "Wiki"

    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.APPLICATION_ADDED)]
    assert event.actor_user_id is None and dict(event.details) == {"app": "Wiki"}
    assert event.user_agent is not None and "command line" in event.user_agent


def test_app_add_refuses_a_taken_or_bad_name(nidan: Invoke, runtime: Runtime) -> None:
    assert nidan("app", "add", "wiki").exit_code == 0
    assert_refused(nidan("app", "add", "WIKI"), "application_exists")
    assert_refused(nidan("app", "add", "not valid!"), "invalid_request")
    assert [a.name for a in applications.list_all(runtime.services)] == ["wiki"]


def test_app_list_shows_applications_without_keys(nidan: Invoke, runtime: Runtime) -> None:
    empty = nidan("app", "list")
    assert empty.exit_code == 0, empty.output
    assert "No applications are registered" in empty.stdout and "nidan app add" in empty.stdout
    key = applications.add(runtime.services, name="grafana", actor=make_user(runtime.services, "root"), client=CLIENT)
    added = nidan("app", "add", "wiki").stdout.splitlines()[1]
    listing = nidan("app", "list")
    assert listing.exit_code == 0, listing.output
    header, grafana, wiki = listing.stdout.splitlines()
    assert header.split() == ["NAME", "ADDED", "BY", "LAST", "USED"]
    assert grafana.split()[0] == "grafana" and "root" in grafana and grafana.endswith("never")
    assert wiki.split()[0] == "wiki" and "command line" in wiki and wiki.endswith("never")
    assert key.api_key not in listing.output and added not in listing.output


def test_app_remove_stops_the_key(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    key = nidan("app", "add", "wiki").stdout.splitlines()[1]
    result = nidan("app", "remove", "WIKI")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == 'Application "wiki" removed; its API key no longer works.'
    with pytest.raises(AppKeyInvalid):
        applications.authenticate(ctx, key)
    assert_refused(nidan("app", "remove", "wiki"), "application_not_found")
    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.APPLICATION_REMOVED)]
    assert event.actor_user_id is None and dict(event.details) == {"app": "wiki"}


def test_user_revoke_tokens(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    bob = make_user(ctx, "bob")
    for kind, user in ((TokenKind.PERSONAL, alice), (TokenKind.APP_PASSWORD, alice), (TokenKind.PERSONAL, bob)):
        tokens.create(ctx, user, kind=kind, name="x", scopes=["api"], expires_on=None, client=CLIENT)

    result = nidan("user", "revoke-tokens", "ALICE", "--reason", "laptop stolen")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Revoked 2 access tokens and app passwords of alice."
    assert tokens.list_tokens(ctx, alice) == []
    assert len(tokens.list_tokens(ctx, bob)) == 1

    one = nidan("user", "revoke-tokens", "bob")
    assert one.exit_code == 0 and "Revoked 1 access token " in one.stdout
    none = nidan("user", "revoke-tokens", "alice")
    assert none.exit_code == 0 and "Revoked 0 access tokens" in none.stdout

    first, _, _ = reversed(audit.all_events(ctx, event_type=EventType.TOKENS_REVOKED_ALL))
    assert first.event.actor_user_id is None and first.event.subject_username == "alice"
    assert dict(first.event.details) == {"tokens": 2, "reason": "laptop stolen"}
    assert_refused(nidan("user", "revoke-tokens", "nobody"), "user_not_found")
