"""A real ``nidan serve`` process, driven as a person would: the setup link it prints, ``nidan user add``, and the
REST API over HTTP with codes from a real authenticator (OATH Toolkit's ``oathtool``).

Runs on SQLite and, when ``NIDAN_TEST_DATABASE_URL`` is set, on a brand-new empty PostgreSQL database, so the
migrations that ``serve`` applies on first start are exercised too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from nidan.bootstrap import build_runtime
from nidan.config import SecuritySettings, ServerSettings, Settings
from nidan.errors import SetupTokenInvalid
from nidan.services import setup
from tests.conftest import FAST_SECURITY
from tests.e2e.support import PASSWORD, SETUP_LINE, Server, free_port, init, nidan, oathtool_code, oathtool_path

pytestmark = pytest.mark.e2e


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert set(error) >= {"code", "message", "correlation_id", "timestamp"}
    assert error["correlation_id"] == response.headers["x-correlation-id"]
    assert datetime.fromisoformat(error["timestamp"]).utcoffset() is not None
    return error


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(http: httpx.Client, username: str = "bob", password: str = PASSWORD) -> dict[str, Any]:
    response = http.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def second_step(http: httpx.Client, mfa_token: str, method: str, code: str) -> httpx.Response:
    return http.post("/api/v1/auth/mfa", json={"mfa_token": mfa_token, "method": method, "code": code})


def test_serve_prints_setup_links_and_signs_in_with_oathtool_codes(environment: dict[str, str], tmp_path: Path) -> None:
    oathtool_path()

    # Before any start, no other command makes the instance: it says where it looked and how to make one.
    refused = nidan(environment, "user", "list")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith(f"error [instance_not_found]: No nidan instance at {tmp_path / 'data'} ")
    assert "`nidan init`" in refused.stderr and not (tmp_path / "data").exists()

    # First start: migrations, keys, and a setup link; a second start prints a new link and the old one dies.
    with Server(environment, tmp_path) as first:
        old_link = first.wait_for_line(SETUP_LINE)
        assert int(old_link.group(2)) == first.port
        first.wait_until_healthy()
    assert (tmp_path / "data" / "keys" / "hash.key").exists()
    assert "Sign in at" not in "\n".join(first.seen)

    # Several wrong codes below on purpose; the backoff has its own end-to-end test (test_backoff_http.py).
    relaxed = {**environment, "NIDAN_RATE_LIMIT_TOLERATED_FAILURES": "10"}
    with Server(relaxed, tmp_path) as server:
        new_link = server.wait_for_line(SETUP_LINE)
        assert new_link.group(3) != old_link.group(3)
        server.wait_until_healthy()
        check_old_setup_link_is_dead(environment, old_link.group(3))

        added = nidan(
            environment, "user", "add", "Bob", "--email", "bob@example.com", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert added.returncode == 0, added.stderr
        duplicate = nidan(
            environment, "user", "add", "bob", "--email", "b@example.com", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert duplicate.returncode == 1
        assert "username_taken" in duplicate.stderr

        with httpx.Client(base_url=server.url, timeout=30) as http:
            sign_in_and_enable_totp(http)
        listed = nidan(environment, "user", "list")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[1].split()[:4] == ["Bob", "bob@example.com", "member", "on"]

        # Opening the setup link is logged without its token: only the banner ever shows it.
        opened = httpx.get(f"{server.url}/setup?token={new_link.group(3)}", timeout=30)
        assert opened.status_code == 200
        server.wait_for_line(re.compile(r'"GET /setup\?\[redacted\] HTTP/1\.1" 200'))
    logged = [line for line in server.describe().splitlines() if new_link.group(3) in line]
    assert len(logged) == 1 and logged[0].startswith("Create the first administrator"), logged


def check_old_setup_link_is_dead(environment: dict[str, str], token: str) -> None:
    """Through the service (the setup page is not what this test is about): the earlier token no longer works."""
    settings = Settings(
        data_dir=Path(environment["NIDAN_DATA_DIR"]),
        database_url=environment.get("NIDAN_DATABASE_URL"),
        server=ServerSettings(),
        security=SecuritySettings(**FAST_SECURITY),
    )
    runtime = build_runtime(settings)
    try:
        with pytest.raises(SetupTokenInvalid):
            setup.complete_setup(
                runtime.services, token=token, username="root", email="r@example.com", password=PASSWORD
            )
        assert setup.needs_setup(runtime.services)
    finally:
        runtime.engine.dispose()


def sign_in_and_enable_totp(http: httpx.Client) -> None:
    body = login(http, "BOB")
    assert body["status"] == "authenticated"
    session = body["session_token"]

    started = http.post("/api/v1/me/totp", headers=bearer(session))
    assert started.status_code == 200, started.text
    uri = urlsplit(started.json()["otpauth_uri"])
    secret = parse_qs(uri.query)["secret"][0]
    assert secret == started.json()["secret"]

    activated = http.post("/api/v1/me/totp/activate", json={"code": oathtool_code(secret)}, headers=bearer(session))
    assert activated.status_code == 200, activated.text
    recovery_codes = activated.json()["recovery_codes"]
    assert len(recovery_codes) == 16

    assert http.post("/api/v1/auth/logout", headers=bearer(session)).status_code == 204
    assert_error(http.get("/api/v1/me", headers=bearer(session)), 401, "authentication_required")

    # Second sign-in: password, then the code of the next time step (inside the ±1 step window, and never a
    # step already spent by the activation, so the test need not wait for the clock).
    challenge = login(http, "bob")
    assert challenge["status"] == "mfa_required"
    assert challenge["methods"] == ["totp", "recovery_code"]
    assert_error(second_step(http, challenge["mfa_token"], "totp", "12345"), 401, "invalid_code")
    wrong = oathtool_code(secret, datetime.now(UTC) + timedelta(hours=2))
    assert_error(second_step(http, challenge["mfa_token"], "totp", wrong), 401, "invalid_code")
    code = oathtool_code(secret, datetime.now(UTC) + timedelta(seconds=30))
    done = second_step(http, challenge["mfa_token"], "totp", code)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "authenticated"
    me = http.get("/api/v1/me", headers=bearer(done.json()["session_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "Bob"
    assert me.json()["two_factor"]["totp_enabled"] is True
    # The sign-in attempt is spent, and so is the code.
    assert_error(second_step(http, challenge["mfa_token"], "totp", code), 401, "mfa_token_invalid")
    assert_error(second_step(http, login(http)["mfa_token"], "totp", code), 401, "invalid_code")

    # Third sign-in with a recovery code (the "lost phone" path); the code works once.
    rescue = second_step(http, login(http)["mfa_token"], "recovery_code", recovery_codes[0].upper())
    assert rescue.status_code == 200, rescue.text
    me = http.get("/api/v1/me", headers=bearer(rescue.json()["session_token"]))
    assert me.json()["two_factor"]["recovery_codes_remaining"] == 15
    assert_error(second_step(http, login(http)["mfa_token"], "recovery_code", recovery_codes[0]), 401, "invalid_code")

    assert_error(
        http.post("/api/v1/auth/login", json={"username": "bob", "password": "wrong password"}),
        401,
        "invalid_credentials",
    )


def test_serve_with_two_workers(environment: dict[str, str], tmp_path: Path) -> None:
    made = init(environment)
    assert "Created a nidan instance:" in made.stdout and "nidan serve" in made.stdout
    added = nidan(
        environment,
        "user",
        "add",
        "root",
        "--email",
        "root@example.com",
        "--role",
        "admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr

    with Server(environment, tmp_path, "--workers", "2") as server:
        server.wait_for_line(re.compile(re.escape(f"Sign in at {server.url}/")))
        server.wait_until_healthy()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            # Several requests, so both workers serve some: each must find the same database and keys.
            for _ in range(6):
                token = login(http, "root")["session_token"]
                assert http.get("/api/v1/me", headers=bearer(token)).json()["role"] == "admin"
                assert http.get("/healthz").json() == {"status": "ok"}
        assert "setup?token=" not in "\n".join(server.seen)
    assert server.process.returncode is not None
    assert "Started parent process" in server.stderr_path.read_text()


def test_serve_refuses_a_bad_configuration(environment: dict[str, str]) -> None:
    result = nidan(
        {**environment, "NIDAN_SECURITY_SESSION_LIFETIME_HOURS": "forever"}, "serve", "--port", str(free_port())
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error [configuration_error]:")
    assert "NIDAN_SECURITY_SESSION_LIFETIME_HOURS" in result.stderr
    assert "Traceback" not in result.stderr
