"""The admin console's pages about users (/admin, /admin/users/...): who may see whom, what the page shows, and the
four actions (reset 2FA, require setup again, revoke tokens, clear blocks), each confirmed with a reason, a recent
verification and the CSRF token, in a browser without JavaScript. The organisation pages: test_pages_admin_orgs.py.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.access_tokens import TokenKind
from nidan.core.models import InstanceRole, Method, OrgRole
from nidan.core.policy import TwoFactorPolicy
from nidan.services import accounts, audit, enrollment, organisations, throttling, tokens
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from nidan.web.pages.stepup import safe_next
from tests.helpers import PASSWORD, code_at, make_user
from tests.web.admin_support import CLI, STALE, advance, organisation, signed_in, text_of, with_totp
from tests.web.pages_support import assert_support_details, error_code_of, sign_in, submit, verify

ACTIONS = ["reset", "require-registration", "revoke-tokens", "clear-blocks"]


def act(client: TestClient, username: str, action: str, reason: str = "lost phone, called back") -> httpx.Response:
    """Open the action's confirmation page and submit it with ``reason``."""
    page = client.get(f"/admin/users/{username}/{action}")
    assert page.status_code == 200, page.text
    return submit(client, page, f"/admin/users/{username}/{action}", reason=reason)


# --- the console's home ------------------------------------------------------------------------------------------


