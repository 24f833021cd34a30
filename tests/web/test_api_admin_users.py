"""Administrators helping users over the API: Atlassian's unenroll contract exactly, resetting and requiring 2FA,
how a user stands, their log, and who may act on whom (instance administrators, organisations' roles)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, Method, OrgRole
from nidan.core.policy import TwoFactorPolicy
from nidan.services import accounts, audit, enrollment, organisations
from nidan.services.context import ServiceContext
from tests.helpers import auth_header, code_at, enable_totp, login, make_user

CLIENT = ClientInfo()
NO_ENROLLMENT = "No enrollment found for this user."


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def make_id(ctx: ServiceContext, username: str) -> int:
    return accounts.find_user(ctx, username).id


def signed_in(client: TestClient, username: str) -> dict[str, str]:
    """A fresh session of a user without 2FA (verified now)."""
    return auth_header(login(client, username)["session_token"])


def admin_with_totp(client: TestClient, ctx: ServiceContext, username: str = "root") -> tuple[dict[str, str], str]:
    make_user(ctx, username, role=InstanceRole.ADMIN)
    token = login(client, username)["session_token"]
    secret, _ = enable_totp(client, ctx, token)
    return auth_header(token), secret


def user_with_totp(client: TestClient, ctx: ServiceContext, username: str) -> tuple[str, str]:
    """A user with TOTP and a live session; returns the session token and the secret."""
    make_user(ctx, username)
    token = login(client, username)["session_token"]
    secret, _ = enable_totp(client, ctx, token)
    return token, secret


def unenroll(client: TestClient, username: str, code: str, headers: dict[str, str] | None = None) -> Any:
    return client.request(
        "DELETE", f"/api/v1/admin/users/{username}/mfa", json={"totp_code": code}, headers=headers or {}
    )


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- the unenroll endpoint: Atlassian's five answers ---------------------------------------------------------------


def test_unenroll_answers_204_and_the_user_signs_in_with_the_password_only(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    admin, secret = admin_with_totp(client, ctx)
    bob_session, _ = user_with_totp(client, ctx, "bob")

    done = unenroll(client, "BOB", code_at(secret, ctx), admin)
    assert done.status_code == 204, done.text
    assert done.content == b""
    assert not enrollment.security_state(ctx, make_id(ctx, "bob")).totp_enabled
    # Signed out everywhere; the next sign-in needs only the password (no organisation requires 2FA).
    assert client.get("/api/v1/me", headers=auth_header(bob_session)).status_code == 401
    assert login(client, "bob")["status"] == "authenticated"

    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.TWO_FACTOR_UNENROLLED)]
    assert (event.actor_username, event.subject_username) == ("root", "bob")
    assert event.details["had_two_factor"] is True and event.details["via"] == "unenroll"
    # The admin's code was their step-up for this call, and is recorded as such.
    assert audit.all_events(ctx, event_type=EventType.STEP_UP_SUCCEEDED, username="root")


def test_unenroll_answers_400_with_the_top_level_message_and_the_usual_error_body(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    admin, secret = admin_with_totp(client, ctx)
    make_user(ctx, "carol")  # no second factor
    answer = unenroll(client, "carol", code_at(secret, ctx), admin)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert set(body) == {"message", "error"}
    assert body["message"] == NO_ENROLLMENT
    error = body["error"]
    assert error["code"] == "no_enrollment_found" and error["message"] == NO_ENROLLMENT
    assert error["correlation_id"] == answer.headers["x-correlation-id"]
    assert error["timestamp"][-6] in "+-"  # with its UTC offset
    assert not audit.all_events(ctx, event_type=EventType.TWO_FACTOR_UNENROLLED)


def test_unenroll_answers_404_for_an_unknown_user(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, secret = admin_with_totp(client, ctx)
    missing = unenroll(client, "nobody", code_at(secret, ctx), admin)
    assert missing.status_code == 404 and error_code(missing) == "user_not_found"


def test_unenroll_answers_401_without_a_session_or_with_a_wrong_or_replayed_code(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    admin, secret = admin_with_totp(client, ctx)
    user_with_totp(client, ctx, "bob")
    user_with_totp(client, ctx, "dave")

    anonymous = unenroll(client, "bob", code_at(secret, ctx))
    assert anonymous.status_code == 401 and error_code(anonymous) == "authentication_required"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    forged = unenroll(client, "bob", code_at(secret, ctx), auth_header("nidan_s_" + "A" * 43))
    assert forged.status_code == 401 and error_code(forged) == "authentication_required"

    wrong = unenroll(client, "bob", "000000" if code_at(secret, ctx) != "000000" else "111111", admin)
    assert wrong.status_code == 401 and error_code(wrong) == "invalid_code"
    assert enrollment.security_state(ctx, make_id(ctx, "bob")).totp_enabled

    advance(ctx, 5)  # past the 1 s block the second failure of the next call would meet
    code = code_at(secret, ctx)
    assert unenroll(client, "bob", code, admin).status_code == 204
    replayed = unenroll(client, "dave", code, admin)
    assert replayed.status_code == 401 and error_code(replayed) == "invalid_code"
    assert enrollment.security_state(ctx, make_id(ctx, "dave")).totp_enabled


def test_unenroll_answers_403_for_their_own_account(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, secret = admin_with_totp(client, ctx)
    own = unenroll(client, "root", code_at(secret, ctx), admin)
    assert own.status_code == 403 and error_code(own) == "cannot_act_on_self"
    assert enrollment.security_state(ctx, make_id(ctx, "root")).totp_enabled


def test_unenroll_is_for_instance_administrators_only(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    user_with_totp(client, ctx, "bob")
    # A member with TOTP, and an organisation's owner: neither is an instance administrator.
    member_session, member_secret = user_with_totp(client, ctx, "carol")
    refused = unenroll(client, "bob", code_at(member_secret, ctx), auth_header(member_session))
    assert refused.status_code == 403 and error_code(refused) == "admin_required"
    make_user(ctx, "olga")
    organisations.create(ctx, slug="eng", name="Engineering", actor=None, client=CLIENT, owner=None)
    organisations.add_member(ctx, "eng", username="olga", role=OrgRole.OWNER, managed=True, actor=None, client=CLIENT)
    organisations.add_member(ctx, "eng", username="bob", role=OrgRole.MEMBER, managed=True, actor=None, client=CLIENT)
    owner = unenroll(client, "bob", "123456", signed_in(client, "olga"))
    assert owner.status_code == 403 and error_code(owner) == "admin_required"
    assert enrollment.security_state(ctx, make_id(ctx, "bob")).totp_enabled


def test_unenroll_needs_the_admins_own_authenticator(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    user_with_totp(client, ctx, "bob")
    refused = unenroll(client, "bob", "123456", signed_in(client, "root"))
    assert refused.status_code == 401 and error_code(refused) == "invalid_code"
    assert "authenticator app first" in refused.json()["error"]["message"]


def test_the_admins_wrong_codes_count_towards_their_backoff(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, secret = admin_with_totp(client, ctx)
    user_with_totp(client, ctx, "bob")
    wrong = "000000" if code_at(secret, ctx) != "000000" else "111111"
    assert unenroll(client, "bob", wrong, admin).status_code == 401  # tolerated
    assert unenroll(client, "bob", wrong, admin).status_code == 401  # this one blocks for 1 s
    blocked = unenroll(client, "bob", code_at(secret, ctx), admin)
    assert blocked.status_code == 429 and error_code(blocked) == "rate_limited"
    assert blocked.headers["retry-after"] == "1"
    # The same counter guards the admin's sign-in: theirs, not bob's.
    state = client.get("/api/v1/admin/users/root/block", headers=admin).json()
    assert state["second_factor"]["failures"] == 2
    assert client.get("/api/v1/admin/users/bob/block", headers=admin).json()["second_factor"]["failures"] == 0
    failed = audit.all_events(ctx, event_type=EventType.STEP_UP_FAILED, username="root")
    assert len(failed) == 2

    advance(ctx, 2)
    assert unenroll(client, "bob", code_at(secret, ctx), admin).status_code == 204
    assert client.get("/api/v1/admin/users/root/block", headers=admin).json()["second_factor"]["failures"] == 0


def test_after_unenroll_a_required_user_is_led_into_setup(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, secret = admin_with_totp(client, ctx)
    user_with_totp(client, ctx, "bob")
    organisations.create(ctx, slug="eng", name="Engineering", actor=None, client=CLIENT)
    organisations.add_member(ctx, "eng", username="bob", role=OrgRole.MEMBER, managed=True, actor=None, client=CLIENT)
    organisations.set_policy(
        ctx,
        "eng",
        two_factor=TwoFactorPolicy.REQUIRED_FOR_ALL,
        grace_period_days=0,
        allowed_methods=list(Method),
        tolerated_failures=None,
        actor=None,
        client=CLIENT,
    )
    assert unenroll(client, "bob", code_at(secret, ctx), admin).status_code == 204
    answer = login(client, "bob")
    assert answer["status"] == "mfa_setup_required" and answer["reason"] == "policy"
    assert "session_token" not in answer


# --- reset and require registration --------------------------------------------------------------------------------


def test_reset_signs_the_user_out_and_leads_the_next_sign_in_into_setup(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, _ = admin_with_totp(client, ctx)
    bob_session, _ = user_with_totp(client, ctx, "bob")
    login(client, "bob")  # a second, unfinished sign-in attempt

    reset = client.post("/api/v1/admin/users/bob/mfa/reset", json={"reason": "lost phone, ticket 42"}, headers=admin)
    assert reset.status_code == 200, reset.text
    assert reset.json() == {"username": "bob", "had_two_factor": True, "sessions_ended": 1}
    assert client.get("/api/v1/me", headers=auth_header(bob_session)).status_code == 401

    answer = login(client, "bob")
    assert answer["status"] == "mfa_setup_required" and answer["reason"] == "administrator"
    setup = auth_header(answer["setup_token"])
    # The setup token allows setting up 2FA and nothing else.
    for method, path in (("GET", "/api/v1/me/tokens"), ("GET", "/api/v1/me/events"), ("DELETE", "/api/v1/me/totp")):
        refused = client.request(method, path, headers=setup)
        assert refused.status_code == 403 and error_code(refused) == "mfa_setup_required", path
    assert client.get("/api/v1/me", headers=setup).json()["setup_only"] is True

    started = client.post("/api/v1/me/totp", headers=setup)
    assert started.status_code == 200, started.text
    activated = client.post(
        "/api/v1/me/totp/activate", json={"code": code_at(started.json()["secret"], ctx)}, headers=setup
    )
    assert activated.status_code == 200, activated.text
    body = activated.json()
    assert body["session_token"].startswith("nidan_s_") and len(body["recovery_codes"]) == 16
    full = auth_header(body["session_token"])
    assert client.get("/api/v1/me/tokens", headers=full).status_code == 200
    assert client.get("/api/v1/me", headers=setup).status_code == 401  # the setup token ended
    assert client.get("/api/v1/me", headers=full).json()["two_factor"]["registration_required"] is False

    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.TWO_FACTOR_RESET)]
    assert (event.actor_username, event.subject_username) == ("root", "bob")
    assert event.details["reason"] == "lost phone, ticket 42" and event.details["sessions_ended"] == 1


def test_reset_needs_a_reason_and_step_up(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, _ = admin_with_totp(client, ctx)
    make_user(ctx, "bob")
    for body in ({}, {"reason": "no"}, {"reason": "x" * 201}, {"reason": "fine", "extra": 1}):
        refused = client.post("/api/v1/admin/users/bob/mfa/reset", json=body, headers=admin)
        assert refused.status_code == 422 and error_code(refused) == "invalid_request", body
    advance(ctx, 11 * 60)
    stale = client.post("/api/v1/admin/users/bob/mfa/reset", json={"reason": "ticket 1"}, headers=admin)
    assert stale.status_code == 403 and error_code(stale) == "reauthentication_required"
    own = client.post("/api/v1/admin/users/root/mfa/reset", json={"reason": "ticket 1"}, headers=admin)
    assert own.status_code == 403 and error_code(own) == "reauthentication_required"
    assert not audit.all_events(ctx, event_type=EventType.TWO_FACTOR_RESET)


def test_reset_of_ones_own_account_is_refused(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services, "root", role=InstanceRole.ADMIN)
    own = client.post("/api/v1/admin/users/root/mfa/reset", json={"reason": "mine"}, headers=signed_in(client, "root"))
    assert own.status_code == 403 and error_code(own) == "cannot_act_on_self"


def test_require_registration_asks_after_the_current_factor(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, _ = admin_with_totp(client, ctx)
    _, bob_secret = user_with_totp(client, ctx, "bob")
    asked = client.post(
        "/api/v1/admin/users/bob/mfa/require-registration", json={"reason": "new phones for all"}, headers=admin
    )
    assert asked.status_code == 200 and asked.json() == {"username": "bob"}
    overview = client.get("/api/v1/admin/users/bob", headers=admin).json()
    assert overview["two_factor"]["enabled"] is True and overview["two_factor"]["registration_required"] is True

    started = login(client, "bob")
    assert started["status"] == "mfa_required"
    answer = client.post(
        "/api/v1/auth/mfa", json={"mfa_token": started["mfa_token"], "method": "totp", "code": code_at(bob_secret, ctx)}
    ).json()
    assert answer["status"] == "mfa_setup_required" and answer["reason"] == "administrator"
    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.REGISTRATION_REQUIRED)]
    assert event.details["reason"] == "new phones for all" and event.actor_username == "root"


# --- how a user stands ---------------------------------------------------------------------------------------------


def test_overview_list_and_log(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    admin, _ = admin_with_totp(client, ctx)
    _, bob_secret = user_with_totp(client, ctx, "bob")
    make_user(ctx, "carol")
    organisations.create(ctx, slug="eng", name="Engineering", actor=None, client=CLIENT)
    organisations.add_member(ctx, "eng", username="bob", role=OrgRole.MEMBER, managed=False, actor=None, client=CLIENT)
    # A code from a phone whose clock is 3 minutes behind: wrong, and seen as drift.
    advance(ctx, totp.PERIOD)
    started = login(client, "bob")
    client.post(
        "/api/v1/auth/mfa",
        json={"mfa_token": started["mfa_token"], "method": "totp", "code": code_at(bob_secret, ctx, -6)},
    )

    users = client.get("/api/v1/admin/users", headers=admin)
    assert users.status_code == 200, users.text
    by_name = {u["username"]: u for u in users.json()["users"]}
    assert set(by_name) == {"root", "bob", "carol"}
    assert by_name["bob"]["two_factor_enabled"] is True and by_name["carol"]["two_factor_enabled"] is False
    assert set(by_name["bob"]) == {
        "username", "email", "role", "two_factor_enabled", "registration_required", "last_sign_in_at", "disabled"
    }  # fmt: skip

    overview = client.get("/api/v1/admin/users/Bob", headers=admin)
    assert overview.status_code == 200, overview.text
    body = overview.json()
    assert body["username"] == "bob" and body["role"] == "member"
    assert body["two_factor"]["enabled"] is True and body["two_factor"]["recovery_codes_remaining"] == 16
    assert body["two_factor"]["required"] is False and body["two_factor"]["due"] is None
    assert [o["offset_seconds"] for o in body["clock_observations"]] == [-180]
    assert {(m["organisation"], m["role"], m["managed"]) for m in body["memberships"]} == {
        ("default", "member", True),
        ("eng", "member", False),
    }
    assert body["live_tokens"] == 0
    assert body["block"]["second_factor"]["failures"] == 1

    events = client.get("/api/v1/admin/users/bob/events", params={"limit": 50}, headers=admin)
    assert events.status_code == 200, events.text
    types = [e["type"] for e in events.json()["events"]]
    assert "sign_in.second_factor_failed" in types and "totp.enrolled" in types
    assert all(
        "bob" in ((e["subject"] or {}).get("username"), (e["actor"] or {}).get("username"))
        for e in events.json()["events"]
    )
    missing = client.get("/api/v1/admin/users/nobody", headers=admin)
    assert missing.status_code == 404 and error_code(missing) == "user_not_found"


def test_members_get_admin_required_everywhere(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "bob")
    make_user(ctx, "carol")
    member = signed_in(client, "carol")
    calls = [
        ("GET", "/api/v1/admin/users", None),
        ("GET", "/api/v1/admin/users/bob", None),
        ("GET", "/api/v1/admin/users/bob/events", None),
        ("POST", "/api/v1/admin/users/bob/mfa/reset", {"reason": "because"}),
        ("POST", "/api/v1/admin/users/bob/mfa/require-registration", {"reason": "because"}),
        ("GET", "/api/v1/admin/users/bob/block", None),
        ("DELETE", "/api/v1/admin/users/bob/block", None),
        ("DELETE", "/api/v1/admin/users/bob/tokens", None),
    ]
    for method, path, body in calls:
        refused = client.request(method, path, json=body, headers=member)
        assert refused.status_code == 403 and error_code(refused) == "admin_required", path


# --- who may act on whom ---------------------------------------------------------------------------------------------


@pytest.fixture
def two_orgs(client: TestClient, runtime: Runtime) -> dict[str, dict[str, str]]:
    """Org a: owner olga, user_admin uma, managed member mia, outside collaborator otto, instance admin ian (a
    managed member there too). Org b: member bert only. Returns everyone's fresh session headers."""
    ctx = runtime.services
    for name in ("olga", "uma", "mia", "otto", "bert"):
        make_user(ctx, name)
    make_user(ctx, "ian", role=InstanceRole.ADMIN)
    organisations.create(ctx, slug="a", name="Org A", actor=None, client=CLIENT)
    organisations.create(ctx, slug="b", name="Org B", actor=None, client=CLIENT)
    members = [
        ("a", "olga", OrgRole.OWNER, True),
        ("a", "uma", OrgRole.USER_ADMIN, True),
        ("a", "mia", OrgRole.MEMBER, True),
        ("a", "otto", OrgRole.MEMBER, False),
        ("a", "ian", OrgRole.MEMBER, True),
        ("b", "bert", OrgRole.MEMBER, True),
    ]
    for slug, name, role, managed in members:
        organisations.add_member(ctx, slug, username=name, role=role, managed=managed, actor=None, client=CLIENT)
    return {name: signed_in(client, name) for name in ("olga", "uma", "ian")}


