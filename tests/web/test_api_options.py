"""Choosing how to verify over the API: ``options`` and ``default_method`` at ``mfa_required``, the default a person
picks, unknown and forbidden methods, and the warning before a block."""

from __future__ import annotations

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import Method
from nidan.services import accounts
from tests.helpers import auth_header, code_at, enable_totp, login, make_user
from tests.integration.enforcement_support import join, new_org
from tests.web.api_support import assert_error


def totp_user(client: TestClient, runtime: Runtime) -> tuple[str, str, list[str]]:
    """alice with an authenticator app; her session token, secret and recovery codes."""
    make_user(runtime.services)
    session = login(client)["session_token"]
    secret, codes = enable_totp(client, runtime.services, session)
    return session, secret, codes


def mfa(client: TestClient, body: dict[str, object]) -> object:
    return client.post("/api/v1/auth/mfa", json=body)


def test_mfa_required_lists_every_option_with_the_default_first(client: TestClient, runtime: Runtime) -> None:
    totp_user(client, runtime)
    body = login(client)
    assert body["status"] == "mfa_required"
    assert body["methods"] == ["totp", "recovery_code"]
    assert body["options"] == [
        {"method": "totp", "id": "totp", "label": "Authenticator app"},
        {"method": "recovery_code", "id": "recovery_code", "label": "A recovery code (16 left)"},
    ]
    assert body["default_method"] == "totp"


def test_a_person_picks_their_default_and_a_fallback_cannot_be_it(client: TestClient, runtime: Runtime) -> None:
    session, _, _ = totp_user(client, runtime)
    chosen = client.put("/api/v1/me/default-method", json={"method": "totp"}, headers=auth_header(session))
    assert chosen.status_code == 200 and chosen.json() == {"default_method": "totp"}
    refused = client.put("/api/v1/me/default-method", json={"method": "recovery_code"}, headers=auth_header(session))
    error = assert_error(refused, 422, "invalid_request")
    assert "fallback" in error["message"]
    unknown = client.put("/api/v1/me/default-method", json={"method": "carrier_pigeon"}, headers=auth_header(session))
    assert_error(unknown, 422, "invalid_request")
    assert client.put("/api/v1/me/default-method", json={"method": "totp"}).status_code == 401


def test_a_default_needs_the_method_set_up(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services, "bob")
    session = login(client, "bob")["session_token"]
    refused = client.put("/api/v1/me/default-method", json={"method": "totp"}, headers=auth_header(session))
    assert_error(refused, 409, "method_not_available")


def test_an_unknown_method_is_422_naming_the_valid_ones(client: TestClient, runtime: Runtime) -> None:
    totp_user(client, runtime)
    token = login(client)["mfa_token"]
    refused = mfa(client, {"mfa_token": token, "method": "sms_to_mars", "code": "123456"})
    error = assert_error(refused, 422, "invalid_request")
    assert "totp" in error["message"] and "recovery_code" in error["message"]


def test_a_forbidden_method_is_neither_offered_nor_accepted(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, secret, codes = totp_user(client, runtime)
    join(ctx, new_org(ctx, allowed_methods=[Method.TOTP]), accounts.find_user(ctx, "alice"))
    body = login(client)
    assert [o["method"] for o in body["options"]] == ["totp"] and body["methods"] == ["totp"]
    refused = mfa(client, {"mfa_token": body["mfa_token"], "method": "recovery_code", "code": codes[0]})
    assert_error(refused, 403, "method_not_allowed")
    # Nothing was counted or spent: the same sign-in goes on with the app.
    passed = mfa(client, {"mfa_token": body["mfa_token"], "method": "totp", "code": code_at(secret, ctx)})
    assert passed.status_code == 200 and passed.json()["status"] == "authenticated"  # type: ignore[attr-defined]


def test_the_wrong_code_before_a_block_warns_and_the_block_says_how_long(client: TestClient, runtime: Runtime) -> None:
    _, secret, _ = totp_user(client, runtime)
    token = login(client)["mfa_token"]
    wrong = f"{(int(code_at(secret, runtime.services)) + 500_000) % 1_000_000:06d}"
    first = assert_error(mfa(client, {"mfa_token": token, "method": "totp", "code": wrong}), 401, "invalid_code")
    assert "One more wrong code and you will have to wait" in first["message"]
    second = assert_error(mfa(client, {"mfa_token": token, "method": "totp", "code": wrong}), 401, "invalid_code")
    assert "Too many wrong codes: wait 1 second before you try again." in second["message"]
    blocked = mfa(client, {"mfa_token": token, "method": "totp", "code": code_at(secret, runtime.services)})
    assert_error(blocked, 429, "rate_limited")
    assert blocked.headers["retry-after"] == "1"  # type: ignore[attr-defined]
