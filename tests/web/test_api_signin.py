"""Two-step sign-in over the REST API: the happy path, the attacker and the stuck person."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from tests.helpers import PASSWORD, auth_header, code_at, enable_totp, login, make_user


def mfa(client: TestClient, mfa_token: str, code: str, method: str = "totp") -> tuple[int, dict]:  # type: ignore[type-arg]
    response = client.post("/api/v1/auth/mfa", json={"mfa_token": mfa_token, "method": method, "code": code})
    return response.status_code, response.json()


def setup_totp_user(client: TestClient, runtime: Runtime) -> tuple[str, list[str]]:
    make_user(runtime.services)
    return enable_totp(client, runtime.services, login(client)["session_token"])


def test_user_without_second_factor_gets_a_session(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    body = login(client)
    assert body["status"] == "authenticated"
    assert body["session_token"].startswith("nidan_s_") and len(body["session_token"]) >= 8 + 43
    me = client.get("/api/v1/me", headers=auth_header(body["session_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["two_factor"]["totp_enabled"] is False


def test_username_is_case_insensitive(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services, "Alice")
    assert login(client, "aLiCe")["status"] == "authenticated"


def test_every_sign_in_issues_a_new_session(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    first, second = login(client)["session_token"], login(client)["session_token"]
    assert first != second
    assert client.get("/api/v1/me", headers=auth_header(first)).status_code == 200


def test_logout_revokes_the_session(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    token = login(client)["session_token"]
    assert client.post("/api/v1/auth/logout", headers=auth_header(token)).status_code == 204
    after = client.get("/api/v1/me", headers=auth_header(token))
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "authentication_required"
    assert client.post("/api/v1/auth/logout", headers=auth_header(token)).status_code == 401


def test_session_ends_after_its_lifetime(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    token = login(client)["session_token"]
    runtime.services.clock.advance(12 * 3600 + 1)  # type: ignore[attr-defined]
    assert client.get("/api/v1/me", headers=auth_header(token)).status_code == 401


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    wrong = client.post("/api/v1/auth/login", json={"username": "alice", "password": "not the password"})
    unknown = client.post("/api/v1/auth/login", json={"username": "mallory", "password": "not the password"})
    invalid_name = client.post("/api/v1/auth/login", json={"username": "no such user!", "password": "x"})
    for response in (wrong, unknown, invalid_name):
        assert response.status_code == 401
        error = response.json()["error"]
        assert (error["code"], error["message"]) == (wrong.json()["error"]["code"], wrong.json()["error"]["message"])
        assert set(error) == {"code", "message", "correlation_id", "timestamp"}


def test_unknown_user_costs_a_password_hash_too(client: TestClient, runtime: Runtime) -> None:
    """No user enumeration by timing: both answers pay one argon2 verification (compared as a ratio).

    The two are timed in turn and each side's fastest answer is compared: a busy machine slows single requests,
    never all of one side's, so the minimum is what a request costs (the median moved with the neighbours' load)."""
    make_user(runtime.services)
    timings: dict[str, list[float]] = {"alice": [], "nobody": []}
    for _ in range(9):
        for username, samples in timings.items():
            runtime.services.clock.advance(3601)  # type: ignore[attr-defined]  # past any backoff block
            started = time.perf_counter()
            answer = client.post("/api/v1/auth/login", json={"username": username, "password": "wrong password"})
            samples.append(time.perf_counter() - started)
            assert answer.status_code == 401, answer.text  # each one evaluated, none refused by the backoff
    known, unknown = min(timings["alice"]), min(timings["nobody"])
    assert 0.33 < unknown / known < 3.0, (known, unknown)


def test_totp_user_signs_in_with_a_code(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    first = login(client)
    assert first["status"] == "mfa_required"
    assert first["methods"] == ["totp", "recovery_code"]
    assert "session_token" not in first
    status, body = mfa(client, first["mfa_token"], code_at(secret, runtime.services))
    assert status == 200 and body["status"] == "authenticated"
    assert client.get("/api/v1/me", headers=auth_header(body["session_token"])).status_code == 200


def test_code_with_spaces_is_accepted(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    code = code_at(secret, runtime.services)
    status, _ = mfa(client, login(client)["mfa_token"], f"{code[:3]} {code[3:]}")
    assert status == 200


def test_a_used_code_is_refused_even_in_another_sign_in(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    code = code_at(secret, runtime.services)
    assert mfa(client, login(client)["mfa_token"], code)[0] == 200
    status, body = mfa(client, login(client)["mfa_token"], code)
    assert status == 401 and body["error"]["code"] == "invalid_code"
    # An older step than the one used is spent too.
    status, _ = mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services, -1))
    assert status == 401
    runtime.services.clock.advance(30)  # type: ignore[attr-defined]
    assert mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services))[0] == 200


def test_one_step_either_side_is_accepted(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    assert mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services, -1))[0] == 200
    runtime.services.clock.advance(90)  # type: ignore[attr-defined]
    assert mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services, +1))[0] == 200


def test_two_steps_either_side_are_refused(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    for offset in (-2, +2):
        status, body = mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services, offset))
        assert status == 401 and body["error"]["code"] == "invalid_code"


def test_a_slowly_drifting_device_keeps_working(client: TestClient, runtime: Runtime) -> None:
    """A device one step behind is accepted, remembered, and then accepted when two steps behind."""
    secret, _ = setup_totp_user(client, runtime)
    clock = runtime.services.clock
    assert mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services, -1))[0] == 200
    clock.advance(120)  # type: ignore[attr-defined]
    assert mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services, -2))[0] == 200


def test_mfa_token_is_spent_by_success(client: TestClient, runtime: Runtime) -> None:
    secret, codes = setup_totp_user(client, runtime)
    token = login(client)["mfa_token"]
    assert mfa(client, token, code_at(secret, runtime.services))[0] == 200
    status, body = mfa(client, token, codes[0], "recovery_code")
    assert status == 401 and body["error"]["code"] == "mfa_token_invalid"


def test_mfa_token_expires_after_five_minutes(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    token = login(client)["mfa_token"]
    runtime.services.clock.advance(301)  # type: ignore[attr-defined]
    status, body = mfa(client, token, code_at(secret, runtime.services))
    assert status == 401 and body["error"]["code"] == "mfa_token_invalid"
    assert "Sign in again" in body["error"]["message"]


def test_mfa_token_dies_after_five_wrong_codes(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    token = login(client)["mfa_token"]
    for _ in range(5):
        assert mfa(client, token, "000000")[1]["error"]["code"] == "invalid_code"
        runtime.services.clock.advance(10)  # type: ignore[attr-defined]  # past the backoff's block (≤ 8 s here)
    status, body = mfa(client, token, code_at(secret, runtime.services))
    assert status == 401 and body["error"]["code"] == "mfa_token_invalid"


def test_forged_or_malformed_mfa_token_is_refused(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    for token in ("x", "A" * 43, "🙂" * 10):
        status, body = mfa(client, token, code_at(secret, runtime.services))
        assert status == 401 and body["error"]["code"] == "mfa_token_invalid"


def test_recovery_code_works_once_and_the_others_stay_valid(client: TestClient, runtime: Runtime) -> None:
    _, codes = setup_totp_user(client, runtime)
    assert len(codes) == 16 and len(set(codes)) == 16
    status, body = mfa(client, login(client)["mfa_token"], codes[3], "recovery_code")
    assert status == 200
    me = client.get("/api/v1/me", headers=auth_header(body["session_token"])).json()
    assert me["two_factor"]["recovery_codes_remaining"] == 15
    status, body = mfa(client, login(client)["mfa_token"], codes[3], "recovery_code")
    assert status == 401 and body["error"]["code"] == "invalid_code"
    # Typed differently: upper case, no dash, spaces around.
    typed = f"  {codes[4].upper().replace('-', '')} "
    assert mfa(client, login(client)["mfa_token"], typed, "recovery_code")[0] == 200


def test_wrong_recovery_code_is_refused(client: TestClient, runtime: Runtime) -> None:
    setup_totp_user(client, runtime)
    for code in ("aaaaa-aaaaa", "not a code", "12345"):
        status, body = mfa(client, login(client)["mfa_token"], code, "recovery_code")
        assert status == 401 and body["error"]["code"] == "invalid_code"
        runtime.services.clock.advance(10)  # type: ignore[attr-defined]  # past the backoff's block


def test_password_is_checked_before_anything_about_2fa_is_said(client: TestClient, runtime: Runtime) -> None:
    setup_totp_user(client, runtime)
    response = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD + "x"})
    assert response.status_code == 401
    assert "mfa" not in response.text


def test_clock_skew_at_sign_in_is_recorded_not_revealed(client: TestClient, runtime: Runtime) -> None:
    secret, _ = setup_totp_user(client, runtime)
    status, body = mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services, 14))  # 7 min ahead
    assert status == 401 and body["error"]["code"] == "invalid_code"
    assert "clock" not in body["error"]["message"].lower()
    status, body = mfa(client, login(client)["mfa_token"], code_at(secret, runtime.services))
    assert status == 200
    me = client.get("/api/v1/me", headers=auth_header(body["session_token"])).json()
    assert [o["offset_seconds"] for o in me["two_factor"]["clock_observations"]] == [420]