def reset(client: TestClient, username: str, headers: dict[str, str]) -> Any:
    return client.post(f"/api/v1/admin/users/{username}/mfa/reset", json={"reason": "ticket 7"}, headers=headers)


def test_a_user_admin_resets_only_managed_members_of_their_organisation(
    client: TestClient, two_orgs: dict[str, dict[str, str]]
) -> None:
    uma = two_orgs["uma"]
    assert reset(client, "mia", uma).status_code == 200
    for target in ("bert", "otto", "olga", "ian"):
        refused = reset(client, target, uma)
        assert refused.status_code == 403 and error_code(refused) == "not_permitted", target
    listed = {u["username"] for u in client.get("/api/v1/admin/users", headers=uma).json()["users"]}
    assert "mia" in listed and not listed & {"bert", "otto", "olga", "ian"}
    for path in ("/api/v1/admin/users/bert", "/api/v1/admin/users/bert/events", "/api/v1/admin/users/bert/block"):
        refused = client.get(path, headers=uma)
        assert refused.status_code == 403 and error_code(refused) == "not_permitted", path
    assert client.get("/api/v1/admin/users/mia", headers=uma).status_code == 200
    assert client.delete("/api/v1/admin/users/mia/block", headers=uma).status_code == 200
    assert client.delete("/api/v1/admin/users/mia/tokens", headers=uma).status_code == 200
    refused = client.delete("/api/v1/admin/users/bert/tokens", headers=uma)
    assert refused.status_code == 403 and error_code(refused) == "not_permitted"


