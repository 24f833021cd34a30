"""A real ``nidan serve`` process, driven as a person would: the setup link it prints, ``nidan user add``, and the
REST API over HTTP with codes from a real authenticator (OATH Toolkit's ``oathtool``).

Runs on SQLite and, when ``NIDAN_TEST_DATABASE_URL`` is set, on a brand-new empty PostgreSQL database, so the
migrations that ``serve`` applies on first start are exercised too.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import text

from nidan.bootstrap import build_runtime
from nidan.config import SecuritySettings, ServerSettings, Settings
from nidan.errors import SetupTokenInvalid
from nidan.services import setup
from tests.conftest import BACKENDS, FAST_SECURITY, PostgresDatabases

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
START_TIMEOUT = 60.0
SETUP_LINE = re.compile(
    r"^Create the first administrator: (http://127\.0\.0\.1:(\d+)/setup\?token=([A-Za-z0-9_-]{43}))$"
)


def oathtool_path() -> str:
    # Called in the test body, not a fixture: a missing client is a FAILURE, not a skip or an error.
    path = shutil.which("oathtool")
    if path is None:
        pytest.fail(
            "oathtool is not installed: the end-to-end sign-in test needs the real client "
            "(Debian/Ubuntu: apt-get install oathtool; scripts/test installs it)"
        )
    return path


def oathtool_code(secret: str, at: datetime | None = None) -> str:
    command = [oathtool_path(), "--totp", "-b"]
    if at is not None:
        command += ["--now", at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")]
    result = subprocess.run([*command, secret], capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode == 0, result.stderr
    code = result.stdout.strip()
    assert re.fullmatch(r"\d{6}", code), code
    return code


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(params=BACKENDS)
def environment(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresDatabases | None
) -> Iterator[dict[str, str]]:
    """The environment of every ``nidan`` process of one test: its own data directory and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_") or k == "NIDAN_TEST_DATABASE_URL"}
    env.update(
        NIDAN_DATA_DIR=str(tmp_path / "data"),
        NIDAN_CONFIG=str(tmp_path / "no-such-nidan.toml"),
        NIDAN_SECURITY_ARGON2_MEMORY_KIB=str(FAST_SECURITY["argon2_memory_kib"]),
        NIDAN_SECURITY_ARGON2_TIME_COST=str(FAST_SECURITY["argon2_time_cost"]),
        PYTHONUNBUFFERED="1",
    )
    if request.param == "sqlite":
        yield env
        return
    assert postgres is not None
    name = f"nidan_e2e_{uuid.uuid4().hex[:12]}"
    with postgres.admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))  # empty: serve must migrate it
    env["NIDAN_DATABASE_URL"] = postgres.url_for(name)
    yield env
    postgres.drop(name)


def nidan(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nidan", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


class Server:
    """``nidan serve`` in its own process group; stdout is read as it comes, stderr goes to a file."""

    def __init__(self, env: dict[str, str], log_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.stderr_path = log_dir / f"serve-{self.port}.stderr"
        self._stderr = self.stderr_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nidan", "serve", "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def describe(self) -> str:
        return "stdout:\n" + "\n".join(self.seen) + "\nstderr:\n" + self.stderr_path.read_text()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    pytest.fail(f"nidan serve exited with {self.process.returncode}\n{self.describe()}")
                continue
            self.seen.append(line)
            found = pattern.search(line)
            if found:
                return found
        pytest.fail(f"nidan serve did not print {pattern.pattern!r} in {timeout} s\n{self.describe()}")

    def wait_until_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"nidan serve exited with {self.process.returncode}\n{self.describe()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"nidan serve did not answer /healthz in {timeout} s\n{self.describe()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self._stderr.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


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

    # First start: migrations, keys, and a setup link; a second start prints a new link and the old one dies.
    with Server(environment, tmp_path) as first:
        old_link = first.wait_for_line(SETUP_LINE)
        assert int(old_link.group(2)) == first.port
        first.wait_until_healthy()
    assert (tmp_path / "data" / "keys" / "hash.key").exists()
    assert "Sign in at" not in "\n".join(first.seen)

    with Server(environment, tmp_path) as server:
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
