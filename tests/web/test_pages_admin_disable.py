"""Disabling and enabling an account in the admin console (issue 16): the user page offers the one that applies,
each is confirmed with a reason after a recent verification and the CSRF token, and the disabled account's browser
session stops working at once."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole, OrgRole
from nidan.services import accounts, audit
from nidan.web.app import create_app
from tests.helpers import make_user
from tests.web.admin_support import STALE, advance, organisation, signed_in, text_of
from tests.web.pages_support import assert_support_details, error_code_of, sign_in, submit


def act(client: TestClient, username: str, action: str, reason: str = "left the company") -> httpx.Response:
    page = client.get(f"/admin/users/{username}/{action}")
    assert page.status_code == 200, page.text
    return submit(client, page, f"/admin/users/{username}/{action}", reason=reason)


def test_disabling_signs_them_out_and_enabling_lets_them_sign_in_again(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as alices:
        assert sign_in(alices, "alice").headers["location"] == "/security"
        assert alices.get("/security").status_code == 200
        signed_in(client, ctx, "root", InstanceRole.ADMIN)
        page = client.get("/admin/users/alice")
        assert 'href="/admin/users/alice/disable"' in page.text and "/admin/users/alice/enable" not in page.text

        ask = client.get("/admin/users/alice/disable")
        text = text_of(ask)
        assert "Disable the account of alice?" in text and "signed out everywhere" in text
        short = submit(client, ask, "/admin/users/alice/disable", reason="  ab ")
        assert short.status_code == 422 and accounts.find_user(ctx, "alice").disabled_at is None

        done = submit(client, ask, "/admin/users/alice/disable", reason="left the company,  ticket 16")
        assert done.status_code == 303 and done.headers["location"] == "/admin/users/alice?notice=user_disabled"
        shown = client.get(done.headers["location"])
        assert "The account was disabled" in text_of(shown)
        assert 'id="account-disabled"' in shown.text and "left the company, ticket 16" in text_of(shown)
        assert 'href="/admin/users/alice/enable"' in shown.text and "/admin/users/alice/disable" not in shown.text
        assert "Account disabled by an administrator" in text_of(client.get("/admin/users/alice/events"))

        # Her browser's session: gone at once; signing in again tells her why (after the right password only).
        assert alices.get("/security", follow_redirects=False).status_code in (303, 401)
        refused = sign_in(alices, "alice")
        assert refused.status_code == 403 and error_code_of(refused) == "account_disabled"
        wrong = sign_in(alices, "alice", password="not her password")
        assert error_code_of(wrong) == "invalid_credentials"

        enabled = act(client, "alice", "enable", reason="came back, ticket 17")
        assert enabled.headers["location"] == "/admin/users/alice?notice=user_enabled"
        assert "The account was enabled again" in text_of(client.get(enabled.headers["location"]))
        assert sign_in(alices, "alice").headers["location"] == "/security"


def test_disable_needs_csrf_and_a_recent_verification_and_is_not_offered_on_oneself(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    client.get("/admin")
    for token in ({}, {"csrf_token": "f" * 64}):
        response = client.post("/admin/users/alice/disable", data={"reason": "left", **token})
        assert response.status_code == 403
        assert_support_details(response, "csrf_failed", "root")
    own = client.get("/admin/users/root")
    assert "/admin/users/root/disable" not in own.text
    refused = client.get("/admin/users/root/disable")
    assert refused.status_code == 403 and error_code_of(refused) == "cannot_act_on_self"
    page = client.get("/admin/users/alice/disable")
    advance(ctx, STALE)
    ask = submit(client, page, "/admin/users/alice/disable", reason="left the company")
    assert ask.status_code == 403 and "Confirm it's you" in text_of(ask)
    assert accounts.find_user(ctx, "alice").disabled_at is None
    assert not [r for r in audit.my_events(ctx, accounts.find_user(ctx, "alice").id) if r.event.actor_username]


def test_a_user_admin_disables_only_members_their_organisation_manages(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    for name in ("mia", "otto"):
        make_user(ctx, name)
    signed_in(client, ctx, "uma")
    organisation(
        ctx, "a", {"uma": (OrgRole.USER_ADMIN, True), "mia": (OrgRole.MEMBER, True), "otto": (OrgRole.MEMBER, False)}
    )
    refused = client.get("/admin/users/otto/disable")
    assert refused.status_code == 403 and error_code_of(refused) == "not_permitted"
    assert act(client, "mia", "disable").headers["location"] == "/admin/users/mia?notice=user_disabled"
    assert accounts.find_user(ctx, "mia").disabled_at is not None
