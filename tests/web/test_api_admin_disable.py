"""Disabling and enabling an account over the admin API (issue 16): what each credential does afterwards (the
session, an access token at the gate, a remembered browser, the verify API), a wrong password on a disabled account,
who may, the last administrator, and the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, OrgRole
from nidan.errors import LastAdministrator
from nidan.services import account_status, accounts, applications, audit, organisations, tokens
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.helpers import PASSWORD, auth_header, basic_header, code_at, enable_totp, login, make_user
from tests.integration.devices_support import remembering
from tests.web.api_support import assert_error

CLIENT = ClientInfo()
REASON = {"reason": "left the company, ticket 16"}


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    return remembering(runtime, 30)


@pytest.fixture
def ctx(app_runtime: Runtime) -> ServiceContext:
    return app_runtime.services


@pytest.fixture
def client(app_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=app_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def admin(client: TestClient, ctx: ServiceContext, username: str = "root") -> dict[str, str]:
    make_user(ctx, username, role=InstanceRole.ADMIN)
    return auth_header(login(client, username)["session_token"])


def disable(client: TestClient, username: str, headers: dict[str, str], **body: Any) -> Any:
    return client.post(f"/api/v1/admin/users/{username}/disable", json=body or REASON, headers=headers)


def enable(client: TestClient, username: str, headers: dict[str, str]) -> Any:
    return client.post(f"/api/v1/admin/users/{username}/enable", json=REASON, headers=headers)


def test_disabling_ends_every_credential_at_once_and_refuses_them_while_disabled(
    client: TestClient, ctx: ServiceContext
) -> None:
    root = admin(client, ctx)
    alice = make_user(ctx)
    session = login(client)["session_token"]
    secret, _ = enable_totp(client, ctx, session)
    ctx.clock.advance(30)  # type: ignore[attr-defined]
    first = login(client)
    mfa = {"mfa_token": first["mfa_token"], "method": "totp", "code": code_at(secret, ctx), "remember_device": True}
    signed = client.post("/api/v1/auth/mfa", json=mfa).json()
    ctx.clock.advance(30)  # type: ignore[attr-defined]
    device_token = signed["device_token"]
    token = tokens.create(
        ctx,
        alice,
        kind=tokens.TokenKind.PERSONAL,
        name="ci",
        scopes=["read_repository"],
        expires_on=None,
        client=CLIENT,
    ).secret
    app = auth_header(applications.add(ctx, name="wiki", actor=None, client=CLIENT).api_key)
    assert client.get(
        "/auth/basic", params={"scope": "read_repository"}, headers=basic_header("alice", token)
    ).is_success

    answer = disable(client, "ALICE", root)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "username": "alice",
        "disabled": True,
        "already": False,
        "sessions_ended": 2,
        "tokens_revoked": 1,
        "devices_forgotten": 1,
    }
    # The session: 401 at once.
    assert_error(client.get("/api/v1/me", headers=auth_header(signed["session_token"])), 401, "authentication_required")
    # The access token at the gate: refused (the same answer as any refusal; the reason in the log).
    refused = client.get("/auth/basic", params={"scope": "read_repository"}, headers=basic_header("alice", token))
    assert refused.status_code == 401
    # Sign-in: a wrong password is the ordinary 401; the right one (with or without the remembered browser) is 403.
    assert_error(
        client.post("/api/v1/auth/login", json={"username": "alice", "password": "wrong pass"}),
        401,
        "invalid_credentials",
    )
    assert_error(
        client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}), 403, "account_disabled"
    )
    with_device = {"username": "alice", "password": PASSWORD, "device_token": device_token}
    assert_error(client.post("/api/v1/auth/login", json=with_device), 403, "account_disabled")
    # The verify API: a right code is answered ok: false with account_disabled; a wrong one stays invalid_code.
    said = client.post("/api/v1/verify", json={"username": "alice", "code": code_at(secret, ctx)}, headers=app).json()
    assert said["ok"] is False and said["error"]["code"] == "account_disabled"
    wrong = client.post("/api/v1/verify", json={"username": "alice", "code": "000000"}, headers=app).json()
    assert wrong["ok"] is False and wrong["error"]["code"] == "invalid_code"
    refused_codes = [e for e in audit.all_events(ctx, event_type=EventType.VERIFY_FAILED)]
    assert refused_codes[-1].event.details.get("reason") == "account_disabled"
    # A token made (or missed) while disabled is refused at the gate all the same, the reason in the log.
    late = tokens.create(
        ctx,
        alice,
        kind=tokens.TokenKind.PERSONAL,
        name="late",
        scopes=["read_repository"],
        expires_on=None,
        client=CLIENT,
    ).secret
    assert (
        client.get("/auth/basic", params={"scope": "read_repository"}, headers=basic_header("x", late)).status_code
        == 401
    )
    gate_refusal = audit.all_events(ctx, event_type=EventType.BASIC_AUTH_FAILED)[0].event
    assert gate_refusal.details["reason"] == "account_disabled"
    # Shown to the administrator.
    seen = client.get("/api/v1/admin/users/alice", headers=root).json()
    assert seen["disabled_at"] and seen["disabled_reason"] == "left the company, ticket 16"
    listed = {u["username"]: u["disabled"] for u in client.get("/api/v1/admin/users", headers=root).json()["users"]}
    assert listed == {"alice": True, "root": False}

    # Enabled again: the password signs in; the token stays revoked and the browser forgotten.
    ctx.clock.advance(30)  # type: ignore[attr-defined]
    assert enable(client, "alice", root).json() == {"username": "alice", "disabled": False}
    again = client.post("/api/v1/auth/login", json=with_device).json()
    assert again["status"] == "mfa_required"
    refused = client.get("/auth/basic", params={"scope": "read_repository"}, headers=basic_header("alice", token))
    assert refused.status_code == 401
    assert client.get("/api/v1/admin/users/alice", headers=root).json()["disabled_at"] is None


def test_disable_and_enable_are_audited_with_the_reason_and_repeating_changes_nothing(
    client: TestClient, ctx: ServiceContext
) -> None:
    root = admin(client, ctx)
    make_user(ctx)
    assert disable(client, "alice", root).status_code == 200
    again = disable(client, "alice", root)
    assert again.status_code == 200 and again.json()["already"] is True
    assert enable(client, "alice", root).status_code == 200
    assert enable(client, "alice", root).status_code == 200
    found = [r.event for r in reversed(audit.all_events(ctx))]
    disabled = [e for e in found if e.event_type == EventType.USER_DISABLED]
    enabled = [e for e in found if e.event_type == EventType.USER_ENABLED]
    assert len(disabled) == 1 and len(enabled) == 1
    assert disabled[0].details["reason"] == "left the company, ticket 16"
    assert disabled[0].actor_username == "root" and disabled[0].subject_username == "alice"
    assert enabled[0].details == {"reason": "left the company, ticket 16"}
    assert audit.verify(ctx).problem is None


def test_a_reason_step_up_and_another_account_are_required(client: TestClient, ctx: ServiceContext) -> None:
    root = admin(client, ctx)
    make_user(ctx)
    assert disable(client, "alice", root, reason="").status_code == 422
    assert client.post("/api/v1/admin/users/alice/disable", json={}, headers=root).status_code == 422
    assert_error(disable(client, "root", root), 403, "cannot_act_on_self")
    assert_error(disable(client, "nobody", root), 404, "user_not_found")
    ctx.clock.advance(11 * 60)  # type: ignore[attr-defined]
    assert_error(disable(client, "alice", root), 403, "reauthentication_required")
    assert accounts.find_user(ctx, "alice").disabled_at is None


def test_the_last_administrator_cannot_be_disabled(client: TestClient, ctx: ServiceContext) -> None:
    root = admin(client, ctx)
    make_user(ctx, "ada", role=InstanceRole.ADMIN)
    assert disable(client, "ada", root).status_code == 200
    # root is the only administrator left who is not disabled: not even the command line may disable them.
    with pytest.raises(LastAdministrator):
        account_status.disable(ctx, username="root", actor=None, client=CLIENT, reason="ticket 16")
    assert client.get("/api/v1/me", headers=root).status_code == 200
    # Through the API too (another administrator asking: ada, enabled again and signed in).
    assert enable(client, "ada", root).status_code == 200
    ada_headers = auth_header(login(client, "ada")["session_token"])
    assert disable(client, "root", ada_headers).status_code == 200
    assert_error(disable(client, "ada", ada_headers), 403, "cannot_act_on_self")
    with pytest.raises(LastAdministrator):
        account_status.disable(ctx, username="ada", actor=None, client=CLIENT, reason="ticket 16")
    assert accounts.find_user(ctx, "ada").disabled_at is None


def test_an_organisations_manager_disables_only_members_it_manages(client: TestClient, ctx: ServiceContext) -> None:
    for name in ("uma", "mia", "otto", "bert"):
        make_user(ctx, name)
    make_user(ctx, "ian", role=InstanceRole.ADMIN)
    organisations.create(ctx, slug="a", name="Org A", actor=None, client=CLIENT)
    organisations.create(ctx, slug="b", name="Org B", actor=None, client=CLIENT)
    for slug, name, role, managed in [
        ("a", "uma", OrgRole.USER_ADMIN, True),
        ("a", "mia", OrgRole.MEMBER, True),
        ("a", "otto", OrgRole.MEMBER, False),
        ("b", "bert", OrgRole.MEMBER, True),
    ]:
        organisations.add_member(ctx, slug, username=name, role=role, managed=managed, actor=None, client=CLIENT)
    uma = auth_header(login(client, "uma")["session_token"])
    for target in ("otto", "bert", "ian", "nobody"):
        assert_error(disable(client, target, uma), 403, "not_permitted")
    assert disable(client, "mia", uma).status_code == 200
    assert_error(enable(client, "bert", uma), 403, "not_permitted")
    assert enable(client, "mia", uma).status_code == 200
    member = auth_header(login(client, "otto")["session_token"])
    assert_error(disable(client, "mia", member), 403, "admin_required")
