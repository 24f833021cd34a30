"""``POST /api/v1/verify``: a relying application asks whether a code is the user's, right now.

The same rules as sign-in (single use, the user's backoff, the audit log with the application's name), and the same
answer for a wrong code, a replayed code, an unknown user and a user without 2FA.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.config import RateLimitSettings, Settings
from nidan.core import totp
from nidan.core.access_tokens import TokenKind
from nidan.core.audit import AuditEvent, EventType
from nidan.services import applications, audit, enrollment, throttling, tokens
from nidan.services.context import ServiceContext
from nidan.web.api.v1.verify import application_key
from nidan.web.app import create_app
from tests.helpers import PASSWORD, auth_header, code_at, make_user
from tests.web.tokens_support import assert_not_stored
from tests.web.verify_support import CLIENT, VERIFY, advance, totp_user, verify_scope, wrong_code


@pytest.fixture(params=["fast path", "FastAPI route"])
def client(request: pytest.FixtureRequest, runtime: Runtime) -> Iterator[TestClient]:
    """Every test here runs both ways: well-formed calls are answered by ``VerifyFastPath`` unless it is off, and
    must be answered exactly as the route answers them."""
    app = create_app(runtime=runtime)
    app.state.verify_fast_path = request.param == "fast path"
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def add_app(ctx: ServiceContext, name: str = "wiki") -> dict[str, str]:
    """Register an application; its Authorization header."""
    registered = applications.add(ctx, name=name, actor=None, client=CLIENT)
    return auth_header(registered.api_key)


def verify(client: TestClient, headers: dict[str, str] | None, **body: Any) -> httpx.Response:
    response: httpx.Response = client.post(VERIFY, json=body, headers=headers or {})
    return response


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def without_request_details(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer minus what differs between any two requests (correlation id, timestamp)."""
    error = {k: v for k, v in answer["error"].items() if k not in ("correlation_id", "timestamp")}
    return {**answer, "error": error}


def assert_invalid_code(answer: dict[str, Any], method: str = "totp") -> None:
    assert answer["ok"] is False and answer["method"] == method
    assert "username" not in answer
    error = answer["error"]
    assert error["code"] == "invalid_code" and error["message"]
    assert error["correlation_id"] and datetime.fromisoformat(error["timestamp"]).utcoffset() is not None


def events(ctx: ServiceContext, event_type: EventType) -> list[AuditEvent]:
    return [r.event for r in reversed(audit.all_events(ctx, event_type=event_type))]


# --- answers -------------------------------------------------------------------------------------------------------


