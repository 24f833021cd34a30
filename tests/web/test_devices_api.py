"""Remembered browsers over the API: the signed-in user lists and forgets their own; an administrator forgets all of
a user's with a reason; an organisation's policy carries its days."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import InstanceRole, OrgRole
from nidan.services import accounts, organisations
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.helpers import auth_header, login, make_user
from tests.integration.devices_support import CLI, ELSEWHERE, admit, advance, events, remembered, remembering
from tests.web.api_support import assert_error

INT4_MAX = 2**31 - 1


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    """The instance remembers browsers for 30 days."""
    return remembering(runtime, 30)


@pytest.fixture
def ctx(app_runtime: Runtime) -> ServiceContext:
    return app_runtime.services


@pytest.fixture
def client(app_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=app_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def signed_in(client: TestClient, ctx: ServiceContext, username: str, role: InstanceRole = InstanceRole.MEMBER) -> Any:
    make_user(ctx, username, role=role)
    return auth_header(login(client, username)["session_token"])


def test_people_list_their_remembered_browsers(client: TestClient, ctx: ServiceContext) -> None:
    alice = signed_in(client, ctx, "alice")
    user = accounts.find_user(ctx, "alice")
    first = remembered(ctx, user)
    advance(ctx, 60)
    second = remembered(ctx, user, ELSEWHERE)
    listed = client.get("/api/v1/me/devices", headers=alice)
    assert listed.status_code == 200, listed.text
    body = listed.json()["devices"]
    assert [(d["id"], d["browser"], d["last_ip"]) for d in body] == [
        (second.device_id, "Firefox on Linux", ELSEWHERE.ip),
        (first.device_id, "Chrome on Windows", "198.51.100.23"),
    ]
    assert set(body[0]) == {"id", "browser", "first_used_at", "last_used_at", "last_ip", "expires_at"}
    assert body[0]["expires_at"].startswith(second.expires_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "token" not in listed.text.lower()

    bob = signed_in(client, ctx, "bob")
    assert client.get("/api/v1/me/devices", headers=bob).json() == {"devices": []}
    assert_error(client.get("/api/v1/me/devices"), 401, "authentication_required")


def test_people_forget_their_own_browser_only(client: TestClient, ctx: ServiceContext) -> None:
    alice = signed_in(client, ctx, "alice")
    bob = signed_in(client, ctx, "bob")
    alice_user = accounts.find_user(ctx, "alice")
    device = remembered(ctx, alice_user)

    assert_error(client.delete(f"/api/v1/me/devices/{device.device_id}", headers=bob), 404, "device_not_found")
    assert_error(client.delete(f"/api/v1/me/devices/{device.device_id}"), 401, "authentication_required")
    assert_error(client.delete(f"/api/v1/me/devices/{INT4_MAX}", headers=alice), 404, "device_not_found")
    for wrong in ("0", str(INT4_MAX + 1), "first"):
        assert_error(client.delete(f"/api/v1/me/devices/{wrong}", headers=alice), 422, "invalid_request")

    gone = client.delete(f"/api/v1/me/devices/{device.device_id}", headers=alice)
    assert gone.status_code == 204, gone.text
    assert client.get("/api/v1/me/devices", headers=alice).json() == {"devices": []}
    assert admit(ctx, alice_user.id, device.token) is None
    (event,) = events(ctx, EventType.REMEMBERED_DEVICE_FORGOTTEN)
    assert event.actor_username == "alice" and event.details["device_id"] == device.device_id
    assert_error(client.delete(f"/api/v1/me/devices/{device.device_id}", headers=alice), 404, "device_not_found")


def test_an_administrator_forgets_all_of_a_users_browsers(client: TestClient, ctx: ServiceContext) -> None:
    root = signed_in(client, ctx, "root", InstanceRole.ADMIN)
    alice = make_user(ctx, "alice")
    tokens = [remembered(ctx, alice).token, remembered(ctx, alice, ELSEWHERE).token]
    url = "/api/v1/admin/users/Alice/devices"
    answer = client.request("DELETE", url, json={"reason": "lost laptop, ticket 5"}, headers=root)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"username": "alice", "forgotten": 2}
    assert all(admit(ctx, alice.id, token) is None for token in tokens)
    (event,) = events(ctx, EventType.REMEMBERED_DEVICES_FORGOTTEN)
    assert event.actor_username == "root" and event.details == {"count": 2, "reason": "lost laptop, ticket 5"}

    for body in (None, {}, {"reason": "x"}, {"reason": "lost", "extra": 1}):
        assert_error(client.request("DELETE", url, json=body, headers=root), 422, "invalid_request")
    missing = client.request("DELETE", "/api/v1/admin/users/nobody/devices", json={"reason": "gone"}, headers=root)
    assert_error(missing, 404, "user_not_found")


def test_only_those_who_manage_a_user_forget_their_browsers(client: TestClient, ctx: ServiceContext) -> None:
    alice = make_user(ctx, "alice")
    device = remembered(ctx, alice)
    body = {"reason": "lost laptop"}
    bob = signed_in(client, ctx, "bob")
    refused = client.request("DELETE", "/api/v1/admin/users/alice/devices", json=body, headers=bob)
    assert_error(refused, 403, "admin_required")

    # The owner of an organisation alice is not in manages people, but not her.
    olga = signed_in(client, ctx, "olga")
    organisations.create(ctx, slug="team", name="Team", actor=None, client=CLI)
    organisations.add_member(ctx, "team", username="olga", role=OrgRole.OWNER, managed=True, actor=None, client=CLI)
    refused = client.request("DELETE", "/api/v1/admin/users/alice/devices", json=body, headers=olga)
    assert_error(refused, 403, "not_permitted")
    unknown = client.request("DELETE", "/api/v1/admin/users/nobody/devices", json=body, headers=olga)
    assert_error(unknown, 403, "not_permitted")  # an unknown name looks the same to them

    organisations.add_member(ctx, "team", username="alice", role=OrgRole.MEMBER, managed=True, actor=None, client=CLI)
    allowed = client.request("DELETE", "/api/v1/admin/users/alice/devices", json=body, headers=olga)
    assert allowed.status_code == 200 and allowed.json()["forgotten"] == 1
    assert admit(ctx, alice.id, device.token) is None


def test_an_organisations_policy_carries_its_remember_days(client: TestClient, ctx: ServiceContext) -> None:
    root = signed_in(client, ctx, "root", InstanceRole.ADMIN)
    assert client.post("/api/v1/admin/orgs", json={"slug": "team", "name": "Team"}, headers=root).status_code == 201
    url = "/api/v1/admin/orgs/team/policy"
    assert client.get("/api/v1/admin/orgs/team", headers=root).json()["policy"]["remember_device_days"] is None
    for days in (0, 14, 90, 14.0):
        changed = client.put(url, json={"two_factor": "optional", "remember_device_days": days}, headers=root)
        assert changed.status_code == 200, changed.text
        assert changed.json()["policy"]["remember_device_days"] == days
    for refused in (-1, 91, "7", True, 7.5):
        response = client.put(url, json={"two_factor": "optional", "remember_device_days": refused}, headers=root)
        assert_error(response, 422, "invalid_request")
    unset = client.put(url, json={"two_factor": "optional"}, headers=root)
    assert unset.json()["policy"]["remember_device_days"] is None  # the instance's setting, as for tolerance
    changed_events = events(ctx, EventType.ORGANISATION_POLICY_CHANGED)
    assert [e.details["remember_device_days"] for e in changed_events] == [0, 14, 90, 14, None]


def test_the_document_states_the_bounds(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    policy = spec["components"]["schemas"]["PolicyRequest"]["properties"]["remember_device_days"]
    (days,) = [branch for branch in policy["anyOf"] if branch.get("type") == "integer"]
    assert (days["minimum"], days["maximum"]) == (0, 90)
    (device_id,) = spec["paths"]["/api/v1/me/devices/{device_id}"]["delete"]["parameters"]
    assert (device_id["schema"]["minimum"], device_id["schema"]["maximum"]) == (1, INT4_MAX)
    admin = spec["paths"]["/api/v1/admin/users/{username}/devices"]["delete"]
    assert admin["requestBody"]["required"] is True and "200" in admin["responses"]
    for path, method in (
        ("/api/v1/me/devices", "get"),
        ("/api/v1/me/devices/{device_id}", "delete"),
        ("/api/v1/admin/users/{username}/devices", "delete"),
    ):
        operation = spec["paths"][path][method]
        assert operation["security"] == [{"session": []}], path
        assert "401" in operation["responses"], path
