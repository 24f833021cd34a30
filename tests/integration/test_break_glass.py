"""Break-glass: ``nidan admin recover`` on the server resets a locked-out administrator and prints a one-time link
into setting up 2FA again; the web sign-in itself never has a way around 2FA.

The command runs in process (Typer's runner) on the test's data directory and database, on SQLite and PostgreSQL;
the web side is the ASGI app on the same storage, with the test's clock set to the real time the command uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from nidan.bootstrap import Runtime
from nidan.cli.main import app
from nidan.config import RateLimitSettings, SecuritySettings, ServerSettings, Settings
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, Method
from nidan.errors import InvalidCode, VerificationLocked
from nidan.services import audit, enrollment, signin, throttling
from nidan.web.app import create_app
from tests.conftest import FAST_SECURITY, FixedClock
from tests.helpers import PASSWORD, auth_header, code_at, make_user
from tests.integration.backup_support import assert_refused

Invoke = Callable[..., Result]
CLIENT = ClientInfo(ip="192.0.2.10", user_agent="pytest")
LINK = re.compile(r"^(\S+)/recover\?token=([A-Za-z0-9_-]{43})$", re.MULTILINE)
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
ERROR_CODE = re.compile(r'<code class="error-code">([a-z_]+)</code>')
HARD_LIMIT = 3


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The usual test settings, with a hard lock after three wrong codes (quick to reach)."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        server=ServerSettings(),
        security=SecuritySettings(**FAST_SECURITY),
        rate_limit=RateLimitSettings(hard_limit=HARD_LIMIT),
    )


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    env: dict[str, str | None] = {
        "NIDAN_DATA_DIR": str(settings.data_dir),
        "NIDAN_DATABASE_URL": settings.database_url,
        "NIDAN_KEYS_DIR": None,
        "NIDAN_CONFIG": str(tmp_path / "no-such-nidan.toml"),
        "NIDAN_SERVER_PUBLIC_URL": None,
        "NIDAN_SECURITY_ARGON2_MEMORY_KIB": str(FAST_SECURITY["argon2_memory_kib"]),
        "NIDAN_SECURITY_ARGON2_TIME_COST": str(FAST_SECURITY["argon2_time_cost"]),
    }

    def invoke(*args: str, extra_env: dict[str, str | None] | None = None) -> Result:
        result = CliRunner(env={**env, **(extra_env or {})}).invoke(app, list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


@pytest.fixture
def web(runtime: Runtime, clock: FixedClock) -> Iterator[TestClient]:
    # The command stamps the link with the real time; the app's clock starts there too.
    clock.set(datetime.now(UTC))
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        yield client


def admin_with_totp(runtime: Runtime, username: str = "root") -> str:
    ctx = runtime.services
    user = make_user(ctx, username, role=InstanceRole.ADMIN)
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT)
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    return started.secret


def wrong_code(secret: str, runtime: Runtime) -> str:
    return "000000" if code_at(secret, runtime.services) != "000000" else "111111"


def hard_lock(runtime: Runtime, secret: str, username: str = "root") -> None:
    """Wrong codes until the second step is refused for good."""
    ctx = runtime.services
    for _ in range(HARD_LIMIT):
        started = signin.login(ctx, username=username, password=PASSWORD, client=CLIENT)
        assert isinstance(started, signin.MfaRequired)
        with pytest.raises(InvalidCode):
            signin.complete_mfa(
                ctx, mfa_token=started.mfa_token, method=Method.TOTP, code=wrong_code(secret, runtime), client=CLIENT
            )
        ctx.clock.advance(5)  # type: ignore[attr-defined]  # past the short block (the link has an hour)
    started = signin.login(ctx, username=username, password=PASSWORD, client=CLIENT)
    assert isinstance(started, signin.MfaRequired)
    with pytest.raises(VerificationLocked):
        signin.complete_mfa(
            ctx, mfa_token=started.mfa_token, method=Method.TOTP, code=code_at(secret, ctx), client=CLIENT
        )


def recover(nidan: Invoke, username: str = "root") -> tuple[str, str]:
    """Run the command; returns the printed link's base and token."""
    result = nidan("admin", "recover", username)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    found = LINK.search(result.stdout)
    assert found, result.stdout
    return found.group(1), found.group(2)


def open_link(web: TestClient, token: str) -> str:
    """GET the link's page; returns its CSRF token."""
    page = web.get(f"/recover?token={token}")
    assert page.status_code == 200, page.text
    csrf = CSRF.search(page.text)
    assert csrf, page.text
    return csrf.group(1)


