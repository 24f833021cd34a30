"""``nidan user delete`` (issue 16), driven in process on SQLite and PostgreSQL: it asks before it deletes (``--yes``
for scripts), what it deletes stops working, the audit chain stays intact, and the last administrator stays."""

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
from nidan.errors import AuthenticationRequired, InvalidCredentials, UserNotFound
from nidan.services import accounts, audit, signin, tokens
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


def test_delete_asks_first_and_then_everything_of_the_account_is_gone(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    ctx.clock.set(datetime.now(UTC))  # type: ignore[attr-defined]  # the command line runs on the system clock
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    alice = make_user(ctx)
    session = signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    assert isinstance(session, signin.Authenticated)
    tokens.create(
        ctx,
        alice,
        kind=tokens.TokenKind.PERSONAL,
        name="ci",
        scopes=["read_repository"],
        expires_on=None,
        client=CLIENT,
    )

    declined = nidan("user", "delete", "alice", "--reason", "left the company", input="n\n")
    assert declined.exit_code == 1 and "Nothing was deleted." in declined.stdout
    assert "Delete alice <alice@example.com> and everything it holds?" in declined.stdout
    assert accounts.find_user(ctx, "alice").id == alice.id
    assert_refused(nidan("user", "delete", "alice", "--reason", "x", "--yes"), "invalid_request")
    assert_refused(nidan("user", "delete", "nobody", "--reason", "ticket 16", "--yes"), "user_not_found")

    out = ok(nidan("user", "delete", "ALICE", "--reason", "left the company, ticket 16", input="y\n"))
    assert out.strip().endswith(
        "Deleted alice: 1 session(s) ended, 1 token(s) revoked, 0 remembered browser(s) forgotten, 1 membership(s) "
        "removed. The audit log keeps its events."
    )
    with pytest.raises(UserNotFound):
        accounts.find_user(ctx, "alice")
    with pytest.raises(AuthenticationRequired):
        signin.current_session(ctx, session.session_token)
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    deleted = audit.all_events(ctx, event_type=EventType.USER_DELETED)[0].event
    assert deleted.actor_username is None and deleted.subject_username == "alice"
    assert deleted.details["reason"] == "left the company, ticket 16"
    assert "command line" in (deleted.user_agent or "")
    assert audit.verify(ctx).problem is None
    assert "chain intact" in ok(nidan("audit", "verify"))


def test_the_last_administrator_cannot_be_deleted_even_with_yes(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    assert_refused(nidan("user", "delete", "root", "--reason", "ticket 16", "--yes"), "last_administrator")
    assert accounts.find_user(ctx, "root").username == "root"
    make_user(ctx, "ada", role=InstanceRole.ADMIN)
    assert "Deleted root:" in ok(nidan("user", "delete", "root", "--reason", "ticket 16", "-y"))
    assert [u.username for u in accounts.list_users(ctx)] == ["ada"]
