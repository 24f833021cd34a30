"""Personal access tokens and app passwords over the API: created with a recent verification and shown once, stored
only as a keyed hash, listed without their secrets, revoked by their owner or all at once by an administrator."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.config import Settings
from nidan.core.access_tokens import MAX_LIVE_TOKENS, Scope, TokenKind
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, User
from nidan.services import audit, tokens
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, auth_header, basic_header, login, make_user
from tests.web.tokens_support import assert_not_stored

TOKENS = "/api/v1/me/tokens"
APP_PASSWORDS = "/api/v1/me/app-passwords"
GATE = "/auth/basic"
#: Past the default 10-minute step-up window.
STALE = 11 * 60
PAT = re.compile(r"^nidan_pat_[A-Za-z0-9_-]{43}$")
APP = re.compile(r"^nidan_app_[A-Za-z0-9_-]{43}$")


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def signed_in(client: TestClient, runtime: Runtime, username: str = "alice") -> dict[str, str]:
    make_user(runtime.services, username)
    return auth_header(login(client, username)["session_token"])


def create(client: TestClient, headers: dict[str, str], **body: Any) -> httpx.Response:
    body.setdefault("name", "laptop git")
    body.setdefault("scopes", ["read_repository"])
    response: httpx.Response = client.post(TOKENS, json=body, headers=headers)
    return response


def created(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = create(client, headers, **body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def listed(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get(TOKENS, headers=headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["tokens"]
    return found


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


def gate_status(client: TestClient, secret: str, scope: str = "read_repository") -> int:
    response: httpx.Response = client.get(GATE, params={"scope": scope}, headers=basic_header("git", secret))
    return response.status_code


def today(ctx: ServiceContext) -> datetime:
    now = ctx.clock.now()
    return datetime(now.year, now.month, now.day, tzinfo=UTC)


def seed_tokens(ctx: ServiceContext, user: User, count: int, expires_at: datetime | None = None) -> None:
    """``count`` live tokens written straight through the repository: cheap, no audit events."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        for index in range(count):
            token_hash = ctx.hash_token(f"seed-{user.id}-{index}-{expires_at}", "seed")
            uow.access_tokens.add(
                user.id, TokenKind.PERSONAL, f"seed {index}", token_hash, [Scope.API], now, expires_at
            )
        uow.commit()


# --- creating ------------------------------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_only_its_keyed_hash_is_stored(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = signed_in(client, runtime)
    response = create(client, headers, name="  laptop \t git ", scopes=["api", "read_repository", "api"])
    assert response.status_code == 201, response.text
    body = response.json()
    secret = body["token"]
    assert PAT.match(secret), secret
    assert body["name"] == "laptop git"
    assert body["kind"] == "personal_access_token"
    assert body["scopes"] == ["read_repository", "api"]
    assert datetime.fromisoformat(body["created_at"]) == ctx.clock.now()
    # No date asked for: the longest lifetime allowed (365 days by default), at 00:00 UTC.
    assert datetime.fromisoformat(body["expires_at"]) == today(ctx) + timedelta(days=365)
    assert set(body) == {"id", "token", "name", "kind", "scopes", "created_at", "expires_at"}

    # It works, for the scopes it carries.
    assert gate_status(client, secret, "read_repository") == 200
    assert gate_status(client, secret, "api") == 200
    # The list and every table never hold it.
    listing = client.get(TOKENS, headers=headers)
    assert secret not in listing.text and secret.removeprefix("nidan_pat_") not in listing.text
    assert "token" not in listing.json()["tokens"][0]
    assert_not_stored(runtime.engine, secret)
    # Another token never shares the secret.
    second = created(client, headers)
    assert second["token"] != secret and second["id"] != body["id"]