def test_a_valid_code_is_accepted_once(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    app = add_app(ctx)
    code = code_at(secret, ctx)
    response = verify(client, app, username="ALICE", code=code)
    assert ok(response) == {"ok": True, "method": "totp", "username": "alice"}
    # The same code again is a replay: refused like any wrong code.
    again = ok(verify(client, app, username="alice", code=code))
    assert_invalid_code(again)
    # Spaces are allowed, as people copy them; the next time step works.
    advance(ctx, totp.PERIOD)
    spaced = code_at(secret, ctx)
    assert ok(verify(client, app, username="alice", code=f"{spaced[:3]} {spaced[3:]}"))["ok"] is True


def test_a_recovery_code_is_accepted_once_and_spent(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, codes = totp_user(ctx)
    app = add_app(ctx)
    assert ok(verify(client, app, username="alice", code=codes[0])) == {
        "ok": True,
        "method": "recovery_code",
        "username": "alice",
    }
    assert_invalid_code(ok(verify(client, app, username="alice", code=codes[0])), "recovery_code")
    # Said explicitly, and typed in capitals: the same.
    explicit = ok(verify(client, app, username="alice", code=codes[1].upper(), method="recovery_code"))
    assert explicit["ok"] is True and explicit["method"] == "recovery_code"
    me = enrollment.security_state(ctx, 1)
    assert me.recovery_codes_remaining == len(codes) - 2


def test_the_method_is_guessed_from_the_code_or_taken_as_said(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, codes = totp_user(ctx)
    app = add_app(ctx)
    # A TOTP code sent as a recovery code, and a recovery code sent as a TOTP code, are both wrong.
    as_recovery = ok(verify(client, app, username="alice", code=code_at(secret, ctx), method="recovery_code"))
    assert_invalid_code(as_recovery, "recovery_code")
    advance(ctx, 2)  # past the 1 s block the second failure in a row earns
    as_totp = ok(verify(client, app, username="alice", code=codes[0], method="totp"))
    assert_invalid_code(as_totp, "totp")
    advance(ctx, 4)
    # Said explicitly and right: accepted.
    assert ok(verify(client, app, username="alice", code=code_at(secret, ctx), method="totp"))["ok"] is True
    unknown = verify(client, app, username="alice", code="123456", method="sms")
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_request"


def test_a_wrong_code_an_unknown_user_and_a_user_without_2fa_get_the_same_answer(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    make_user(ctx, "bob")  # no 2FA
    app = add_app(ctx)
    code = wrong_code(secret, ctx)
    answers = [
        ok(verify(client, app, username="alice", code=code)),
        ok(verify(client, app, username="nobody", code=code)),
        ok(verify(client, app, username="bob", code=code)),
        ok(verify(client, app, username="not a username!", code=code)),
    ]
    for answer in answers:
        assert_invalid_code(answer)
    assert len({repr(without_request_details(a)) for a in answers}) == 1
    # The same for recovery codes.
    recovery = [ok(verify(client, app, username=name, code="abcde-fghjk")) for name in ("alice", "nobody2", "bob")]
    assert len({repr(without_request_details(a)) for a in recovery}) == 1
    assert_invalid_code(recovery[0], "recovery_code")


# --- backoff -------------------------------------------------------------------------------------------------------


def assert_rate_limited(response: httpx.Response, seconds: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == str(seconds)
    assert response.json()["error"]["code"] == "rate_limited"


def test_wrong_codes_block_every_username_alike(client: TestClient, runtime: Runtime) -> None:
    """429 does not tell who exists: unknown names and users without 2FA are counted and blocked too, each on
    their own counter."""
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    make_user(ctx, "bob")
    app = add_app(ctx)
    code = wrong_code(secret, ctx)
    for username in ("nobody", "bob", "alice"):
        assert_invalid_code(ok(verify(client, app, username=username, code=code)))
        assert_invalid_code(ok(verify(client, app, username=username, code=code)))
        assert_rate_limited(verify(client, app, username=username, code=code), 1)


def test_a_block_holds_even_the_right_code_and_a_success_resets_it(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    app = add_app(ctx)
    code = wrong_code(secret, ctx)
    for _ in range(2):
        assert_invalid_code(ok(verify(client, app, username="alice", code=code)))
    assert_rate_limited(verify(client, app, username="alice", code=code_at(secret, ctx)), 1)
    advance(ctx, 1)
    assert ok(verify(client, app, username="alice", code=code_at(secret, ctx)))["ok"] is True
    # Reset: the next block again needs two failures in a row.
    code = wrong_code(secret, ctx)
    assert_invalid_code(ok(verify(client, app, username="alice", code=code)))
    assert_invalid_code(ok(verify(client, app, username="alice", code=code)))
    assert_rate_limited(verify(client, app, username="alice", code=code), 1)


def test_the_verify_api_and_sign_in_share_the_users_counter(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    app = add_app(ctx)
    for _ in range(2):
        assert_invalid_code(ok(verify(client, app, username="alice", code=wrong_code(secret, ctx))))
    started = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    signed = client.post(
        "/api/v1/auth/mfa", json={"mfa_token": started["mfa_token"], "method": "totp", "code": code_at(secret, ctx)}
    )
    assert signed.status_code == 429


class TestHardLimit:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"rate_limit": RateLimitSettings(hard_limit=3)})

    def test_a_locked_user_is_answered_verification_locked(self, client: TestClient, runtime: Runtime) -> None:
        """Unknown names are locked alike, so the lock does not tell who exists either."""
        ctx = runtime.services
        secret, _ = totp_user(ctx)
        app = add_app(ctx)
        for _ in range(3):
            for username in ("alice", "nobody"):
                assert_invalid_code(ok(verify(client, app, username=username, code=wrong_code(secret, ctx))))
            advance(ctx, 3600)
        for username in ("alice", "nobody"):
            locked = ok(verify(client, app, username=username, code=code_at(secret, ctx)))
            assert locked["ok"] is False and locked["method"] == "totp"
            assert locked["error"]["code"] == "verification_locked"
            assert "administrator" in locked["error"]["message"]
        advance(ctx, 7 * 86400)  # time alone does not lift it
        answer = ok(verify(client, app, username="alice", code=code_at(secret, ctx)))
        assert answer["error"]["code"] == "verification_locked"
        # An administrator's clearing does.
        throttling.clear(ctx, username="alice", actor=None, client=CLIENT, reason="checked by phone")
        assert ok(verify(client, app, username="alice", code=code_at(secret, ctx)))["ok"] is True


# --- the application's key -----------------------------------------------------------------------------------------


def test_a_missing_unknown_or_removed_key_is_401(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    app = add_app(ctx)
    carol = make_user(ctx, "carol")
    session = client.post("/api/v1/auth/login", json={"username": "carol", "password": PASSWORD})
    pat = tokens.create(
        ctx,
        carol,
        kind=TokenKind.PERSONAL,
        name="ci",
        scopes=["api"],
        expires_on=None,
        client=CLIENT,
    ).secret
    bad_keys: dict[str, dict[str, str] | None] = {
        "none": None,
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer abc"},
        "unknown": auth_header("nidan_key_" + "A" * 43),
        "a personal access token": auth_header(pat),
        "a session token": auth_header(session.json()["session_token"]),
        "basic": {"Authorization": "Basic " + app["Authorization"].removeprefix("Bearer ")},
        "key with a typo": auth_header(app["Authorization"].removeprefix("Bearer ")[:-1] + "x"),
    }
    for what, headers in bad_keys.items():
        response = verify(client, headers, username="alice", code=code_at(secret, ctx))
        assert response.status_code == 401, (what, response.text)
        assert response.json()["error"]["code"] == "app_key_invalid", what
        assert response.headers["www-authenticate"].startswith("Bearer")
    # The key is checked before the body: a caller without one learns nothing about the request's shape.
    for body in ({}, {"username": "alice", "code": "1" * 100, "extra": True}):
        assert verify(client, None, **body).json()["error"]["code"] == "app_key_invalid"
    # Nothing was evaluated: the user's code is unspent and nothing was counted or logged.
    assert events(ctx, EventType.VERIFY_FAILED) == []
    assert ok(verify(client, app, username="alice", code=code_at(secret, ctx)))["ok"] is True

    applications.remove(ctx, name="wiki", actor=None, client=CLIENT)
    advance(ctx, totp.PERIOD)
    removed = verify(client, app, username="alice", code=code_at(secret, ctx))
    assert removed.status_code == 401 and removed.json()["error"]["code"] == "app_key_invalid"


def test_the_key_is_checked_before_the_fields(client: TestClient, runtime: Runtime) -> None:
    """Without a key, a body with wrong fields is 401 like any other request: the key comes first. (A body that is
    not JSON at all is refused while it is read, before anything else: 422.)"""
    wrong_fields = client.post(VERIFY, json={"user": "alice"})
    assert wrong_fields.status_code == 401, wrong_fields.text
    assert wrong_fields.json()["error"]["code"] == "app_key_invalid"


def test_invalid_bodies_are_422(client: TestClient, runtime: Runtime) -> None:
    app = add_app(runtime.services)
    bodies: dict[str, dict[str, Any]] = {
        "no username": {"code": "123456"},
        "no code": {"username": "alice"},
        "empty code": {"username": "alice", "code": ""},
        "long code": {"username": "alice", "code": "1" * 65},
        "empty username": {"username": "", "code": "123456"},
        "unknown field": {"username": "alice", "code": "123456", "remember": True},
    }
    for what, body in bodies.items():
        response = verify(client, app, **body)
        assert response.status_code == 422, (what, response.text)
        assert response.json()["error"]["code"] == "invalid_request", what


def test_bodies_the_fast_path_leaves_to_the_route_are_answered_by_it(client: TestClient, runtime: Runtime) -> None:
    """What the fast path does not take is handed on with its body intact: the route reads it and answers."""
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    app = add_app(ctx)
    raw: dict[str, tuple[bytes, str]] = {
        "not JSON": (b"{username: alice", "The request body is not valid JSON."),
        "a list": (b"[]", "Some fields are missing or not valid"),
        "a number for the code": (b'{"username": "alice", "code": 123456}', "code"),
        "an unknown method": (b'{"username": "alice", "code": "123456", "method": "sms"}', "method"),
        "a lone surrogate": (b'{"username": "\\ud800", "code": "123456"}', "username"),
    }
    for what, (body, message) in raw.items():
        response = client.post(VERIFY, content=body, headers={**app, "Content-Type": "application/json"})
        assert response.status_code == 422, (what, response.text)
        assert response.json()["error"]["code"] == "invalid_request", what
        assert message in response.json()["error"]["message"], (what, response.text)
    # JSON sent as another content type reaches the route, which does not read it as JSON.
    as_text = json.dumps({"username": "alice", "code": code_at(secret, ctx)})
    refused = client.post(VERIFY, content=as_text, headers={**app, "Content-Type": "text/plain"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", refused.text
    # A body larger than the fast path reads reaches the route, which accepts it.
    padded = as_text + " " * 4000
    answered = client.post(VERIFY, content=padded, headers={**app, "Content-Type": "application/json"})
    assert answered.status_code == 200 and answered.json()["ok"] is True, answered.text
    # Every answer carries the correlation id and no-store, as every API answer does.
    assert answered.headers["x-correlation-id"] and answered.headers["cache-control"] == "no-store"


def test_a_caller_that_goes_away_before_its_body_is_whole_is_not_answered(runtime: Runtime) -> None:
    """The body's first part is a whole call, then the client disconnects: nothing is checked or spent, as the
    route (which reads the body whole first) would do."""
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    key = add_app(ctx)["Authorization"].encode()
    body = json.dumps({"username": "alice", "code": code_at(secret, ctx)}).encode()
    scope = verify_scope(key, content_length=len(body) + 10)
    incoming = [{"type": "http.request", "body": body, "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(create_app(runtime=runtime)(scope, receive, send))
    assert not any(m["type"] == "http.response.start" and m["status"] == 200 for m in sent)
    assert events(ctx, EventType.VERIFY_SUCCEEDED) == [] and events(ctx, EventType.VERIFY_FAILED) == []


def test_the_fast_path_answers_well_formed_calls_without_the_route(runtime: Runtime) -> None:
    """With the route's key check made to fail, the fast path still answers a well-formed call (it never reached
    the route) and hands a malformed one to the route (which fails)."""
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    key = add_app(ctx)
    app = create_app(runtime=runtime)

    def route_was_used() -> str:
        raise AssertionError("the route answered")

    app.dependency_overrides[application_key] = route_was_used
    with TestClient(app, raise_server_exceptions=False) as fast:
        assert ok(verify(fast, key, username="alice", code=code_at(secret, ctx)))["ok"] is True
        assert verify(fast, key, username="alice", code="1" * 65).status_code == 500
        app.state.verify_fast_path = False
        advance(ctx, totp.PERIOD)
        assert verify(fast, key, username="alice", code=code_at(secret, ctx)).status_code == 500


# --- the security log and the application's use ---------------------------------------------------------------------


def test_every_answer_is_audited_with_the_applications_name(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, codes = totp_user(ctx)
    wiki = add_app(ctx, "wiki")
    vpn = add_app(ctx, "VPN-Gateway")
    assert ok(verify(client, wiki, username="alice", code=code_at(secret, ctx)))["ok"] is True
    assert ok(verify(client, vpn, username="alice", code=codes[0]))["ok"] is True
    assert ok(verify(client, wiki, username="alice", code=wrong_code(secret, ctx)))["ok"] is False
    advance(ctx, 2)
    assert ok(verify(client, vpn, username="nobody", code=codes[1]))["ok"] is False

    succeeded = events(ctx, EventType.VERIFY_SUCCEEDED)
    assert [dict(e.details) for e in succeeded] == [
        {"method": "totp", "app": "wiki"},
        {"method": "recovery_code", "app": "VPN-Gateway"},
    ]
    assert all(e.subject_username == "alice" for e in succeeded)
    (used,) = events(ctx, EventType.RECOVERY_CODE_USED)
    assert dict(used.details) == {"position": 1, "app": "VPN-Gateway"}
    failed = events(ctx, EventType.VERIFY_FAILED)
    assert [e.details["app"] for e in failed] == ["wiki", "VPN-Gateway"]
    assert failed[0].subject_username == "alice"
    assert failed[1].subject_username is None and failed[1].details["username_known"] is False
    assert all(e.client_ip == "testclient" and e.correlation_id for e in succeeded + failed)
    # Codes are never stored.
    assert_not_stored(runtime.engine, codes[0], codes[1])


def test_the_applications_last_use_is_recorded_to_the_minute(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    app = add_app(ctx)
    (before,) = applications.list_all(ctx)
    assert before.last_used_at is None
    first = ctx.clock.now()
    ok(verify(client, app, username="alice", code=code_at(secret, ctx)))
    assert applications.list_all(ctx)[0].last_used_at == first
    advance(ctx, 30)
    ok(verify(client, app, username="alice", code=code_at(secret, ctx)))
    assert applications.list_all(ctx)[0].last_used_at == first
    advance(ctx, 31)
    ok(verify(client, app, username="nobody", code="123456"))
    assert applications.list_all(ctx)[0].last_used_at == ctx.clock.now()


def test_the_new_paths_are_in_the_api_description(client: TestClient) -> None:
    schema: dict[str, Any] = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/me/tokens"])
    assert "delete" in paths["/api/v1/me/tokens/{token_id}"]
    assert "post" in paths["/api/v1/me/app-passwords"]
    assert "post" in paths["/api/v1/verify"]
    assert {"post", "get"} <= set(paths["/api/v1/admin/apps"])
    assert "delete" in paths["/api/v1/admin/apps/{name}"]
    assert "delete" in paths["/api/v1/admin/users/{username}/tokens"]
    assert "get" in paths["/auth/basic"] and "get" in paths["/auth/basic/denied"]
    gate = paths["/auth/basic"]["get"]
    assert [p["name"] for p in gate["parameters"]] == ["scope"]
    assert {"200", "401", "403", "422"} <= set(gate["responses"])
    assert {"401", "422", "429"} <= set(paths["/api/v1/verify"]["post"]["responses"])
