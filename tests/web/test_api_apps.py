"""Administrators register the relying applications that may call the verify API: ``/api/v1/admin/apps``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import InstanceRole
from nidan.services import audit
from nidan.services.context import ServiceContext
from tests.helpers import auth_header, login, make_user
from tests.web.tokens_support import assert_not_stored

APPS = "/api/v1/admin/apps"
KEY = re.compile(r"^nidan_key_[A-Za-z0-9_-]{43}$")
STALE = 11 * 60


def admin(client: TestClient, runtime: Runtime) -> dict[str, str]:
    make_user(runtime.services, "root", role=InstanceRole.ADMIN)
    return auth_header(login(client, "root")["session_token"])


def add(client: TestClient, headers: dict[str, str], name: str = "wiki") -> httpx.Response:
    response: httpx.Response = client.post(APPS, json={"name": name}, headers=headers)
    return response


def key_works(client: TestClient, api_key: str) -> bool:
    """Whether the verify API accepts the key (any answer but 401 app_key_invalid)."""
    response = client.post(
        "/api/v1/verify", json={"username": "nobody", "code": "123456"}, headers=auth_header(api_key)
    )
    if response.status_code == 401:
        assert response.json()["error"]["code"] == "app_key_invalid"
        return False
    assert response.status_code == 200, response.text
    return True


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def events(ctx: ServiceContext, event_type: EventType) -> list[Any]:
    return [r.event for r in reversed(audit.all_events(ctx, event_type=event_type))]


def test_an_admin_registers_an_application_and_sees_its_key_once(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = admin(client, runtime)
    response = add(client, headers, "Wiki")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "api_key", "created_at"}
    assert body["name"] == "Wiki"
    assert KEY.match(body["api_key"]), body["api_key"]
    assert datetime.fromisoformat(body["created_at"]) == ctx.clock.now()
    assert key_works(client, body["api_key"])

    listing = client.get(APPS, headers=headers)
    assert listing.status_code == 200, listing.text
    (listed,) = listing.json()["apps"]
    assert listed == {
        "id": body["id"],
        "name": "Wiki",
        "created_at": body["created_at"],
        "created_by": "root",
        "last_used_at": listed["last_used_at"],
    }
    assert datetime.fromisoformat(listed["last_used_at"]) == ctx.clock.now()
    assert body["api_key"] not in listing.text and body["api_key"][10:] not in listing.text
    assert_not_stored(runtime.engine, body["api_key"])

    (event,) = events(ctx, EventType.APPLICATION_ADDED)
    assert event.actor_username == "root" and event.subject_username is None
    assert dict(event.details) == {"app": "Wiki"}


def test_names_are_unique_ignoring_case(client: TestClient, runtime: Runtime) -> None:
    headers = admin(client, runtime)
    first = add(client, headers, "wiki").json()["api_key"]
    for same in ("wiki", "WIKI", "Wiki", " wiki "):
        response = add(client, headers, same)
        assert response.status_code == 409, (same, response.text)
        assert error_code(response) == "application_exists"
    assert [a["name"] for a in client.get(APPS, headers=headers).json()["apps"]] == ["wiki"]
    assert key_works(client, first)
    assert len(events(runtime.services, EventType.APPLICATION_ADDED)) == 1


def test_a_bad_name_is_422(client: TestClient, runtime: Runtime) -> None:
    headers = admin(client, runtime)
    for bad in ("", "-wiki", "wiki-", "my wiki", "wiki!", "a" * 65, "ウィキ", "wiki/app"):
        response = add(client, headers, bad)
        assert response.status_code == 422, (bad, response.text)
        assert error_code(response) == "invalid_request"
    extra = client.post(APPS, json={"name": "wiki", "scopes": ["all"]}, headers=headers)
    assert extra.status_code == 422
    assert client.get(APPS, headers=headers).json() == {"apps": []}


def test_the_list_is_sorted_by_name(client: TestClient, runtime: Runtime) -> None:
    headers = admin(client, runtime)
    for name in ("wiki", "Grafana", "vpn-gateway", "a.b_c"):
        assert add(client, headers, name).status_code == 201
    assert [a["name"] for a in client.get(APPS, headers=headers).json()["apps"]] == [
        "a.b_c",
        "Grafana",
        "vpn-gateway",
        "wiki",
    ]


def test_removing_an_application_stops_its_key_at_once(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = admin(client, runtime)
    wiki = add(client, headers, "wiki").json()["api_key"]
    vpn = add(client, headers, "vpn").json()["api_key"]
    response = client.delete(f"{APPS}/WIKI", headers=headers)
    assert response.status_code == 204 and response.content == b""
    assert not key_works(client, wiki)
    assert key_works(client, vpn)
    assert [a["name"] for a in client.get(APPS, headers=headers).json()["apps"]] == ["vpn"]
    (event,) = events(ctx, EventType.APPLICATION_REMOVED)
    assert event.actor_username == "root" and dict(event.details) == {"app": "wiki"}

    again = client.delete(f"{APPS}/wiki", headers=headers)
    assert again.status_code == 404 and error_code(again) == "application_not_found"
    assert "wiki" in again.json()["error"]["message"]
    # The name is free again, with a new key; the old one stays dead.
    renewed = add(client, headers, "wiki").json()["api_key"]
    assert renewed != wiki and key_works(client, renewed) and not key_works(client, wiki)


def test_unknown_or_invalid_names_are_not_found_or_invalid(client: TestClient, runtime: Runtime) -> None:
    headers = admin(client, runtime)
    missing = client.delete(f"{APPS}/nothing", headers=headers)
    assert missing.status_code == 404 and error_code(missing) == "application_not_found"
    invalid = client.delete(f"{APPS}/not%20valid!", headers=headers)
    assert invalid.status_code == 422 and error_code(invalid) == "invalid_request"


def test_only_a_recently_verified_admin_manages_applications(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = admin(client, runtime)
    key = add(client, headers, "wiki").json()["api_key"]
    make_user(ctx, "carol")
    member = auth_header(login(client, "carol")["session_token"])
    calls = [("POST", APPS, {"name": "mine"}), ("GET", APPS, None), ("DELETE", f"{APPS}/wiki", None)]
    for method, path, body in calls:
        refused = client.request(method, path, json=body, headers=member)
        assert refused.status_code == 403 and error_code(refused) == "admin_required", (method, refused.text)
        anonymous = client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, anonymous.text)
        # An application's own key is no administrator either.
        as_app = client.request(method, path, json=body, headers=auth_header(key))
        assert as_app.status_code == 401, (method, as_app.text)
    ctx.clock.advance(STALE)  # type: ignore[attr-defined]
    for method, path, body in calls:
        stale = client.request(method, path, json=body, headers=headers)
        assert stale.status_code == 403 and error_code(stale) == "reauthentication_required", method
    assert key_works(client, key)
    assert [e.details["app"] for e in events(ctx, EventType.APPLICATION_ADDED)] == ["wiki"]
    assert events(ctx, EventType.APPLICATION_REMOVED) == []
