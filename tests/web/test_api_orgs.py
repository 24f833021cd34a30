"""Organisations over the API: create, list, show, members and roles, and the two-step policy with its preview."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, OrgRole
from nidan.services import audit, organisations, user_admin
from nidan.services.context import ServiceContext
from tests.helpers import auth_header, enable_totp, login, make_user

CLIENT = ClientInfo()
ORGS = "/api/v1/admin/orgs"


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def session_of(client: TestClient, username: str) -> str:
    token: str = login(client, username)["session_token"]
    return token


def root_with_totp(client: TestClient, ctx: ServiceContext) -> dict[str, str]:
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    token = session_of(client, "root")
    enable_totp(client, ctx, token)
    return auth_header(token)


def add(ctx: ServiceContext, slug: str, username: str, role: OrgRole = OrgRole.MEMBER, managed: bool = True) -> None:
    organisations.add_member(ctx, slug, username=username, role=role, managed=managed, actor=None, client=CLIENT)


# --- creating and reading ---------------------------------------------------------------------------------------------


def test_an_instance_admin_creates_an_organisation_and_owns_it(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = root_with_totp(client, ctx)
    created = client.post(ORGS, json={"slug": "Platform-Team", "name": "  Platform   team "}, headers=root)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["slug"] == "platform-team" and body["name"] == "Platform team" and body["members"] == 1
    assert body["policy"] == {
        "two_factor": "optional",
        "grace_period_days": 0,
        "allowed_methods": ["totp", "recovery_code"],
        "tolerated_failures": None,
        "remember_device_days": None,
    }
    shown = client.get(f"{ORGS}/platform-team", headers=root).json()
    assert [(m["username"], m["role"], m["managed"], m["two_factor"]) for m in shown["member_list"]] == [
        ("root", "owner", True, True)
    ]

    taken = client.post(ORGS, json={"slug": "platform-team", "name": "Again"}, headers=root)
    assert taken.status_code == 409 and error_code(taken) == "organisation_exists"
    bad = client.post(ORGS, json={"slug": "-no-", "name": "Bad"}, headers=root)
    assert bad.status_code == 422 and error_code(bad) == "invalid_request"
    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.ORGANISATION_CREATED)]
    assert event.actor_username == "root" and event.details["organisation"] == "platform-team"


def test_only_instance_admins_create_and_others_see_what_they_manage(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = root_with_totp(client, ctx)
    for name in ("olga", "uma", "mia"):
        make_user(ctx, name)
    for slug in ("a", "b", "c"):
        organisations.create(ctx, slug=slug, name=slug.upper(), actor=None, client=CLIENT)
    add(ctx, "a", "olga", OrgRole.OWNER)
    add(ctx, "b", "uma", OrgRole.USER_ADMIN)
    add(ctx, "c", "olga", OrgRole.MEMBER)
    olga = auth_header(session_of(client, "olga"))

    refused = client.post(ORGS, json={"slug": "d", "name": "D"}, headers=olga)
    assert refused.status_code == 403 and error_code(refused) == "not_permitted"
    assert [o["slug"] for o in client.get(ORGS, headers=root).json()["organisations"]] == ["a", "b", "c", "default"]
    assert [o["slug"] for o in client.get(ORGS, headers=olga).json()["organisations"]] == ["a"]
    uma = auth_header(session_of(client, "uma"))
    assert [o["slug"] for o in client.get(ORGS, headers=uma).json()["organisations"]] == ["b"]
    # A user_admin sees the organisation they manage, and no other.
    assert client.get(f"{ORGS}/b", headers=uma).status_code == 200
    for slug in ("a", "c"):
        other = client.get(f"{ORGS}/{slug}", headers=olga if slug == "c" else uma)
        assert other.status_code == 403 and error_code(other) == "not_permitted", slug
    # A plain member has no administrative role at all.
    mia = auth_header(session_of(client, "mia"))
    for method, path in (("GET", ORGS), ("GET", f"{ORGS}/a"), ("POST", ORGS)):
        refused = client.request(method, path, json={"slug": "x", "name": "X"}, headers=mia)
        assert refused.status_code == 403 and error_code(refused) == "admin_required", path
    missing = client.get(f"{ORGS}/nope", headers=root)
    assert missing.status_code == 404 and error_code(missing) == "organisation_not_found"


def test_every_call_needs_step_up_and_a_session(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = root_with_totp(client, ctx)
    ctx.clock.advance(11 * 60)  # type: ignore[attr-defined]
    calls = [
        ("GET", ORGS, None),
        ("POST", ORGS, {"slug": "x", "name": "X"}),
        ("GET", f"{ORGS}/default", None),
        ("PUT", f"{ORGS}/default/policy", {"two_factor": "optional"}),
        ("GET", f"{ORGS}/default/policy/preview?two_factor=required_for_all", None),
        ("PUT", f"{ORGS}/default/members/root", {"role": "owner"}),
        ("DELETE", f"{ORGS}/default/members/root", None),
    ]
    for method, path, body in calls:
        stale = client.request(method, path, json=body, headers=root)
        assert stale.status_code == 403 and error_code(stale) == "reauthentication_required", path
        anonymous = client.request(method, path, json=body)
        assert anonymous.status_code == 401 and error_code(anonymous) == "authentication_required", path


# --- the policy and its preview ------------------------------------------------------------------------------------


def test_the_preview_lists_exactly_who_will_be_asked(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = root_with_totp(client, ctx)
    for name in ("ann", "ben", "cat", "dan", "eve"):
        make_user(ctx, name)
    enable_totp(client, ctx, session_of(client, "ben"))
    enable_totp(client, ctx, session_of(client, "dan"))
    client.post(ORGS, json={"slug": "eng", "name": "Engineering"}, headers=root)
    add(ctx, "eng", "ann")  # no 2FA
    add(ctx, "eng", "ben")  # 2FA on
    add(ctx, "eng", "cat", OrgRole.USER_ADMIN)  # no 2FA, an administrative role
    add(ctx, "eng", "dan")  # 2FA on, asked to register again
    user_admin.require_registration(ctx, username="dan", actor=None, client=CLIENT, reason="new phone")
    # eve is not a member: never listed

    def preview(**params: object) -> list[tuple[str, str, str, str | None]]:
        answer = client.get(f"{ORGS}/eng/policy/preview", params=params, headers=root)
        assert answer.status_code == 200, answer.text
        return [(e["username"], e["role"], e["outcome"], e["until"]) for e in answer.json()["will_be_asked"]]

    # Only those the proposed policy requires 2FA of are listed (dan is asked anyway, by an administrator).
    assert preview(two_factor="optional") == []
    assert preview(two_factor="required_for_admins") == [("cat", "user_admin", "setup_at_next_sign_in", None)]
    assert preview(two_factor="required_for_all") == [
        ("ann", "member", "setup_at_next_sign_in", None),
        ("cat", "user_admin", "setup_at_next_sign_in", None),
        ("dan", "member", "setup_at_next_sign_in", None),
    ]
    until = (ctx.clock.now() + timedelta(days=7)).isoformat().replace("+00:00", "Z")
    week = preview(two_factor="required_for_all", grace_period_days=7)
    assert [(n, o) for n, _, o, _ in week] == [
        ("ann", "reminded_until"),
        ("cat", "reminded_until"),
        ("dan", "setup_at_next_sign_in"),
    ]
    assert week[0][3] is not None and week[0][3].replace("+00:00", "Z") == until
    # The preview changed nothing.
    assert client.get(f"{ORGS}/eng", headers=root).json()["policy"]["two_factor"] == "optional"
    assert login(client, "ann")["status"] == "authenticated"

    # Without grace_period_days the organisation's own grace period is used.
    client.put(f"{ORGS}/eng/policy", json={"two_factor": "optional", "grace_period_days": 3}, headers=root)
    assert {o for _, _, o, _ in preview(two_factor="required_for_all") if o != "setup_at_next_sign_in"} == {
        "reminded_until"
    }
    bad = client.get(f"{ORGS}/eng/policy/preview", params={"two_factor": "always"}, headers=root)
    assert bad.status_code == 422


def test_what_the_preview_says_is_what_sign_in_does(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = root_with_totp(client, ctx)
    make_user(ctx, "ann")
    client.post(ORGS, json={"slug": "eng", "name": "Engineering"}, headers=root)
    add(ctx, "eng", "ann")
    policy = {"two_factor": "required_for_all", "grace_period_days": 0}
    changed = client.put(f"{ORGS}/eng/policy", json=policy, headers=root)
    assert changed.status_code == 200, changed.text
    assert changed.json()["policy"]["two_factor"] == "required_for_all"
    answer = login(client, "ann")
    assert answer["status"] == "mfa_setup_required" and answer["reason"] == "policy"
    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.ORGANISATION_POLICY_CHANGED)]
    assert event.details["from"] == "optional" and event.details["to"] == "required_for_all"


def test_an_admin_without_2fa_cannot_require_it_until_they_set_it_up(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    token = session_of(client, "root")
    root = auth_header(token)
    assert client.post(ORGS, json={"slug": "eng", "name": "Engineering"}, headers=root).status_code == 201
    for two_factor in ("required_for_all", "required_for_admins"):
        refused = client.put(f"{ORGS}/eng/policy", json={"two_factor": two_factor}, headers=root)
        assert refused.status_code == 409 and error_code(refused) == "enable_two_factor_first", two_factor
        assert "first" in refused.json()["error"]["message"]
    # An organisation they do not belong to: they would not be asked, so nothing stops them.
    organisations.create(ctx, slug="ops", name="Ops", actor=None, client=CLIENT)
    assert client.put(f"{ORGS}/ops/policy", json={"two_factor": "required_for_all"}, headers=root).status_code == 200

    enable_totp(client, ctx, token)
    done = client.put(
        f"{ORGS}/eng/policy",
        json={"two_factor": "required_for_all", "grace_period_days": 14, "tolerated_failures": 0},
        headers=root,
    )
    assert done.status_code == 200, done.text
    assert done.json()["policy"] == {
        "two_factor": "required_for_all",
        "grace_period_days": 14,
        "allowed_methods": ["totp", "recovery_code"],
        "tolerated_failures": 0,
        "remember_device_days": None,
    }


def test_policy_fields_are_checked(client: TestClient, runtime: Runtime) -> None:
    root = root_with_totp(client, runtime.services)
    for body in (
        {"two_factor": "sometimes"},
        {"two_factor": "optional", "grace_period_days": -1},
        {"two_factor": "optional", "grace_period_days": 366},
        {"two_factor": "optional", "allowed_methods": ["recovery_code"]},
        {"two_factor": "optional", "allowed_methods": ["sms"]},
        {"two_factor": "optional", "tolerated_failures": 1001},
        {"two_factor": "optional", "surprise": True},
    ):
        refused = client.put(f"{ORGS}/default/policy", json=body, headers=root)
        assert refused.status_code == 422 and error_code(refused) == "invalid_request", body


def test_an_organisation_may_not_tolerate_more_than_the_instance(client: TestClient, runtime: Runtime) -> None:
    """A laxer count used to be stored and shown, though the backoff never applied it."""
    root = root_with_totp(client, runtime.services)
    instance = runtime.services.backoff.tolerated_failures
    laxer = client.put(
        f"{ORGS}/default/policy", json={"two_factor": "optional", "tolerated_failures": instance + 1}, headers=root
    )
    assert laxer.status_code == 422 and error_code(laxer) == "tolerance_above_instance"
    assert f"at most as many wrong codes as the instance does ({instance})" in laxer.json()["error"]["message"]
    shown = client.get(f"{ORGS}/default", headers=root).json()["policy"]
    assert shown["tolerated_failures"] is None
    same = client.put(
        f"{ORGS}/default/policy", json={"two_factor": "optional", "tolerated_failures": instance}, headers=root
    )
    assert same.status_code == 200 and same.json()["policy"]["tolerated_failures"] == instance


# --- members ----------------------------------------------------------------------------------------------------------


def test_members_are_added_changed_and_removed(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = root_with_totp(client, ctx)
    make_user(ctx, "ann")
    client.post(ORGS, json={"slug": "eng", "name": "Engineering"}, headers=root)

    added = client.put(f"{ORGS}/eng/members/ANN", json={"role": "member", "managed": False}, headers=root)
    assert added.status_code == 201, added.text
    assert added.json() == {
        "username": "ann", "role": "member", "managed": False, "two_factor": False, "grace_started_at": None
    }  # fmt: skip
    changed = client.put(f"{ORGS}/eng/members/ann", json={"role": "user_admin"}, headers=root)
    assert changed.status_code == 200 and changed.json()["role"] == "user_admin" and changed.json()["managed"]
    members = client.get(f"{ORGS}/eng", headers=root).json()["member_list"]
    assert {m["username"]: m["role"] for m in members} == {"ann": "user_admin", "root": "owner"}

    assert client.delete(f"{ORGS}/eng/members/ann", headers=root).status_code == 204
    again = client.delete(f"{ORGS}/eng/members/ann", headers=root)
    assert again.status_code == 404 and error_code(again) == "member_not_found"
    nobody = client.put(f"{ORGS}/eng/members/nobody", json={}, headers=root)
    assert nobody.status_code == 404 and error_code(nobody) == "user_not_found"
    bad = client.put(f"{ORGS}/eng/members/root", json={"role": "king"}, headers=root)
    assert bad.status_code == 422
    kinds = [
        r.event.event_type for r in audit.all_events(ctx, username="ann") if r.event.event_type.startswith("member")
    ]
    assert kinds == ["member.removed", "member.changed", "member.added"]


def test_the_last_owner_is_neither_demoted_nor_removed(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = root_with_totp(client, ctx)
    make_user(ctx, "olga")
    client.post(ORGS, json={"slug": "eng", "name": "Engineering"}, headers=root)
    demoted = client.put(f"{ORGS}/eng/members/root", json={"role": "admin"}, headers=root)
    assert demoted.status_code == 409 and error_code(demoted) == "last_owner"
    removed = client.delete(f"{ORGS}/eng/members/root", headers=root)
    assert removed.status_code == 409 and error_code(removed) == "last_owner"

    assert client.put(f"{ORGS}/eng/members/olga", json={"role": "owner"}, headers=root).status_code == 201
    assert client.put(f"{ORGS}/eng/members/root", json={"role": "member"}, headers=root).status_code == 200
    olga = auth_header(session_of(client, "olga"))
    last = client.delete(f"{ORGS}/eng/members/olga", headers=olga)
    assert last.status_code == 409 and error_code(last) == "last_owner"
    assert client.delete(f"{ORGS}/eng/members/root", headers=olga).status_code == 204


def test_a_user_admin_manages_members_but_not_owners_admins_or_settings(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    for name in ("olga", "uma", "mia", "new"):
        make_user(ctx, name)
    organisations.create(ctx, slug="eng", name="Engineering", actor=None, client=CLIENT)
    add(ctx, "eng", "olga", OrgRole.OWNER)
    add(ctx, "eng", "uma", OrgRole.USER_ADMIN)
    add(ctx, "eng", "mia")
    uma = auth_header(session_of(client, "uma"))

    # Whether the organisation manages an account is an instance administrator's decision: not a user_admin's.
    claimed = client.put(f"{ORGS}/eng/members/new", json={"role": "member"}, headers=uma)
    assert claimed.status_code == 403 and error_code(claimed) == "not_permitted"
    collaborator = {"role": "member", "managed": False}
    assert client.put(f"{ORGS}/eng/members/new", json=collaborator, headers=uma).status_code == 201
    assert client.put(f"{ORGS}/eng/members/mia", json={"role": "user_admin"}, headers=uma).status_code == 200
    for path, body in (
        (f"{ORGS}/eng/members/mia", {"role": "admin"}),
        (f"{ORGS}/eng/members/olga", {"role": "member"}),
    ):
        refused = client.put(path, json=body, headers=uma)
        assert refused.status_code == 403 and error_code(refused) == "not_permitted", path
    refused = client.delete(f"{ORGS}/eng/members/olga", headers=uma)
    assert refused.status_code == 403 and error_code(refused) == "not_permitted"
    assert client.delete(f"{ORGS}/eng/members/new", headers=uma).status_code == 204
    # Previewing is allowed (the console shows it); changing the policy is not.
    assert client.get(f"{ORGS}/eng/policy/preview?two_factor=required_for_all", headers=uma).status_code == 200
    refused = client.put(f"{ORGS}/eng/policy", json={"two_factor": "optional"}, headers=uma)
    assert refused.status_code == 403 and error_code(refused) == "not_permitted"