def test_an_app_password_carries_every_scope(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    response = client.post(APP_PASSWORDS, json={"name": "Thunderbird"}, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert APP.match(body["token"]), body["token"]
    assert body["kind"] == "app_password"
    assert body["scopes"] == [s.value for s in Scope]
    for scope in Scope:
        assert gate_status(client, body["token"], scope.value) == 200
    assert_not_stored(runtime.engine, body["token"])
    # Scopes cannot be chosen for an app password.
    picky = client.post(APP_PASSWORDS, json={"name": "x", "scopes": ["api"]}, headers=headers)
    assert picky.status_code == 422 and error_code(picky) == "invalid_request"


def test_creating_needs_a_recent_verification(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    session = login(client)["session_token"]
    advance(ctx, STALE)
    requests = [(TOKENS, {"name": "ci", "scopes": ["api"]}), (APP_PASSWORDS, {"name": "ci"})]
    for path, body in requests:
        stale = client.post(path, json=body, headers=auth_header(session))
        assert stale.status_code == 403, stale.text
        assert error_code(stale) == "reauthentication_required"
    # Nothing was created.
    assert listed(client, auth_header(session)) == []
    assert audit.all_events(ctx, event_type=EventType.TOKEN_CREATED) == []
    # Listing needs no step-up (nor does revoking); a confirmation with the password gives it back.
    reauth = client.post(
        "/api/v1/auth/reauth", json={"method": "password", "password": PASSWORD}, headers=auth_header(session)
    )
    assert reauth.status_code == 200, reauth.text
    fresh = auth_header(reauth.json()["session_token"])
    for path, body in requests:
        assert client.post(path, json=body, headers=fresh).status_code == 201, path


def test_signed_out_requests_are_refused(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    for method, path in (("POST", TOKENS), ("POST", APP_PASSWORDS), ("GET", TOKENS), ("DELETE", f"{TOKENS}/1")):
        response = client.request(method, path, json={"name": "x", "scopes": ["api"]})
        assert response.status_code == 401, (method, path, response.text)
        assert error_code(response) == "authentication_required"


INVALID: dict[str, dict[str, Any]] = {
    "unknown scope": {"name": "ci", "scopes": ["admin"]},
    "one unknown scope": {"name": "ci", "scopes": ["api", "sudo"]},
    "no scope": {"name": "ci", "scopes": []},
    "scopes missing": {"name": "ci"},
    "scopes not a list": {"name": "ci", "scopes": "api"},
    "empty name": {"name": "", "scopes": ["api"]},
    "blank name": {"name": "   \t ", "scopes": ["api"]},
    "long name": {"name": "x" * 101, "scopes": ["api"]},
    "name missing": {"scopes": ["api"]},
    "not a date": {"name": "ci", "scopes": ["api"], "expires_at": "soon"},
    "unknown field": {"name": "ci", "scopes": ["api"], "kind": "app_password"},
}


def test_invalid_requests_are_422_and_create_nothing(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    for what, body in INVALID.items():
        response = client.post(TOKENS, json=body, headers=headers)
        assert response.status_code == 422, (what, response.text)
        assert error_code(response) == "invalid_request", what
        assert response.json()["error"]["message"], what
    blank = client.post(APP_PASSWORDS, json={"name": "  "}, headers=headers)
    assert blank.status_code == 422 and error_code(blank) == "invalid_request"
    assert listed(client, headers) == []


def test_a_name_with_a_nul_character_is_refused_not_a_server_error(client: TestClient, runtime: Runtime) -> None:
    """PostgreSQL cannot store NUL in text: the name must be refused as invalid (422) on every back end, never
    reach the database as a 500."""
    headers = signed_in(client, runtime)
    token = client.post(TOKENS, json={"name": "laptop\x00git", "scopes": ["api"]}, headers=headers)
    assert token.status_code == 422, token.text
    assert error_code(token) == "invalid_request"
    app_password = client.post(APP_PASSWORDS, json={"name": "mail\x00"}, headers=headers)
    assert app_password.status_code == 422, app_password.text
    assert listed(client, headers) == []


def test_the_expiry_date_is_in_the_future_and_within_the_cap(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = signed_in(client, runtime)
    day = today(ctx)
    tomorrow = created(client, headers, expires_at=(day + timedelta(days=1)).date().isoformat())
    assert datetime.fromisoformat(tomorrow["expires_at"]) == day + timedelta(days=1)
    last = created(client, headers, expires_at=(day + timedelta(days=365)).date().isoformat())
    assert datetime.fromisoformat(last["expires_at"]) == day + timedelta(days=365)

    too_late = create(client, headers, expires_at=(day + timedelta(days=366)).date().isoformat())
    assert too_late.status_code == 422 and error_code(too_late) == "invalid_request"
    message = too_late.json()["error"]["message"]
    assert "365 days" in message and (day + timedelta(days=365)).date().isoformat() in message
    for past in (day, day - timedelta(days=1)):
        refused = create(client, headers, expires_at=past.date().isoformat())
        assert refused.status_code == 422 and error_code(refused) == "invalid_request"
        assert "future" in refused.json()["error"]["message"]
    app_password = client.post(
        APP_PASSWORDS, json={"name": "x", "expires_at": (day + timedelta(days=400)).date().isoformat()}, headers=headers
    )
    assert app_password.status_code == 422 and "365 days" in app_password.json()["error"]["message"]
    assert len(listed(client, headers)) == 2


class TestWithAThirtyDayCap:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        security = settings.security.model_copy(update={"token_max_lifetime_days": 30})
        return settings.model_copy(update={"security": security})

    def test_the_cap_is_the_default_and_the_limit(self, client: TestClient, runtime: Runtime) -> None:
        ctx = runtime.services
        headers = signed_in(client, runtime)
        day = today(ctx)
        assert datetime.fromisoformat(created(client, headers)["expires_at"]) == day + timedelta(days=30)
        refused = create(client, headers, expires_at=(day + timedelta(days=31)).date().isoformat())
        assert refused.status_code == 422
        message = refused.json()["error"]["message"]
        assert "30 days" in message and (day + timedelta(days=30)).date().isoformat() in message


class TestWithoutACap:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        security = settings.security.model_copy(update={"token_max_lifetime_days": 0})
        return settings.model_copy(update={"security": security})

    def test_a_token_without_a_date_lives_until_revoked(self, client: TestClient, runtime: Runtime) -> None:
        ctx = runtime.services
        headers = signed_in(client, runtime)
        forever = created(client, headers)
        assert forever["expires_at"] is None
        far = created(client, headers, expires_at=(today(ctx) + timedelta(days=40 * 365)).date().isoformat())
        assert far["expires_at"] is not None
        # A date in the past is still refused.
        past = create(client, headers, expires_at="2020-01-01")
        assert past.status_code == 422
        advance(ctx, 20 * 365 * 86400)
        assert gate_status(client, forever["token"]) == 200
        assert gate_status(client, far["token"]) == 200


# --- listing -------------------------------------------------------------------------------------------------------


def test_the_list_shows_kind_scopes_use_and_expiry_newest_first(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = signed_in(client, runtime)
    day = today(ctx)
    short = created(client, headers, name="short", expires_at=(day + timedelta(days=1)).date().isoformat())
    advance(ctx, 1)
    app_password = client.post(APP_PASSWORDS, json={"name": "mail"}, headers=headers).json()
    advance(ctx, 1)
    used = created(client, headers, name="used", scopes=["write_repository"])
    assert gate_status(client, used["token"], "write_repository") == 200

    first = listed(client, headers)
    assert [t["name"] for t in first] == ["used", "mail", "short"]
    assert [t["kind"] for t in first] == ["personal_access_token", "app_password", "personal_access_token"]
    assert first[0]["scopes"] == ["write_repository"] and first[1]["scopes"] == [s.value for s in Scope]
    assert datetime.fromisoformat(first[0]["last_used_at"]) == ctx.clock.now()
    assert first[1]["last_used_at"] is None and first[2]["last_used_at"] is None
    assert [t["expired"] for t in first] == [False, False, False]
    assert set(first[0]) == {"id", "name", "kind", "scopes", "created_at", "expires_at", "last_used_at", "expired"}
    assert first[1]["id"] == app_password["id"]

    # Past midnight the short one has expired: still listed, so its owner sees why it stopped.
    ctx.clock.set(day + timedelta(days=1))  # type: ignore[attr-defined]
    later = listed(client, headers)
    assert [t["expired"] for t in later] == [False, False, True]
    assert later[2]["id"] == short["id"]
    assert gate_status(client, short["token"]) == 401


def test_each_user_sees_only_their_own_tokens(client: TestClient, runtime: Runtime) -> None:
    alice = signed_in(client, runtime, "alice")
    bob = signed_in(client, runtime, "bob")
    created(client, alice, name="alice's")
    created(client, bob, name="bob's")
    assert [t["name"] for t in listed(client, alice)] == ["alice's"]
    assert [t["name"] for t in listed(client, bob)] == ["bob's"]


# --- revoking ------------------------------------------------------------------------------------------------------


def test_revoking_a_token_stops_it_at_once(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    keep = created(client, headers, name="keep")
    gone = created(client, headers, name="gone")
    assert gate_status(client, gone["token"]) == 200
    response = client.delete(f"{TOKENS}/{gone['id']}", headers=headers)
    assert response.status_code == 204 and response.content == b""
    assert [t["name"] for t in listed(client, headers)] == ["keep"]
    assert gate_status(client, gone["token"]) == 401
    assert gate_status(client, keep["token"]) == 200

    again = client.delete(f"{TOKENS}/{gone['id']}", headers=headers)
    assert again.status_code == 404 and error_code(again) == "token_not_found"
    never = client.delete(f"{TOKENS}/999999", headers=headers)
    assert never.status_code == 404 and error_code(never) == "token_not_found"


def test_someone_elses_token_is_not_found_and_keeps_working(client: TestClient, runtime: Runtime) -> None:
    alice = signed_in(client, runtime, "alice")
    bob = signed_in(client, runtime, "bob")
    bobs = created(client, bob)
    response = client.delete(f"{TOKENS}/{bobs['id']}", headers=alice)
    assert response.status_code == 404 and error_code(response) == "token_not_found"
    assert set(response.json()) == {"error"}  # nothing but the error
    assert len(listed(client, bob)) == 1
    assert gate_status(client, bobs["token"]) == 200
    assert audit.all_events(runtime.services, event_type=EventType.TOKEN_REVOKED) == []


def test_a_malformed_token_id_is_422(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    for token_id in ("0", "-1", "abc", str(2**31), "1.5"):
        response = client.delete(f"{TOKENS}/{token_id}", headers=headers)
        assert response.status_code == 422 and error_code(response) == "invalid_request", token_id


# --- the limit -----------------------------------------------------------------------------------------------------


def test_a_user_holds_at_most_a_hundred_live_tokens(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = signed_in(client, runtime)
    seed_tokens(ctx, make_user(ctx, "bob"), MAX_LIVE_TOKENS)  # someone else's tokens do not count
    alice = tokens_owner(ctx, "alice")
    seed_tokens(ctx, alice, MAX_LIVE_TOKENS - 1)
    seed_tokens(ctx, alice, 1, expires_at=ctx.clock.now() + timedelta(seconds=60))

    full = create(client, headers)
    assert full.status_code == 409, full.text
    assert error_code(full) == "token_limit_reached"
    assert "Revoke" in full.json()["error"]["message"]
    app_password = client.post(APP_PASSWORDS, json={"name": "mail"}, headers=headers)
    assert app_password.status_code == 409 and error_code(app_password) == "token_limit_reached"

    # An expired token no longer counts...
    advance(ctx, 61)
    fresh = created(client, headers)
    assert create(client, headers).status_code == 409
    # ...nor does a revoked one.
    assert client.delete(f"{TOKENS}/{fresh['id']}", headers=headers).status_code == 204
    created(client, headers)
    assert len(audit.all_events(ctx, event_type=EventType.TOKEN_CREATED)) == 2


def tokens_owner(ctx: ServiceContext, username: str) -> User:
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(username)
    assert user is not None
    return user


# --- an administrator revokes them all -------------------------------------------------------------------------------


def admin_headers(client: TestClient, runtime: Runtime) -> dict[str, str]:
    make_user(runtime.services, "root", role=InstanceRole.ADMIN)
    return auth_header(login(client, "root")["session_token"])


def test_an_admin_revokes_all_of_a_users_tokens(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = signed_in(client, runtime, "alice")
    bob = signed_in(client, runtime, "bob")
    first = created(client, alice, name="laptop")
    second = client.post(APP_PASSWORDS, json={"name": "mail"}, headers=alice).json()
    already = created(client, alice, name="old")
    assert client.delete(f"{TOKENS}/{already['id']}", headers=alice).status_code == 204
    bobs = created(client, bob)
    admin = admin_headers(client, runtime)

    response = client.delete(
        "/api/v1/admin/users/ALICE/tokens", params={"reason": "laptop stolen, ticket 4712"}, headers=admin
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"username": "alice", "revoked": 2}
    assert listed(client, alice) == []
    assert gate_status(client, first["token"]) == 401
    assert gate_status(client, second["token"]) == 401
    assert gate_status(client, bobs["token"]) == 200

    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.TOKENS_REVOKED_ALL)]
    assert (event.actor_username, event.subject_username) == ("root", "alice")
    assert dict(event.details) == {"tokens": 2, "reason": "laptop stolen, ticket 4712"}

    # Nothing left: zero, and still audited.
    again = client.delete("/api/v1/admin/users/alice/tokens", headers=admin)
    assert again.status_code == 200 and again.json() == {"username": "alice", "revoked": 0}
    assert len(audit.all_events(ctx, event_type=EventType.TOKENS_REVOKED_ALL)) == 2


def test_only_a_recently_verified_admin_revokes_all_tokens(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = signed_in(client, runtime, "alice")
    token = created(client, alice)
    member = signed_in(client, runtime, "carol")
    refused = client.delete("/api/v1/admin/users/alice/tokens", headers=member)
    assert refused.status_code == 403 and error_code(refused) == "admin_required"
    own = client.delete("/api/v1/admin/users/carol/tokens", headers=member)
    assert own.status_code == 403 and error_code(own) == "admin_required"
    signed_out = client.delete("/api/v1/admin/users/alice/tokens")
    assert signed_out.status_code == 401

    admin = admin_headers(client, runtime)
    missing = client.delete("/api/v1/admin/users/nobody/tokens", headers=admin)
    assert missing.status_code == 404 and error_code(missing) == "user_not_found"
    invalid = client.delete("/api/v1/admin/users/-bad-/tokens", headers=admin)
    assert invalid.status_code in (404, 422) and error_code(invalid) in ("user_not_found", "invalid_request")
    advance(ctx, STALE)
    stale = client.delete("/api/v1/admin/users/alice/tokens", headers=admin)
    assert stale.status_code == 403 and error_code(stale) == "reauthentication_required"
    assert gate_status(client, token["token"]) == 200
    assert audit.all_events(ctx, event_type=EventType.TOKENS_REVOKED_ALL) == []


# --- the security log ------------------------------------------------------------------------------------------------


def test_creating_and_revoking_are_audited_by_id_never_by_secret(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    headers = signed_in(client, runtime)
    token = created(client, headers, scopes=["read_repository", "write_repository"])
    app_password = client.post(APP_PASSWORDS, json={"name": "mail"}, headers=headers).json()
    assert client.delete(f"{TOKENS}/{token['id']}", headers=headers).status_code == 204

    created_events = [r.event for r in audit.all_events(ctx, event_type=EventType.TOKEN_CREATED)]
    assert [dict(e.details) for e in reversed(created_events)] == [
        {
            "token_id": token["id"],
            "kind": "personal_access_token",
            "scopes": "read_repository write_repository",
            "expires_at": token["expires_at"].replace("Z", "+00:00"),
        },
        {
            "token_id": app_password["id"],
            "kind": "app_password",
            "scopes": " ".join(s.value for s in Scope),
            "expires_at": app_password["expires_at"].replace("Z", "+00:00"),
        },
    ]
    assert all((e.actor_username, e.subject_username) == ("alice", "alice") for e in created_events)
    (revoked,) = [r.event for r in audit.all_events(ctx, event_type=EventType.TOKEN_REVOKED)]
    assert dict(revoked.details) == {"token_id": token["id"], "kind": "personal_access_token"}
    assert revoked.client_ip == "testclient" and revoked.correlation_id

    # The security log the user sees, and every stored row, never hold the secrets.
    mine = client.get("/api/v1/me/events", headers=headers)
    assert mine.status_code == 200
    assert token["token"] not in mine.text and app_password["token"] not in mine.text
    assert_not_stored(runtime.engine, token["token"], app_password["token"])


def test_the_service_returns_the_secret_once_and_hides_it_from_repr(runtime: Runtime) -> None:
    ctx = runtime.services
    user = make_user(ctx)
    made = tokens.create(
        ctx, user, kind=TokenKind.PERSONAL, name="ci", scopes=["api"], expires_on=None, client=ClientInfo()
    )
    assert made.secret not in repr(made)
    assert [t.id for t in tokens.list_tokens(ctx, user)] == [made.token.id]
