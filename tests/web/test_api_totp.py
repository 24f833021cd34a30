"""Managing the authenticator and recovery codes over the REST API."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from tests.helpers import auth_header, code_at, enable_totp, login, make_user


def signed_in(client: TestClient, runtime: Runtime) -> dict[str, str]:
    make_user(runtime.services)
    return auth_header(login(client)["session_token"])


def mfa_sign_in(client: TestClient, runtime: Runtime, code: str, method: str = "totp") -> int:
    token = login(client)["mfa_token"]
    response = client.post("/api/v1/auth/mfa", json={"mfa_token": token, "method": method, "code": code})
    return response.status_code


def test_enrollment_gives_secret_uri_and_qr(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    body = client.post("/api/v1/me/totp", headers=headers).json()
    uri = urlparse(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/nidan:alice")
    query = parse_qs(uri.query)
    assert query == {
        "secret": [body["secret"]],
        "issuer": ["nidan"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    assert len(body["secret"]) == 32  # 160 bits in base32
    assert body["qr_svg"].lstrip().startswith("<svg")
    me = client.get("/api/v1/me", headers=headers).json()["two_factor"]
    assert me["totp_enabled"] is False and me["totp_enrollment_pending"] is True


def test_activation_needs_a_started_enrollment(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    response = client.post("/api/v1/me/totp/activate", json={"code": "123456"}, headers=headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "totp_enrollment_not_started"


def test_activation_refuses_a_wrong_code(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    secret = client.post("/api/v1/me/totp", headers=headers).json()["secret"]
    wrong = "000000" if code_at(secret, runtime.services) != "000000" else "111111"
    response = client.post("/api/v1/me/totp/activate", json={"code": wrong}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_code"
    assert client.get("/api/v1/me", headers=headers).json()["two_factor"]["totp_enabled"] is False


def test_activation_explains_a_wrong_device_clock(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    secret = client.post("/api/v1/me/totp", headers=headers).json()["secret"]
    ahead = code_at(secret, runtime.services, 14)  # 7 minutes ahead
    response = client.post("/api/v1/me/totp/activate", json={"code": ahead}, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "clock_skew_detected"
    assert "about 7 minutes ahead" in error["message"]
    assert "Set time automatically" in error["message"] and "Set Automatically" in error["message"]
    behind = code_at(secret, runtime.services, -24)  # 12 minutes behind
    error = client.post("/api/v1/me/totp/activate", json={"code": behind}, headers=headers).json()["error"]
    assert error["code"] == "clock_skew_detected" and "about 12 minutes behind" in error["message"]
    far = code_at(secret, runtime.services, 40)  # 20 minutes: beyond the diagnosis window
    error = client.post("/api/v1/me/totp/activate", json={"code": far}, headers=headers).json()["error"]
    assert error["code"] == "invalid_code"


def test_activation_code_cannot_be_replayed_at_sign_in(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    secret = client.post("/api/v1/me/totp", headers=headers).json()["secret"]
    code = code_at(secret, runtime.services)
    assert client.post("/api/v1/me/totp/activate", json={"code": code}, headers=headers).status_code == 200
    assert mfa_sign_in(client, runtime, code) == 401


def test_changing_the_authenticator_keeps_the_old_one_until_the_new_one_is_verified(
    client: TestClient, runtime: Runtime
) -> None:
    headers = signed_in(client, runtime)
    old_secret, codes = enable_totp(client, runtime.services, login(client)["session_token"])
    new_secret = client.post("/api/v1/me/totp", headers=headers).json()["secret"]
    assert new_secret != old_secret
    # Not verified yet: the old app still signs in, the new one does not.
    assert mfa_sign_in(client, runtime, code_at(new_secret, runtime.services)) == 401
    assert mfa_sign_in(client, runtime, code_at(old_secret, runtime.services)) == 200
    runtime.services.clock.advance(30)  # type: ignore[attr-defined]
    activated = client.post(
        "/api/v1/me/totp/activate", json={"code": code_at(new_secret, runtime.services)}, headers=headers
    ).json()
    assert activated == {"recovery_codes": [], "replaced_previous": True}
    runtime.services.clock.advance(30)  # type: ignore[attr-defined]
    assert mfa_sign_in(client, runtime, code_at(old_secret, runtime.services)) == 401
    assert mfa_sign_in(client, runtime, code_at(new_secret, runtime.services)) == 200
    # The recovery codes printed earlier still work.
    assert mfa_sign_in(client, runtime, codes[0], "recovery_code") == 200


def test_regenerating_recovery_codes_invalidates_the_whole_old_set(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    _, old_codes = enable_totp(client, runtime.services, login(client)["session_token"])
    response = client.post("/api/v1/me/recovery-codes", headers=headers)
    assert response.status_code == 200
    new_codes = response.json()["recovery_codes"]
    assert len(new_codes) == 16 and not set(new_codes) & set(old_codes)
    assert mfa_sign_in(client, runtime, old_codes[0], "recovery_code") == 401
    assert mfa_sign_in(client, runtime, new_codes[0], "recovery_code") == 200
    assert client.get("/api/v1/me", headers=headers).json()["two_factor"]["recovery_codes_remaining"] == 15


def test_regenerating_needs_2fa_on(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    response = client.post("/api/v1/me/recovery-codes", headers=headers)
    assert response.status_code == 409 and response.json()["error"]["code"] == "totp_not_enabled"


def test_turning_off_and_on_again_makes_a_new_set(client: TestClient, runtime: Runtime) -> None:
    headers = signed_in(client, runtime)
    _, first_codes = enable_totp(client, runtime.services, login(client)["session_token"])
    assert client.delete("/api/v1/me/totp", headers=headers).status_code == 204
    assert login(client)["status"] == "authenticated"
    assert client.delete("/api/v1/me/totp", headers=headers).json()["error"]["code"] == "totp_not_enabled"
    _, second_codes = enable_totp(client, runtime.services, login(client)["session_token"])
    assert len(second_codes) == 16 and not set(first_codes) & set(second_codes)
    assert mfa_sign_in(client, runtime, first_codes[0], "recovery_code") == 401
    assert mfa_sign_in(client, runtime, second_codes[0], "recovery_code") == 200


def test_second_factor_endpoints_need_a_session(client: TestClient, runtime: Runtime) -> None:
    for method, path in [
        ("GET", "/api/v1/me"),
        ("POST", "/api/v1/me/totp"),
        ("POST", "/api/v1/me/totp/activate"),
        ("DELETE", "/api/v1/me/totp"),
        ("POST", "/api/v1/me/recovery-codes"),
    ]:
        response = client.request(method, path, json={"code": "123456"}, headers={"Authorization": "Bearer nope"})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "authentication_required"
        assert response.headers["www-authenticate"].startswith("Bearer")
