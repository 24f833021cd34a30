"""The security log over HTTP: one's own at /api/v1/me/events and /security/events, everyone's for administrators."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole
from nidan.services import accounts
from tests.helpers import PASSWORD, auth_header, code_at, enable_totp, login, make_user
from tests.web.pages_support import enable_totp_on_page, signed_in_alice

STEP_UP_EXPIRED = 11 * 60  # seconds: past the default 10-minute step-up window, well within a session's life


def signed_in(client: TestClient, runtime: Runtime, username: str, role: InstanceRole = InstanceRole.MEMBER) -> Any:
    make_user(runtime.services, username, role=role)
    return auth_header(login(client, username)["session_token"])


def events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- /api/v1/me/events ---------------------------------------------------------------------------------------------


def test_my_events_need_a_session(client: TestClient) -> None:
    response = client.get("/api/v1/me/events")
    assert response.status_code == 401
    assert error_code(response) == "authentication_required"


def test_my_events_show_my_enrolment_with_its_request(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime, "alice")
    started = client.post("/api/v1/me/totp", headers=headers)
    activation = client.post(
        "/api/v1/me/totp/activate", json={"code": code_at(started.json()["secret"], runtime.services)}, headers=headers
    )
    assert activation.status_code == 200, activation.text
    mine = events(client.get("/api/v1/me/events", headers=headers))
    enrolled = next(e for e in mine if e["type"] == "totp.enrolled")
    assert enrolled["actor"] == enrolled["subject"] == {"id": 1, "username": "alice"}
    assert enrolled["client_ip"] == "testclient"
    assert enrolled["user_agent"] == "testclient"
    assert enrolled["correlation_id"] == activation.headers["x-correlation-id"]
    assert enrolled["details"] == {"recovery_codes": 16}
    assert enrolled["occurred_at"].endswith("Z") or enrolled["occurred_at"].endswith("+00:00")
    assert mine[-1]["type"] == "user.created"
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(seqs, reverse=True)  # newest first


def test_my_events_show_only_my_own(client: TestClient, runtime: Runtime) -> None:
    alice = signed_in(client, runtime, "alice")
    bob = signed_in(client, runtime, "bob")
    enable_totp(client, runtime.services, bob["Authorization"].removeprefix("Bearer "))
    for event in events(client.get("/api/v1/me/events", headers=alice)):
        assert "bob" not in (event["actor"] or {}).get("username", ""), event
        assert (event["subject"] or {}).get("username") == "alice", event
    bobs = events(client.get("/api/v1/me/events", headers=bob))
    assert "totp.enrolled" in [e["type"] for e in bobs]
    assert all((e["subject"] or {}).get("username") == "bob" for e in bobs)


def test_my_events_page_with_limit_and_before(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services, "alice")
    for password in ["new passphrase 1", "new passphrase 2", "new passphrase 3", PASSWORD]:
        accounts.set_password(runtime.services, username="alice", password=password)
    headers = auth_header(login(client, "alice")["session_token"])
    first = client.get("/api/v1/me/events?limit=2", headers=headers).json()
    assert len(first["events"]) == 2
    assert first["next_before"] == first["events"][-1]["seq"]
    second = client.get(f"/api/v1/me/events?limit=2&before={first['next_before']}", headers=headers).json()
    assert all(e["seq"] < first["next_before"] for e in second["events"])
    everything = client.get("/api/v1/me/events?limit=200", headers=headers).json()
    assert everything["next_before"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=ten", "before=0", "before=x"])
def test_my_events_refuse_bad_paging(client: TestClient, runtime: Runtime, query: str) -> None:
    headers = signed_in(client, runtime, "alice")
    response = client.get(f"/api/v1/me/events?{query}", headers=headers)
    assert response.status_code == 422
    assert error_code(response) == "invalid_request"


# --- /api/v1/admin/events ------------------------------------------------------------------------------------------


def test_admin_events_refuse_members(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime, "alice")
    response = client.get("/api/v1/admin/events", headers=headers)
    assert response.status_code == 403
    assert error_code(response) == "admin_required"
    # Being a member is the reason, whether or not they verified recently: no pointless step-up first.
    runtime.services.clock.advance(STEP_UP_EXPIRED)  # type: ignore[attr-defined]
    assert error_code(client.get("/api/v1/admin/events", headers=headers)) == "admin_required"
    assert client.get("/api/v1/admin/events").status_code == 401


def test_admin_events_need_a_recent_verification(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    assert client.get("/api/v1/admin/events", headers=headers).status_code == 200
    runtime.services.clock.advance(STEP_UP_EXPIRED)  # type: ignore[attr-defined]
    response = client.get("/api/v1/admin/events", headers=headers)
    assert response.status_code == 403
    assert error_code(response) == "reauthentication_required"


def test_admin_events_show_everyone_and_filter(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    make_user(ctx, "bob")
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    between = ctx.clock.now()
    accounts.set_password(ctx, username="bob", password="another fine passphrase")
    headers = signed_in(client, runtime, "root", InstanceRole.ADMIN)

    def listed(query: str = "") -> list[tuple[str, str | None]]:
        found = events(client.get(f"/api/v1/admin/events?{query}", headers=headers))
        return [(e["type"], (e["subject"] or {}).get("username")) for e in found]

    everything = listed()
    for expected in [("user.created", "alice"), ("user.created", "bob"), ("user.password_set", "bob")]:
        assert expected in everything
    assert set(listed("username=bob")) == {("user.created", "bob"), ("user.password_set", "bob")}
    assert set(listed("username=BOB&type=user.password_set")) == {("user.password_set", "bob")}
    assert [s for _, s in listed("type=user.created")] == ["root", "bob", "alice"]
    since = between.isoformat().replace("+00:00", "Z")
    assert ("user.created", "alice") not in listed(f"since={since}")
    assert ("user.password_set", "bob") in listed(f"since={since}")
    until = (between - timedelta(seconds=1)).isoformat().replace("+00:00", "")  # no offset: read as UTC
    assert set(listed(f"until={until}")) == {("user.created", "alice"), ("user.created", "bob")}
    assert listed("username=nobody") == []


@pytest.mark.parametrize(
    "query", ["type=no.such_type", "since=yesterday", "limit=500", "since=2026-03-15T00:00:00Z&until=2026-03-14T00:00Z"]
)
def test_admin_events_refuse_bad_filters(client: TestClient, runtime: Runtime, query: str) -> None:
    headers = signed_in(client, runtime, "root", InstanceRole.ADMIN)
    response = client.get(f"/api/v1/admin/events?{query}", headers=headers)
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_request"


def test_the_event_endpoints_are_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    mine = spec["paths"]["/api/v1/me/events"]["get"]
    admin = spec["paths"]["/api/v1/admin/events"]["get"]
    assert mine["summary"] and admin["summary"]
    assert {"200", "401", "422"} <= set(mine["responses"])
    assert {"200", "401", "403", "422"} <= set(admin["responses"])
    assert admin["responses"]["403"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    assert {p["name"] for p in admin["parameters"]} >= {"username", "type", "since", "until", "limit", "before"}
    assert "AuditEventsResponse" in spec["components"]["schemas"]


# --- the page ------------------------------------------------------------------------------------------------------


def test_the_security_log_page_lists_my_events(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    security = client.get("/security")
    assert 'href="/security/events"' in security.text
    enable_totp_on_page(client, runtime.services)
    page = client.get("/security/events")
    assert page.status_code == 200, page.text
    assert "<h1>Security log</h1>" in page.text
    assert "Account created" in page.text
    assert "Two-step verification turned on" in page.text
    assert "16 new recovery codes" in page.text
    assert '<td class="ip" data-label="IP address">testclient</td>' in page.text  # the test client's address
    # The device in words; the User-Agent it sent ("testclient") only in the title.
    assert '<span title="testclient">Unknown browser</span>' in page.text
    assert '<time datetime="2026-03-14T15:09:26+00:00">14 Mar 2026, 15:09:26 UTC</time>' in page.text
    assert page.headers["cache-control"] == "no-store"


def test_the_security_log_page_needs_a_session(client: TestClient) -> None:
    response = client.get("/security/events", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
