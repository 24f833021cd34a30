"""A person runs their own account: sees their sessions and ends one (a lost laptop), signs out everywhere else,
changes their password (which ends every other session and forgets remembered browsers)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.services import audit
from tests.helpers import PASSWORD, auth_header, login, make_user
from tests.web.api_support import assert_error
from tests.web.pages_support import signed_in_alice, submit

LAPTOP = {"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/126.0.0.0 Safari/537.36"}  # fmt: skip
NEW_PASSWORD = "a new and longer passphrase"


def two_sessions(client: TestClient, runtime: Runtime) -> tuple[dict[str, str], dict[str, str]]:
    """alice signed in twice: here, and on a laptop (Chrome on Windows)."""
    make_user(runtime.services)
    here = auth_header(login(client)["session_token"])
    laptop = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}, headers=LAPTOP)
    return here, auth_header(laptop.json()["session_token"])


def test_a_person_sees_their_sessions_and_ends_the_lost_one(client: TestClient, runtime: Runtime) -> None:
    here, laptop = two_sessions(client, runtime)
    listed = client.get("/api/v1/me/sessions", headers=here).json()["sessions"]
    assert len(listed) == 2
    (mine,) = [s for s in listed if s["current"]]
    (other,) = [s for s in listed if not s["current"]]
    assert other["device"] == "Chrome on Windows" and other["signed_in_at"] and other["last_seen_at"]
    assert client.delete(f"/api/v1/me/sessions/{other['id']}", headers=here).status_code == 204
    assert client.get("/api/v1/me", headers=laptop).status_code == 401  # the laptop is signed out at once
    assert client.get("/api/v1/me", headers=here).status_code == 200
    assert_error(client.delete(f"/api/v1/me/sessions/{other['id']}", headers=here), 404, "session_not_found")
    assert mine["id"] != other["id"]


def test_nobody_ends_someone_elses_session(client: TestClient, runtime: Runtime) -> None:
    here, _ = two_sessions(client, runtime)
    make_user(runtime.services, "bob")
    bobs = auth_header(login(client, "bob")["session_token"])
    bob_id = client.get("/api/v1/me/sessions", headers=bobs).json()["sessions"][0]["id"]
    assert_error(client.delete(f"/api/v1/me/sessions/{bob_id}", headers=here), 404, "session_not_found")
    assert client.get("/api/v1/me", headers=bobs).status_code == 200


def test_sign_out_everywhere_else(client: TestClient, runtime: Runtime) -> None:
    here, laptop = two_sessions(client, runtime)
    ended = client.post("/api/v1/me/sessions/revoke-others", headers=here)
    assert ended.status_code == 200 and ended.json() == {"ended": 1}
    assert client.get("/api/v1/me", headers=laptop).status_code == 401
    assert client.get("/api/v1/me", headers=here).status_code == 200


def test_changing_the_password_ends_the_other_sessions(client: TestClient, runtime: Runtime) -> None:
    here, laptop = two_sessions(client, runtime)
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    changed = client.post("/api/v1/me/password", json=body, headers=here)
    assert changed.status_code == 200 and changed.json() == {"sessions_ended": 1, "browsers_forgotten": 0}
    assert client.get("/api/v1/me", headers=laptop).status_code == 401
    assert client.get("/api/v1/me", headers=here).status_code == 200
    assert login(client, "alice", NEW_PASSWORD)["status"] == "authenticated"
    old = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert_error(old, 401, "invalid_credentials")
    assert audit.all_events(runtime.services, username="alice", event_type=EventType.PASSWORD_CHANGED)


def test_a_wrong_current_password_is_refused_and_counted(client: TestClient, runtime: Runtime) -> None:
    here, _ = two_sessions(client, runtime)
    wrong = {"current_password": "not it", "new_password": NEW_PASSWORD}
    assert_error(client.post("/api/v1/me/password", json=wrong, headers=here), 401, "invalid_credentials")
    assert_error(client.post("/api/v1/me/password", json=wrong, headers=here), 401, "invalid_credentials")
    blocked = client.post("/api/v1/me/password", json=wrong, headers=here)  # one tolerated, the second blocks
    assert_error(blocked, 429, "rate_limited")
    assert login(client)["status"] == "authenticated"  # nothing changed


def test_a_weak_or_same_new_password_is_refused(client: TestClient, runtime: Runtime) -> None:
    here, _ = two_sessions(client, runtime)
    short = {"current_password": PASSWORD, "new_password": "short"}  # the schema's minimum length
    assert_error(client.post("/api/v1/me/password", json=short, headers=here), 422, "invalid_request")
    same = {"current_password": PASSWORD, "new_password": PASSWORD}
    assert_error(client.post("/api/v1/me/password", json=same, headers=here), 422, "weak_password")


def test_changing_the_password_needs_a_recent_verification(client: TestClient, runtime: Runtime) -> None:
    here, _ = two_sessions(client, runtime)
    runtime.services.clock.advance(3600)  # type: ignore[attr-defined]
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert_error(client.post("/api/v1/me/password", json=body, headers=here), 403, "reauthentication_required")


def test_the_pages_list_and_end_sessions_and_change_the_password(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}, headers=LAPTOP)
    page = client.get("/security/sessions")
    assert page.status_code == 200 and "Chrome on Windows" in page.text and "This one" in page.text
    others = submit(client, page, "/security/sessions/end-others")
    assert others.status_code == 303 and others.headers["location"] == "/security/sessions?notice=sessions_ended"
    assert "Chrome on Windows" not in client.get("/security/sessions").text
    form = client.get("/security/password")
    assert form.status_code == 200 and 'autocomplete="new-password"' in form.text
    wrong = submit(client, form, "/security/password", current_password="nope", new_password=NEW_PASSWORD)
    assert wrong.status_code == 401 and "invalid_credentials" in wrong.text
    done = submit(client, form, "/security/password", current_password=PASSWORD, new_password=NEW_PASSWORD)
    assert done.status_code == 303 and done.headers["location"] == "/security?notice=password_changed"
