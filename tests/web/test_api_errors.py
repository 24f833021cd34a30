"""Bad input never yields a 500: every error has the one body, a stable code and a correlation id."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from tests.helpers import auth_header, login, make_user
from tests.web.api_support import assert_error


def test_every_response_carries_a_correlation_id(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-correlation-id"]
    second = client.get("/healthz").headers["x-correlation-id"]
    assert first and second and first != second


def test_a_callers_correlation_id_is_kept_when_it_is_plain(client: TestClient) -> None:
    kept = client.get("/healthz", headers={"X-Correlation-ID": "support-ticket-1234"})
    assert kept.headers["x-correlation-id"] == "support-ticket-1234"
    replaced = client.get("/healthz", headers={"X-Correlation-ID": "bad\tid with spaces and ;"})
    assert replaced.headers["x-correlation-id"] != "bad\tid with spaces and ;"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b'"a string"',
        b"null",
        b'{"username": "alice"}',
        b'{"password": "x"}',
        b'{"username": 5, "password": ["x"]}',
        b'{"username": "", "password": ""}',
        b'{"username": "alice", "password": "x", "extra": 1}',
        b'{"username": "' + b"a" * 300 + b'", "password": "x"}',
        b'{"username": "alice", "password": "' + b"p" * 2000 + b'"}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_login_bodies_get_a_422(client: TestClient, body: bytes) -> None:
    response = client.post("/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    "username",
    [
        "alice\x00",
        "\u202eecila",
        "🙂🙂🙂",
        "ａｌｉｃｅ",  # fullwidth: NFKC folds it to 'alice'
        "ALICE",
        "alice ",
        "İ",
    ],
)
def test_odd_unicode_usernames_are_answered_not_crashed(client: TestClient, runtime: Runtime, username: str) -> None:
    make_user(runtime.services)
    response = client.post("/api/v1/auth/login", json={"username": username, "password": "wrong password"})
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize("field", ["username", "password"])
def test_lone_surrogates_are_refused_as_invalid_input(client: TestClient, runtime: Runtime, field: str) -> None:
    """JSON may escape a lone surrogate; it is no text, so the answer is a 422, not a crash."""
    make_user(runtime.services)
    fields = {"username": '"alice"', "password": '"wrong password"', field: '"a\\ud800b\\udfff"'}
    body = "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"
    response = client.post("/api/v1/auth/login", content=body.encode(), headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_request")


@pytest.mark.parametrize(
    "payload",
    [
        {"mfa_token": "x", "method": "sms", "code": "123456"},
        {"mfa_token": "x", "method": "totp"},
        {"mfa_token": "x", "method": "totp", "code": "1" * 100},
        {"method": "totp", "code": "123456"},
        {"mfa_token": "x", "method": "totp", "code": 123456},
    ],
)
def test_malformed_mfa_bodies_get_a_422(client: TestClient, payload: dict[str, object]) -> None:
    error = assert_error(client.post("/api/v1/auth/mfa", json=payload), 422, "invalid_request")
    assert "fields" in error


def test_odd_codes_are_wrong_codes_not_crashes(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    headers = auth_header(login(client)["session_token"])
    client.post("/api/v1/me/totp", headers=headers)
    for code in ("１２３４５６", "12345\u0000", "-12345", "1e5678", "١٢٣٤٥٦"):
        response = client.post("/api/v1/me/totp/activate", json={"code": code}, headers=headers)
        assert_error(response, 401, "invalid_code")


def test_oversized_body_gets_a_413(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/login",
        content=b'{"username": "' + b"a" * 70_000 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")


def test_unknown_path_and_wrong_method(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(client.get("/api/v1/auth/login"), 405, "http_method_not_allowed")


def test_no_session_and_garbage_session(client: TestClient) -> None:
    assert_error(client.get("/api/v1/me"), 401, "authentication_required")
    for header in ("Bearer", "Bearer " + "x" * 500, "Basic YWxpY2U6eA==", "Bearer nidan_s_" + "A" * 43):
        assert_error(client.get("/api/v1/me", headers={"Authorization": header}), 401, "authentication_required")


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/mfa", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/totp", "post"),
        ("/api/v1/me/totp", "delete"),
        ("/api/v1/me/totp/activate", "post"),
        ("/api/v1/me/recovery-codes", "post"),
    }
    for path, method in expected:
        operation = paths[path][method]
        assert operation.get("summary"), (path, method)
        assert "401" in operation["responses"], (path, method)
    schemas = spec["components"]["schemas"]
    for name in ("LoginRequest", "MfaRequest", "AuthenticatedResponse", "MfaRequiredResponse", "ErrorResponse"):
        assert name in schemas
    login_responses = paths["/api/v1/auth/login"]["post"]["responses"]
    assert login_responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")


def test_an_unexpected_error_still_carries_its_correlation_id(runtime: Runtime) -> None:
    """Even a bug answers with the error body and the id a person can give support, and no stack trace."""
    from nidan.web.app import create_app

    app = create_app(runtime=runtime)

    @app.get("/api/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/api/v1/boom")
    error = assert_error(response, 500, "internal_error")
    assert error["correlation_id"] and "secret internals" not in response.text