def post_link(web: TestClient, token: str, csrf: str) -> httpx.Response:
    response: httpx.Response = web.post("/recover", data={"csrf_token": csrf, "token": token}, follow_redirects=False)
    return response


def test_a_hard_locked_admin_recovers_through_the_link(nidan: Invoke, runtime: Runtime, web: TestClient) -> None:
    ctx = runtime.services
    secret = admin_with_totp(runtime)
    before = signin.login(ctx, username="root", password=PASSWORD, client=CLIENT)
    assert isinstance(before, signin.MfaRequired)
    old = signin.complete_mfa(
        ctx, mfa_token=before.mfa_token, method=Method.TOTP, code=code_at(secret, ctx), client=CLIENT
    )
    assert isinstance(old, signin.Authenticated)
    hard_lock(runtime, secret)
    assert throttling.status(ctx, "root").second_factor.locked_at is not None

    result = nidan("admin", "recover", "root")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    out = result.stdout
    base, token = LINK.search(out).groups()  # type: ignore[union-attr]
    assert base == "http://127.0.0.1:8000"
    assert "once, within 60 minutes" in out and "setting up an authenticator app" in out
    assert "1 session ended" in out

    # The lock is gone, the authenticator app too, and every session ended.
    blocks = throttling.status(ctx, "root")
    assert blocks.second_factor.locked_at is None and blocks.second_factor.failures == 0
    assert not enrollment.security_state(ctx, blocks.user.id).totp_enabled
    assert web.get("/api/v1/me", headers=auth_header(old.session_token)).status_code == 401
    # The old code opens nothing: a password sign-in is now led into setup, never into a session.
    again = signin.login(ctx, username="root", password=PASSWORD, client=CLIENT)
    assert isinstance(again, signin.SetupRequired) and again.reason == "administrator"

    # Opening the link and pressing the button: straight into setting up 2FA.
    redeemed = post_link(web, token, open_link(web, token))
    assert redeemed.status_code == 303 and redeemed.headers["location"] == "/security/setup?via=recovery_link"
    enrolment_token = web.cookies.get("nidan_session")
    assert enrolment_token is not None and enrolment_token.startswith(signin.ENROLMENT_PREFIX)
    setup_page = web.get("/security/setup")
    assert setup_page.status_code == 200 and "An administrator reset your two-step verification" in setup_page.text
    # Only the setup: the account pages send it back there.
    elsewhere = web.get("/security/tokens", follow_redirects=False)
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/security/setup"

    # The link worked once.
    second = post_link(web, token, open_link_csrf(web))
    assert second.status_code == 401 and ERROR_CODE.findall(second.text) == ["recovery_link_invalid"]
    assert web.get(f"/recover?token={token}").status_code == 401

    # Setting up the new authenticator with the enrolment session gives the administrator a full session.
    setup = auth_header(enrolment_token)
    started = web.post("/api/v1/me/totp", headers=setup)
    assert started.status_code == 200, started.text
    activated = web.post(
        "/api/v1/me/totp/activate", json={"code": code_at(started.json()["secret"], ctx)}, headers=setup
    )
    assert activated.status_code == 200, activated.text
    full = auth_header(activated.json()["session_token"])
    assert web.get("/api/v1/admin/users", headers=full).status_code == 200

    recovered = audit.all_events(ctx, event_type=EventType.ADMIN_RECOVERED)
    assert [(r.event.actor_user_id, r.event.subject_username) for r in recovered] == [(None, "root")]
    details = recovered[0].event.details
    assert details["had_two_factor"] is True and int(details["counters_cleared"]) >= 1  # type: ignore[arg-type]
    assert recovered[0].event.user_agent is not None and "command line" in recovered[0].event.user_agent
    (used,) = [r.event for r in audit.all_events(ctx, event_type=EventType.RECOVERY_LINK_USED)]
    assert used.actor_username == "root" and used.client_ip is not None
    setup_required = audit.all_events(ctx, event_type=EventType.SIGN_IN_SETUP_REQUIRED)
    assert any(r.event.details.get("method") == "recovery_link" for r in setup_required)


def open_link_csrf(web: TestClient) -> str:
    """A CSRF token from any page (the spent link's own page is an error page now)."""
    page = web.get("/login")
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def test_the_link_prints_the_public_url_and_a_new_one_replaces_it(
    nidan: Invoke, runtime: Runtime, web: TestClient
) -> None:
    admin_with_totp(runtime)
    _, first = recover(nidan)
    result = nidan("admin", "recover", "root", extra_env={"NIDAN_SERVER_PUBLIC_URL": "https://2fa.example.com/"})
    found = LINK.search(result.stdout)
    assert found and found.group(1) == "https://2fa.example.com", result.stdout
    assert "0 sessions ended" in result.stdout
    stale = web.get(f"/recover?token={first}")
    assert stale.status_code == 401 and ERROR_CODE.findall(stale.text) == ["recovery_link_invalid"]
    assert web.get(f"/recover?token={found.group(2)}").status_code == 200


