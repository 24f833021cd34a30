"""The process's own log never holds a secret: a whole flow runs with every logger at DEBUG (SQL statements, their
parameters and result rows included), then the captured text is searched for every secret the flow used.

The test's HTTP client logs the URLs it requests (``httpx``), a setup link's token among them: that is the
client's log, not nidan's, so its records are left out. The audit log is searched for the same secrets too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core import otpauth, recovery, totp
from nidan.services import accounts, audit, setup
from nidan.web.app import create_app
from tests.helpers import PASSWORD, auth_header, code_at
from tests.web.pages_support import csrf_of, submit

ADMIN_PASSWORD = "the administrator's own passphrase"
WRONG_PASSWORD = "a wrong guess at the password"
#: Loggers that would show a secret if anything handed them one: nidan's, the web stack's, the server's, SQL's.
LOGGERS = ["", "nidan", "fastapi", "starlette", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy",
           "sqlalchemy.engine", "sqlalchemy.pool", "alembic", "asyncio"]  # fmt: skip
CLIENT_SIDE = ("httpx", "httpcore")


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    attached = []
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
        logger = logging.getLogger(name)
        if name and not logger.propagate:  # e.g. uvicorn's loggers, once uvicorn configured them in this process
            logger.addHandler(caplog.handler)
            attached.append(logger)
    yield caplog
    for logger in attached:
        logger.removeHandler(caplog.handler)


def server_log_text(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        if record.name.startswith(CLIENT_SIDE):
            continue
        lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''} {record.stack_info or ''}")
    return "\n".join(lines)


class Secrets:
    """Everything secret the flow handles, collected as it goes."""

    def __init__(self) -> None:
        self.texts: set[str] = set()
        self.codes: set[str] = set()

    def add(self, *values: str) -> None:
        for value in values:
            assert value
            self.texts.add(value)

    def add_code(self, code: str) -> str:
        self.codes.add(code)
        return code

    def add_recovery_codes(self, codes: list[str]) -> list[str]:
        for code in codes:
            self.add(code, recovery.normalize(code) or code)
        return codes

    def found_in(self, text: str) -> list[str]:
        found = [value for value in self.texts if value in text]
        # Six-digit codes are looked for as whole tokens: the same digits inside a longer number or a hex digest
        # are not that code.
        found += [code for code in self.codes if re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", text)]
        return found


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content and status != 303 else None


def advance(runtime: Runtime, seconds: int = totp.PERIOD) -> None:
    runtime.services.clock.advance(seconds)  # type: ignore[attr-defined]


def mfa(client: TestClient, secrets: Secrets, method: str, code: str) -> str:
    login = ok(client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}))
    secrets.add(login["mfa_token"])
    body = {"mfa_token": login["mfa_token"], "method": method, "code": code}
    token: str = ok(client.post("/api/v1/auth/mfa", json=body))["session_token"]
    secrets.add(token)
    return token


def test_a_whole_flow_leaves_no_secret_in_the_log(runtime: Runtime, all_logs: pytest.LogCaptureFixture) -> None:
    ctx = runtime.services
    secrets = Secrets()
    secrets.add(PASSWORD, ADMIN_PASSWORD, WRONG_PASSWORD)
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        # First start: the setup link makes the administrator, on the pages.
        setup_token = setup.issue_setup_token(ctx)
        assert setup_token
        secrets.add(setup_token)
        page = client.get(f"/setup?token={setup_token}")
        fields = {"token": setup_token, "username": "root", "email": "root@example.com"}
        done = submit(client, page, "/setup", **fields, password=ADMIN_PASSWORD, password_repeat=ADMIN_PASSWORD)
        assert done.status_code == 303, done.text
        secrets.add(*(value for value in client.cookies.values() if len(value) > 40))
        client.cookies.clear()

        # A user, a wrong password, then a session.
        accounts.create_user(ctx, username="alice", email="alice@example.com", password=PASSWORD)
        wrong = client.post("/api/v1/auth/login", json={"username": "alice", "password": WRONG_PASSWORD})
        assert wrong.status_code == 401
        advance(runtime, 5)
        session = ok(client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}))
        secrets.add(session["session_token"])
        headers = auth_header(session["session_token"])

        # Two-step verification on: the key, the first code, the recovery codes.
        started = ok(client.post("/api/v1/me/totp", headers=headers))
        secrets.add(started["secret"], otpauth.b32decode(started["secret"]).hex(), started["otpauth_uri"])
        first_code = secrets.add_code(code_at(started["secret"], ctx))
        activated = ok(client.post("/api/v1/me/totp/activate", json={"code": first_code}, headers=headers))
        codes = secrets.add_recovery_codes(activated["recovery_codes"])
        ok(client.post("/api/v1/auth/logout", headers=headers), 204)

        # Sign in with a wrong code, then a right one.
        advance(runtime, 2 * totp.PERIOD)
        login = ok(client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}))
        secrets.add(login["mfa_token"])
        right = code_at(started["secret"], ctx)
        # Not 000000: that is also every timestamp's microseconds in the SQL log, with the test's fixed clock.
        typo = secrets.add_code(f"{(int(right) + 314159) % 1_000_000:06d}")
        bad = client.post("/api/v1/auth/mfa", json={"mfa_token": login["mfa_token"], "method": "totp", "code": typo})
        assert bad.status_code == 401
        advance(runtime, 2)  # past the one-second block a second wrong code in a row would earn
        token = mfa(client, secrets, "totp", secrets.add_code(right))
        ok(client.post("/api/v1/auth/logout", headers=auth_header(token)), 204)

        # Sign in with a recovery code, make new ones, sign out.
        token = mfa(client, secrets, "recovery_code", codes[0])
        fresh = ok(client.post("/api/v1/me/recovery-codes", headers=auth_header(token)))
        secrets.add_recovery_codes(fresh["recovery_codes"])
        ok(client.post("/api/v1/auth/logout", headers=auth_header(token)), 204)

        # The same on the pages: password, then a code, then sign out.
        advance(runtime)
        login_page = client.get("/login")
        submit(client, login_page, "/login", username="alice", password=PASSWORD)
        secrets.add(*(value for value in client.cookies.values() if len(value) > 40))
        verify_page = client.get("/login/verify")
        page_code = secrets.add_code(code_at(started["secret"], ctx))
        signed_in = submit(client, verify_page, "/login/verify", method="totp", code=page_code)
        assert signed_in.status_code == 303, signed_in.text
        secrets.add(*(value for value in client.cookies.values() if len(value) > 40))
        out = client.post("/logout", data={"csrf_token": csrf_of(client.get("/security"))}, follow_redirects=False)
        assert out.status_code == 303

    log_text = server_log_text(all_logs)
    # The capture really saw the server side at work (SQL with its parameters), or this test would prove nothing.
    assert "INSERT INTO audit_events" in log_text
    assert "INSERT INTO sessions" in log_text
    assert secrets.found_in(log_text) == []

    exported: list[str] = []
    audit.export(ctx, exported.append)
    assert len(exported) >= 5  # users created, setup, 2FA on, new recovery codes (and the sign-ins)
    assert secrets.found_in("\n".join(exported)) == []