def test_an_instance_administrator_sees_every_user_and_organisation(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice, bob = make_user(ctx, "alice"), make_user(ctx, "bob")
    with_totp(ctx, alice)
    organisation(ctx, "platform", {"bob": (OrgRole.MEMBER, True)})
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    security = client.get("/security")
    assert 'href="/admin"' in security.text and "Admin console" in security.text

    page = client.get("/admin")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    text = text_of(page)
    for name in ("alice", "bob", "root"):
        assert f'href="/admin/users/{name}"' in page.text
    row = re.search(r'href="/admin/users/alice".*?</tr>', page.text, re.S)
    assert row and '<span class="badge on">On</span>' in row.group(0)
    row = re.search(r'href="/admin/users/bob".*?</tr>', page.text, re.S)
    assert row and '<span class="badge off">Off</span>' in row.group(0) and "never" in row.group(0)
    assert 'href="/admin/orgs/default"' in page.text and 'href="/admin/orgs/platform"' in page.text
    assert "Org PLATFORM" in text and "1 member " in text
    assert 'href="/admin/apps"' in page.text and "New organisation" in text
    assert bob.username in text

    # The search box is a plain GET filter on the name and the email address.
    found = client.get("/admin", params={"q": "ALI"})
    assert 'href="/admin/users/alice"' in found.text and 'href="/admin/users/bob"' not in found.text
    assert 'value="ALI"' in found.text
    by_mail = client.get("/admin", params={"q": "bob@example"})
    assert 'href="/admin/users/bob"' in by_mail.text and 'href="/admin/users/alice"' not in by_mail.text
    none = client.get("/admin", params={"q": "zed"})
    assert "No user you can help matches “zed”" in text_of(none)


def test_members_get_the_403_page_everywhere_in_the_console(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "bob")
    signed_in(client, ctx, "alice")
    security = client.get("/security")
    assert 'href="/admin"' not in security.text
    responses = [client.get(path) for path in ("/admin", "/admin/users/bob", "/admin/users/bob/events")]
    responses += [client.get(f"/admin/users/bob/{action}") for action in ACTIONS]
    responses += [submit(client, security, f"/admin/users/bob/{action}", reason="x") for action in ACTIONS]
    responses.append(submit(client, security, "/admin/orgs", slug="mine", name="Mine"))
    for response in responses:
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert_support_details(response, "admin_required", "alice")
        assert "The admin console is for administrators" in response.text
        assert "Confirm it's you" not in text_of(response)
    assert accounts.find_user(ctx, "bob").registration_required_at is None


def test_the_console_needs_a_session(client: TestClient, runtime: Runtime) -> None:
    for path in ("/admin", "/admin/users/alice", "/admin/users/alice/reset", "/admin/orgs/default"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login?notice=signin_required"


# --- one user's page ----------------------------------------------------------------------------------------------


def test_the_user_page_shows_how_they_stand(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    organisation(ctx, "platform", {"alice": (OrgRole.USER_ADMIN, False)})
    organisations.set_policy(
        ctx, "platform", two_factor=TwoFactorPolicy.REQUIRED_FOR_ADMINS, grace_period_days=0,
        allowed_methods=Method, tolerated_failures=None, actor=None, client=CLI,
    )  # fmt: skip
    secret = with_totp(ctx, alice)
    tokens.create(ctx, alice, kind=TokenKind.APP_PASSWORD, name="mail", scopes=None, expires_on=None, client=CLI)
    # Alice signs in with a phone 6 minutes slow (seen), then mistypes her password once from this browser.
    sign_in(client, "alice")
    assert verify(client, code_at(secret, ctx, offset_steps=-12)).status_code == 401
    submit(client, client.get("/login/verify"), "/login/verify", method="totp", code=code_at(secret, ctx))
    client.cookies.clear()
    assert sign_in(client, "alice", "wrong password").status_code == 401
    # ... and a Git client of hers tries a stale password at the gate.
    assert client.get("/auth/basic", params={"scope": "read_repository"}, auth=("alice", "stale")).status_code == 401

    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get("/admin/users/alice")
    assert page.status_code == 200, page.text
    text = text_of(page)
    assert "alice@example.com" in text
    assert re.search(r'id="two-step-state"><span class="badge on">On</span> since\s+14 Mar 2026, 15:09 UTC', page.text)
    assert "16 of 16 left" in text
    assert "Yes, by an organisation they belong to" in text
    assert re.search(r'id="registration">No<', page.text)
    assert "about 6 minutes behind" in text and "(sign in)" in text
    assert "Org PLATFORM" in text and "user admin · outside collaborator" in text
    assert "Default" in text or "default" in text
    assert "1 live access token and app password." in text
    counters = re.search(r'<table class="list counters">.*?</table>', page.text, re.S)
    assert counters, page.text
    rows = re.findall(r"<tr[^>]*><td>(.*?)</td><td>(\d+)</td>\s*<td>(.*?)</td></tr>", counters.group(0), re.S)
    assert ("Password from testclient", "1", "not blocked") in rows
    assert ("Git and apps (gate) from testclient", "1", "not blocked") in rows
    assert rows[0][0].startswith("Second step")
    for action in ACTIONS:
        assert f'href="/admin/users/alice/{action}"' in page.text
    assert 'href="/admin/users/alice/events"' in page.text


def test_the_user_page_shows_blocks_and_a_pending_grace_period(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    organisation(ctx, "platform", {"alice": (OrgRole.MEMBER, True)})
    organisations.set_policy(
        ctx, "platform", two_factor=TwoFactorPolicy.REQUIRED_FOR_ALL, grace_period_days=7,
        allowed_methods=Method, tolerated_failures=None, actor=None, client=CLI,
    )  # fmt: skip
    assert sign_in(client, "alice").headers["location"] == "/security"  # reminded: the grace period starts
    client.cookies.clear()
    advance(ctx, 60)
    for _ in range(2):
        sign_in(client, "alice", "wrong password")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get("/admin/users/alice")
    text = text_of(page)
    assert "Reminded at each sign-in until 21 Mar 2026, 15:09 UTC; after that, led into setting it up." in text
    assert re.search(r'<tr class="refusing"><td>Password from testclient</td><td>2</td>', page.text), page.text
    assert "blocked until 2026-03-14 15:10:27 UTC" in text


def test_a_user_nobody_has_is_a_404_page_and_an_unknown_action_too(client: TestClient, runtime: Runtime) -> None:
    signed_in(client, runtime.services, "root", InstanceRole.ADMIN)
    for path in ("/admin/users/nobody", "/admin/users/nobody/events", "/admin/users/nobody/reset"):
        missing = client.get(path)
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert_support_details(missing, "user_not_found", "root")
    assert client.get("/admin/users/root/explode").status_code == 404


# --- the actions -----------------------------------------------------------------------------------------------------


def test_resetting_2fa_asks_for_a_reason_then_the_user_sets_it_up_again(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    with_totp(ctx, alice)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    ask = client.get("/admin/users/alice/reset")
    assert ask.status_code == 200
    text = text_of(ask)
    assert "Reset two-step verification for alice?" in text
    assert "their authenticator app and all their recovery codes stop working" in text
    assert "signed out everywhere" in text and 'name="reason"' in ask.text and "required" in ask.text

    for short in ("   ", "  ab  "):
        empty = submit(client, ask, "/admin/users/alice/reset", reason=short)
        assert empty.status_code == 422 and "Give a reason of 3 to 200 characters" in text_of(empty)
        assert_support_details(empty, "invalid_request", "root")
    too_long = submit(client, ask, "/admin/users/alice/reset", reason="x" * 201)
    assert too_long.status_code == 422 and 'value="' + "x" * 201 + '"' in too_long.text
    assert enrollment.security_state(ctx, alice.id).totp_enabled

    done = submit(client, ask, "/admin/users/alice/reset", reason="lost phone,  called back")
    assert done.status_code == 303 and done.headers["location"] == "/admin/users/alice?notice=two_factor_reset"
    page = text_of(client.get(done.headers["location"]))
    assert "Two-step verification was reset" in page and "They set it up again at their next sign-in." in page
    assert '<span class="badge off">Off</span>' in page and "Yes, since 14 Mar 2026" in page
    state = enrollment.security_state(ctx, alice.id)
    assert not state.totp_enabled and state.registration_required
    row = re.search(r'href="/admin/users/alice".*?</tr>', client.get("/admin").text, re.S)
    assert row and '<span class="badge off">Off</span>' in row.group(0) and "asked to set up again" in row.group(0)

    log = text_of(client.get("/admin/users/alice/events"))
    assert "Security log of alice" in log
    assert "Two-step verification reset by an administrator" in log and "by root" in log
    assert "reason: lost phone, called back" in log

    # Alice signs in with her password and is taken straight into setting it up.
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as other:
        assert sign_in(other, "alice").headers["location"] == "/security/setup"
        assert "An administrator reset your two-step verification" in other.get("/security/setup").text


def test_requiring_setup_again_removes_nothing_now(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    with_totp(ctx, alice)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    ask = client.get("/admin/users/alice/require-registration")
    assert "Ask alice to set up two-step verification again?" in text_of(ask)
    assert "nothing is removed now" in ask.text
    done = submit(client, ask, "/admin/users/alice/require-registration", reason="new phone policy")
    assert done.headers["location"] == "/admin/users/alice?notice=registration_required"
    assert "asked to set up their authenticator app again" in client.get(done.headers["location"]).text
    state = enrollment.security_state(ctx, alice.id)
    assert state.totp_enabled and state.registration_required
    assert "reason: new phone policy" in text_of(client.get("/admin/users/alice/events"))


def test_revoking_every_token_of_a_user(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    for name in ("mail", "laptop"):
        tokens.create(ctx, alice, kind=TokenKind.APP_PASSWORD, name=name, scopes=None, expires_on=None, client=CLI)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    ask = client.get("/admin/users/alice/revoke-tokens")
    assert "all 2 of their live access tokens and app passwords stop working" in text_of(ask)
    done = submit(client, ask, "/admin/users/alice/revoke-tokens", reason="laptop stolen")
    assert done.headers["location"] == "/admin/users/alice?notice=tokens_revoked_all"
    page = text_of(client.get(done.headers["location"]))
    assert "All their access tokens and app passwords were revoked" in page
    assert "0 live access tokens and app passwords." in page
    assert list(tokens.list_tokens(ctx, alice)) == []


def test_clearing_blocks_lets_them_try_again(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    for _ in range(2):
        sign_in(client, "alice", "wrong password")
    assert sign_in(client, "alice").status_code == 429  # blocked, even with the right password
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get("/admin/users/alice")
    assert re.search(r'<tr class="refusing"><td>Password from testclient</td><td>2</td>', page.text), page.text
    ask = client.get("/admin/users/alice/clear-blocks")
    assert "Password from testclient: 2 failures in a row, blocked until 2026-03-14 15:09:27 UTC" in text_of(ask)
    done = submit(client, ask, "/admin/users/alice/clear-blocks", reason="typo spree, checked by phone")
    assert done.headers["location"] == "/admin/users/alice?notice=blocks_cleared"
    assert "Their blocks were cleared" in client.get(done.headers["location"]).text
    status = throttling.status(ctx, "alice")
    assert all(state.failures == 0 for _, state in status.passwords)
    client.cookies.clear()
    assert sign_in(client, "alice").headers["location"] == "/security"


def test_every_action_form_checks_csrf(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    with_totp(ctx, alice)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    client.get("/admin")
    for action in ACTIONS:
        for token in ({}, {"csrf_token": "f" * 64}):
            response = client.post(f"/admin/users/alice/{action}", data={"reason": "x", **token})
            assert response.status_code == 403, (action, response.text)
            assert_support_details(response, "csrf_failed", "root")
    assert enrollment.security_state(ctx, alice.id).totp_enabled
    assert not [r for r in audit.my_events(ctx, alice.id) if r.event.actor_username == "root"]


def test_every_action_needs_a_recent_verification(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    with_totp(ctx, alice)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get("/admin/users/alice/reset")
    advance(ctx, STALE)
    # Looking needs no confirmation; acting does, on the confirmation page and on the form posted anyway.
    assert client.get("/admin/users/alice").status_code == 200
    for action in ACTIONS:
        for ask in (
            client.get(f"/admin/users/alice/{action}"),
            submit(client, page, f"/admin/users/alice/{action}", reason="lost phone"),
        ):
            assert ask.status_code == 403, ask.text
            assert "Confirm it's you" in text_of(ask)
            assert f'name="next" value="/admin/users/alice/{action}"' in ask.text
            assert_support_details(ask, "reauthentication_required", "root")
    assert enrollment.security_state(ctx, alice.id).totp_enabled

    done = submit(
        client, ask, "/security/reauth", method="password", password=PASSWORD, next="/admin/users/alice/reset"
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin/users/alice/reset?notice=reauthenticated"
    back = client.get(done.headers["location"])
    assert back.status_code == 200 and "Confirmed: it's you" in text_of(back)
    reset = submit(client, back, "/admin/users/alice/reset", reason="lost phone")
    assert reset.headers["location"] == "/admin/users/alice?notice=two_factor_reset"
    assert not enrollment.security_state(ctx, alice.id).totp_enabled


def test_an_administrator_cannot_reset_themselves_here(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = signed_in(client, ctx, "root", InstanceRole.ADMIN)
    with_totp(ctx, root)
    page = client.get("/admin/users/root")
    assert page.status_code == 200 and "This is your own account" in page.text
    assert 'href="/admin/users/root/reset"' not in page.text
    assert 'href="/admin/users/root/clear-blocks"' in page.text
    for action in ("reset", "require-registration"):
        refused = client.get(f"/admin/users/root/{action}")
        assert refused.status_code == 403 and error_code_of(refused) == "cannot_act_on_self"
        posted = submit(client, page, f"/admin/users/root/{action}", reason="testing")
        assert posted.status_code == 403 and error_code_of(posted) == "cannot_act_on_self"
    assert enrollment.security_state(ctx, root.id).totp_enabled
    # Clearing one's own blocks is not refused (it is not a way around anything).
    assert act(client, "root", "clear-blocks").headers["location"] == "/admin/users/root?notice=blocks_cleared"


# --- organisations' administrators --------------------------------------------------------------------------------


@pytest.fixture
def two_organisations(runtime: Runtime) -> ServiceContext:
    """carol is a user_admin of A, which manages alice and has dave as an outside collaborator; bob is in B only."""
    ctx = runtime.services
    for name in ("alice", "bob", "carol", "dave"):
        make_user(ctx, name)
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    organisation(ctx, "a", {"carol": (OrgRole.USER_ADMIN, True), "alice": (OrgRole.MEMBER, True)})
    organisations.add_member(ctx, "a", username="dave", role=OrgRole.MEMBER, managed=False, actor=None, client=CLI)
    organisation(ctx, "b", {"bob": (OrgRole.MEMBER, True)})
    return ctx


def test_a_user_admin_helps_the_members_their_organisation_manages_only(
    client: TestClient, runtime: Runtime, two_organisations: ServiceContext
) -> None:
    ctx = two_organisations
    alice = accounts.find_user(ctx, "alice")
    bob = accounts.find_user(ctx, "bob")
    for user in (alice, bob):
        with_totp(ctx, user)
    assert sign_in(client, "carol").headers["location"] == "/security"
    assert 'href="/admin"' in client.get("/security").text
    console = client.get("/admin")
    assert console.status_code == 200
    assert 'href="/admin/users/alice"' in console.text
    for other in ("bob", "dave", "root"):
        assert f'href="/admin/users/{other}"' not in console.text
    assert 'href="/admin/orgs/a"' in console.text
    assert 'href="/admin/orgs/b"' not in console.text and 'href="/admin/orgs/default"' not in console.text
    assert 'href="/admin/apps"' not in console.text and "New organisation" not in console.text

    assert act(client, "alice", "reset").headers["location"] == "/admin/users/alice?notice=two_factor_reset"
    assert not enrollment.security_state(ctx, alice.id).totp_enabled

    page = client.get("/admin/users/alice")
    for other in ("bob", "dave", "root"):
        for response in (
            client.get(f"/admin/users/{other}"),
            client.get(f"/admin/users/{other}/events"),
            client.get(f"/admin/users/{other}/reset"),
            submit(client, page, f"/admin/users/{other}/reset", reason="lost phone"),
            submit(client, page, f"/admin/users/{other}/clear-blocks", reason="lost phone"),
        ):
            assert response.status_code == 403, (other, response.text)
            assert_support_details(response, "not_permitted", "carol")
    assert enrollment.security_state(ctx, bob.id).totp_enabled


def test_a_user_admins_log_view_is_limited_like_the_rest(
    client: TestClient, runtime: Runtime, two_organisations: ServiceContext
) -> None:
    ctx = two_organisations
    sign_in(client, "alice", "wrong password")
    client.cookies.clear()
    assert sign_in(client, "carol").headers["location"] == "/security"
    log = client.get("/admin/users/alice/events")
    assert log.status_code == 200
    assert "Sign-in failed: wrong password" in text_of(log) and "Account created" in text_of(log)
    assert "Added to an organisation" in text_of(log)
    assert not throttling.status(ctx, "alice").second_factor.failures


# --- the step-up allow-list ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/admin/users/alice",
        "/admin/users/a.b-c_d/reset",
        "/admin/users/alice/require-registration",
        "/admin/users/alice/revoke-tokens",
        "/admin/users/alice/clear-blocks",
        "/admin/orgs/platform-team",
        "/admin/orgs/a/members/alice/remove",
        # Any page of the console: an action added later returns to its own confirmation page too.
        "/admin/users/alice/disable",
        "/admin/users/alice/enable",
        "/admin/users/alice/delete",
        "/admin/users/alice/events",
        "/admin/apps",
    ],
)
def test_console_pages_are_places_a_confirmation_returns_to(path: str) -> None:
    assert safe_next(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/admin",
        "https://evil.example/admin/users/alice",
        "/admin/users/../../security",
        "/admin/users/alice/reset?x=1",
        "/admin/users/alice\n/reset",
        "/admin\\evil.example",
        "/admin//evil.example",
        "/admin/users/%2e%2e/x",
    ],
)
def test_anything_else_returns_to_the_security_page(path: str) -> None:
    assert safe_next(path) == "/security"