def test_the_link_uses_the_address_serve_was_started_with(
    nidan: Invoke, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """Started on another port than the settings say (`scripts/serve --port 9123`), the server is there, not at
    the configured address: serve notes where it listens in the data directory, and the link follows."""
    admin_with_totp(runtime)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    started = nidan("serve", "--host", "0.0.0.0", "--port", "9123")  # noqa: S104 - never bound: uvicorn is a stub
    assert started.exit_code == 0, (started.stdout, started.stderr)
    assert (settings.data_dir / "serving.json").exists()
    result = nidan("admin", "recover", "root")
    found = LINK.search(result.stdout)
    assert found and found.group(1) == "http://127.0.0.1:9123", result.stdout
    assert "has not been started" not in result.stdout
    # A public_url, when set, is what people open: it wins over where the server listens.
    behind_proxy = nidan("admin", "recover", "root", extra_env={"NIDAN_SERVER_PUBLIC_URL": "https://2fa.example.com"})
    found = LINK.search(behind_proxy.stdout)
    assert found and found.group(1) == "https://2fa.example.com", behind_proxy.stdout


def test_before_any_start_the_link_uses_the_configured_address_and_says_so(nidan: Invoke, runtime: Runtime) -> None:
    admin_with_totp(runtime)
    configured = {"NIDAN_SERVER_HOST": "127.0.0.5", "NIDAN_SERVER_PORT": "9500"}
    result = nidan("admin", "recover", "root", extra_env=configured)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    found = LINK.search(result.stdout)
    assert found and found.group(1) == "http://127.0.0.5:9500", result.stdout
    assert "nidan serve has not been started with the data directory" in result.stdout
    assert "Set server.public_url" in result.stdout


def test_the_link_expires_after_an_hour(nidan: Invoke, runtime: Runtime, web: TestClient) -> None:
    admin_with_totp(runtime)
    _, token = recover(nidan)
    csrf = open_link(web, token)
    runtime.services.clock.advance(61 * 60)  # type: ignore[attr-defined]
    late = post_link(web, token, csrf)
    assert late.status_code == 401 and ERROR_CODE.findall(late.text) == ["recovery_link_invalid"]
    assert "nidan_session" not in web.cookies


def test_only_instance_administrators_are_recovered(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    bob = make_user(ctx, "bob")
    started = enrollment.start_totp(ctx, bob)
    enrollment.activate_totp(ctx, bob, code_at(started.secret, ctx), client=CLIENT)
    line = assert_refused(nidan("admin", "recover", "bob"), "invalid_request")
    assert "bob is not an instance administrator" in line and "nidan user reset-2fa bob" in line
    assert enrollment.security_state(ctx, bob.id).totp_enabled
    assert_refused(nidan("admin", "recover", "nobody"), "user_not_found")
    assert not audit.all_events(ctx, event_type=EventType.ADMIN_RECOVERED)


def test_the_web_sign_in_has_no_way_around_2fa(runtime: Runtime, web: TestClient) -> None:
    ctx = runtime.services
    admin_with_totp(runtime)
    answer = web.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
    assert answer.status_code == 200 and answer.json()["status"] == "mfa_required"
    assert "session_token" not in answer.json() and "setup_token" not in answer.json()
    # The page sign-in: on to the code, with no session cookie.
    page = web.get("/login")
    csrf = CSRF.search(page.text)
    assert csrf
    sent = web.post(
        "/login",
        data={"csrf_token": csrf.group(1), "username": "root", "password": PASSWORD},
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"] == "/login/verify"
    assert "nidan_session" not in web.cookies
    # A made-up link, or the first-admin setup link's address, opens nothing either.
    for url in ("/recover", "/recover?token=" + "A" * 43, "/recover?token=nope"):
        refused = web.get(url)
        assert refused.status_code == 401 and ERROR_CODE.findall(refused.text) == ["recovery_link_invalid"], url
    forged = web.post("/recover", data={"csrf_token": csrf.group(1), "token": "A" * 43}, follow_redirects=False)
    assert forged.status_code == 401 and "nidan_session" not in web.cookies
    assert not audit.all_events(ctx, event_type=EventType.RECOVERY_LINK_USED)