def test_an_owner_resets_managed_members_but_never_an_instance_admin(
    client: TestClient, runtime: Runtime, two_orgs: dict[str, dict[str, str]]
) -> None:
    olga = two_orgs["olga"]
    assert reset(client, "uma", olga).status_code == 200
    assert reset(client, "mia", olga).status_code == 200
    for target in ("ian", "otto", "bert"):
        refused = reset(client, target, olga)
        assert refused.status_code == 403 and error_code(refused) == "not_permitted", target
    asked = client.post("/api/v1/admin/users/ian/mfa/require-registration", json={"reason": "ticket 7"}, headers=olga)
    assert asked.status_code == 403 and error_code(asked) == "not_permitted"
    # An instance administrator acts on everyone, organisations' owners and outside collaborators included.
    for target in ("olga", "otto", "bert"):
        assert reset(client, target, two_orgs["ian"]).status_code == 200, target


def test_only_owners_and_admins_change_an_organisations_policy(
    client: TestClient, runtime: Runtime, two_orgs: dict[str, dict[str, str]]
) -> None:
    enable_totp(client, runtime.services, two_orgs["olga"]["Authorization"].removeprefix("Bearer "))
    policy = {"two_factor": "required_for_all", "grace_period_days": 7}
    refused = client.put("/api/v1/admin/orgs/a/policy", json=policy, headers=two_orgs["uma"])
    assert refused.status_code == 403 and error_code(refused) == "not_permitted"
    changed = client.put("/api/v1/admin/orgs/a/policy", json=policy, headers=two_orgs["olga"])
    assert changed.status_code == 200, changed.text
    assert changed.json()["policy"]["two_factor"] == "required_for_all"
    other = client.put("/api/v1/admin/orgs/b/policy", json=policy, headers=two_orgs["olga"])
    assert other.status_code == 403 and error_code(other) == "not_permitted"
