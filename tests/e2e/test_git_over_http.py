"""Git over HTTP behind nidan's Basic gate, with the real programs a Git host runs: ``git`` clones and pushes through
nginx, whose ``auth_request`` asks a real ``nidan serve`` (``GET /auth/basic?scope=...``) before fcgiwrap runs
``git http-backend``. nginx runs the configuration the documentation gives (``docs/examples/nginx-git.conf``).

Bob has two-step verification on: his password opens nothing, his tokens open what their scopes allow. Alice has
none, so (the instance default) her password still works for Git. One nidan, nginx and fcgiwrap serve the module.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAST_SECURITY
from tests.e2e.git_http import ACCESS_DENIED, GitHttp, git_environment, git_ok, require_programs, run_git
from tests.e2e.support import PASSWORD, Server, init, nidan, oathtool_code, oathtool_path

# One nginx, fcgiwrap and nidan per module: keep its tests on one xdist worker (scripts/test: --dist loadgroup).
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("git_over_http")]

#: How git shows the text/plain body of a refused request: each line prefixed with "remote: ".
REFUSAL = f"remote: {ACCESS_DENIED}"


@dataclass(frozen=True)
class Gate:
    git: GitHttp
    server: Server
    env: dict[str, str]
    work: Path
    read_token: str
    write_token: str
    app_password: str

    def describe(self) -> str:
        return self.git.describe() + "\n--- nidan serve ---\n" + self.server.describe()[-4000:]


def nidan_environment(directory: Path) -> dict[str, str]:
    """Like the e2e ``environment`` fixture, for one module and on SQLite only: the gate, not the back end, is
    what this module is about (the services' tests cover PostgreSQL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_")}
    env.update(
        NIDAN_DATA_DIR=str(directory / "data"),
        NIDAN_CONFIG=str(directory / "no-such-nidan.toml"),
        NIDAN_SECURITY_ARGON2_MEMORY_KIB=str(FAST_SECURITY["argon2_memory_kib"]),
        NIDAN_SECURITY_ARGON2_TIME_COST=str(FAST_SECURITY["argon2_time_cost"]),
        # As docs/reverse-proxy.md says: nginx is a trusted proxy, so nidan sees each client's own address.
        NIDAN_SERVER_TRUSTED_PROXIES="127.0.0.1",
        # Refusals below on purpose, in whatever order the tests run; the backoff has its own end-to-end test.
        NIDAN_RATE_LIMIT_TOLERATED_FAILURES="10",
        # Every client here is 127.0.0.1: its own counter must not block the module (the block test uses a name).
        NIDAN_RATE_LIMIT_IP_TOLERATED_FAILURES="1000",
        PYTHONUNBUFFERED="1",
    )
    return env


def add_user(env: dict[str, str], username: str) -> None:
    added = nidan(
        env, "user", "add", username, "--email", f"{username}@example.com", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(http: httpx.Client, path: str, body: dict[str, object], session: str | None = None) -> dict[str, str]:
    response = http.post(path, json=body, headers=bearer(session) if session else None)
    assert response.status_code in (200, 201), f"{path}: {response.status_code} {response.text}"
    answer: dict[str, str] = response.json()
    return answer


def enable_totp_and_sign_in_again(http: httpx.Client, username: str) -> str:
    """Turn TOTP on, then sign in with password + code: the session a 2FA user has, fresh enough to make tokens."""
    first = post(http, "/api/v1/auth/login", {"username": username, "password": PASSWORD})
    assert first["status"] == "authenticated", first
    session = first["session_token"]
    secret = post(http, "/api/v1/me/totp", {}, session)["secret"]
    post(http, "/api/v1/me/totp/activate", {"code": oathtool_code(secret)}, session)
    challenge = post(http, "/api/v1/auth/login", {"username": username, "password": PASSWORD})
    assert challenge["status"] == "mfa_required", challenge
    # The next time step's code: inside the window, and never the step the activation spent.
    code = oathtool_code(secret, datetime.now(UTC) + timedelta(seconds=30))
    done = post(http, "/api/v1/auth/mfa", {"mfa_token": challenge["mfa_token"], "method": "totp", "code": code})
    return done["session_token"]


def create_token(http: httpx.Client, session: str, name: str, scopes: list[str]) -> str:
    created = post(http, "/api/v1/me/tokens", {"name": name, "scopes": scopes, "expires_at": None}, session)
    assert created["kind"] == "personal_access_token", created
    assert created["token"].startswith("nidan_pat_"), created
    return created["token"]


class GitHost:
    """Starts nidan, fcgiwrap and nginx on the first test that asks (in the test's body, so that a missing program
    is that test's failure, not a setup error) and serves every later test of the module with them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.gate: Gate | None = None
        self.failed = False
        self.cleanup = ExitStack()

    def ready(self) -> Gate:
        programs = require_programs()
        oathtool_path()
        if self.failed:
            pytest.fail("nidan, nginx or fcgiwrap did not start: see the module's first failure")
        if self.gate is None:
            try:
                self.gate = self._start(programs)
            except BaseException:
                self.failed = True
                raise
        return self.gate

    def _start(self, programs: dict[str, str]) -> Gate:
        env = nidan_environment(self.directory)
        init(env)
        add_user(env, "bob")
        add_user(env, "alice")
        server = self.cleanup.enter_context(Server(env, self.directory))
        server.wait_until_healthy()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            session = enable_totp_and_sign_in_again(http, "bob")
            read_token = create_token(http, session, "clone only", ["read_repository"])
            write_token = create_token(http, session, "clone and push", ["read_repository", "write_repository"])
            app = post(http, "/api/v1/me/app-passwords", {"name": "laptop git"}, session)
            assert app["kind"] == "app_password" and app["token"].startswith("nidan_app_"), app
        git = GitHttp(self.directory, f"127.0.0.1:{server.port}")
        self.cleanup.callback(git.stop)
        git_env = git_environment(self.directory / "home")
        git.start(programs, git_env)
        return Gate(git, server, git_env, self.directory / "work", read_token, write_token, app["token"])


@pytest.fixture(scope="module")
def git_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHost]:
    host = GitHost(tmp_path_factory.mktemp("git-over-http"))
    with host.cleanup:
        yield host


@pytest.fixture(autouse=True)
def logs_on_failure(request: pytest.FixtureRequest, git_host: GitHost) -> Iterator[None]:
    """When a test fails, show what nginx, fcgiwrap and nidan logged (printed output is reported on failure)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before and git_host.gate is not None:
        print(git_host.gate.describe())


def clone(gate: Gate, username: str, secret: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    target = gate.work / f"clone-{secrets.token_hex(4)}"
    return target, run_git(gate.env, "clone", gate.git.url(username, secret), str(target))


def cloned(gate: Gate, username: str, secret: str) -> Path:
    target, result = clone(gate, username, secret)
    assert result.returncode == 0, f"clone failed:\n{result.stderr}"
    return target


def commit(gate: Gate, work: Path, message: str) -> str:
    (work / f"{secrets.token_hex(4)}.txt").write_text(message + "\n")
    git_ok(gate.env, "add", "--all", cwd=work)
    git_ok(gate.env, "commit", "--quiet", "-m", message, cwd=work)
    return git_ok(gate.env, "rev-parse", "HEAD", cwd=work).strip()


def assert_refused(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode != 0, result.stderr
    assert REFUSAL in result.stderr.splitlines(), result.stderr
    assert "Authentication failed" in result.stderr, result.stderr


def test_a_read_token_clones(git_host: GitHost) -> None:
    gate = git_host.ready()
    work = cloned(gate, "bob", gate.read_token)
    assert git_ok(gate.env, "log", "--format=%s", cwd=work).splitlines()[-1] == "Initial commit"
    assert (work / "README").read_text() == "nidan guards this repository\n"


def test_a_push_needs_write_repository(git_host: GitHost) -> None:
    gate = git_host.ready()
    work = cloned(gate, "bob", gate.read_token)
    mine = commit(gate, work, "Pushed with the write token")
    before = gate.git.head(gate.env)

    refused = run_git(gate.env, "push", "origin", "HEAD:main", cwd=work)
    assert_refused(refused)
    assert gate.git.head(gate.env) == before

    pushed = run_git(gate.env, "push", gate.git.url("bob", gate.write_token), "HEAD:main", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    assert gate.git.head(gate.env) == mine
    # git-http-backend ran as the user nidan named (X-Nidan-User -> REMOTE_USER), and never saw the token.
    assert gate.git.pushed_by().endswith("REMOTE_USER=bob\nHTTP_AUTHORIZATION=\n"), gate.git.pushed_by()


def test_a_read_token_cannot_post_a_pack(git_host: GitHost) -> None:
    """What git never sends once discovery is refused, sent by hand: the push itself needs write_repository too,
    and the refusal nginx passes on is nidan's, with one WWW-Authenticate."""
    gate = git_host.ready()
    before = gate.git.head(gate.env)
    response = httpx.post(
        f"http://127.0.0.1:{gate.git.port}/{gate.git.repository_name}/git-receive-pack",
        auth=("bob", gate.read_token),
        content=b"0000",
        headers={"Content-Type": "application/x-git-receive-pack-request"},
        timeout=30,
    )
    assert response.status_code == 401, response.text
    assert response.headers.get_list("www-authenticate") == ['Basic realm="nidan"']
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.rstrip("\n") == ACCESS_DENIED
    assert gate.git.head(gate.env) == before


def test_the_password_of_a_user_with_2fa_is_refused(git_host: GitHost) -> None:
    gate = git_host.ready()
    target, result = clone(gate, "bob", PASSWORD)
    assert_refused(result)
    assert not target.exists()


def test_the_password_of_a_user_without_2fa_clones(git_host: GitHost) -> None:
    gate = git_host.ready()
    work = cloned(gate, "alice", PASSWORD)
    assert (work / "README").exists()


def test_an_app_password_clones_and_pushes(git_host: GitHost) -> None:
    gate = git_host.ready()
    work = cloned(gate, "bob", gate.app_password)
    mine = commit(gate, work, "Pushed with the app password")
    pushed = run_git(gate.env, "push", "origin", "HEAD:main", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    assert gate.git.head(gate.env) == mine
    assert gate.git.pushed_by().endswith("REMOTE_USER=bob\nHTTP_AUTHORIZATION=\n"), gate.git.pushed_by()


def test_a_wrong_token_is_refused(git_host: GitHost) -> None:
    gate = git_host.ready()
    made_up = "nidan_pat_" + secrets.token_urlsafe(32)
    target, result = clone(gate, "bob", made_up)
    assert_refused(result)
    assert not target.exists()


def test_a_blocked_username_is_told_how_long_to_wait(git_host: GitHost) -> None:
    """After the tolerated failures the gate answers 403 with Retry-After; nginx's error page asks nidan for the
    words, so git shows them instead of nginx's HTML page. A valid token still gets in meanwhile."""
    gate = git_host.ready()
    url = f"http://127.0.0.1:{gate.git.port}/{gate.git.repository_name}/info/refs?service=git-upload-pack"

    def attempt() -> httpx.Response:
        return httpx.get(url, auth=("mallory", "guess"), timeout=30)

    for _ in range(11):  # tolerated 10: the 11th blocks for 1 s
        assert attempt().status_code == 401
    # Let the block grow past the time one git command takes: each failure after a block doubles it.
    for wait in (1.05, 2.05):
        time.sleep(wait)
        assert attempt().status_code == 401
    blocked = attempt()  # now blocked for 4 s
    assert blocked.status_code == 403, blocked.text
    assert blocked.headers["content-type"].startswith("text/plain")
    assert blocked.text.startswith("Too many failed attempts. Wait "), blocked.text
    assert 1 <= int(blocked.headers["retry-after"]) <= 4

    target, result = clone(gate, "mallory", "guess")
    assert result.returncode != 0 and not target.exists()
    assert any(line.startswith("remote: Too many failed attempts. Wait ") for line in result.stderr.splitlines()), (
        result.stderr
    )
    cloned(gate, "bob", gate.read_token)
