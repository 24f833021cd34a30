"""The ``nidan`` command line, driven in process with Typer's runner against a real data directory and database.

Every test runs on SQLite and, when ``NIDAN_TEST_DATABASE_URL`` is set, on PostgreSQL (the ``settings`` fixture).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from nidan.bootstrap import Runtime, build_runtime
from nidan.cli import serve as serve_module
from nidan.cli.main import app
from nidan.config import Settings
from nidan.core.models import ClientInfo, InstanceRole, Method
from nidan.errors import AuthenticationRequired, InvalidCode, InvalidCredentials, SetupTokenInvalid
from nidan.services import enrollment, setup, signin
from nidan.web.access_log import AccessLog
from tests.conftest import FAST_SECURITY
from tests.helpers import PASSWORD, code_at, make_user

NEW_PASSWORD = "a brand new passphrase"
CLIENT = ClientInfo(ip="127.0.0.1", user_agent="pytest")

Invoke = Callable[..., Result]


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str | None]:
    """The environment a command sees: the test's data directory and database, cheap argon2, no nidan.toml."""
    return {
        "NIDAN_DATA_DIR": str(settings.data_dir),
        "NIDAN_DATABASE_URL": settings.database_url,
        "NIDAN_KEYS_DIR": None,
        "NIDAN_CONFIG": str(tmp_path / "no-such-nidan.toml"),
        "NIDAN_SECURITY_ARGON2_MEMORY_KIB": str(FAST_SECURITY["argon2_memory_kib"]),
        "NIDAN_SECURITY_ARGON2_TIME_COST": str(FAST_SECURITY["argon2_time_cost"]),
    }


@pytest.fixture
def nidan(cli_env: dict[str, str | None]) -> Invoke:
    def invoke(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Result:
        runner = CliRunner(env={**cli_env, **(env or {})})
        result = runner.invoke(app, list(args), input=input)
        # A crash would show as an exception other than the SystemExit every command ends with.
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


@pytest.fixture
def live(settings: Settings) -> Iterator[Runtime]:
    """A runtime on the same storage with the real clock, to check what the commands did."""
    built = build_runtime(settings)
    yield built
    built.engine.dispose()


def add_user(nidan: Invoke, username: str = "alice", *extra: str, password: str = PASSWORD) -> Result:
    return nidan(
        "user", "add", username, "--email", f"{username.lower()}@example.com", "--password-stdin", *extra,
        input=password + "\n",
    )  # fmt: skip


def assert_refused(result: Result, code: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    assert f"error [{code}]:" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- user add ------------------------------------------------------------------------------------------------


def test_user_add_with_password_from_stdin_can_sign_in(nidan: Invoke, live: Runtime) -> None:
    result = add_user(nidan, "Alice")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Created member Alice <alice@example.com>."
    signed_in = signin.login(live.services, username="alice", password=PASSWORD, client=CLIENT)
    assert isinstance(signed_in, signin.Authenticated)
    assert signed_in.user.username == "Alice"
    assert signed_in.user.role is InstanceRole.MEMBER


def test_password_from_stdin_keeps_spaces_and_drops_only_the_newline(nidan: Invoke, live: Runtime) -> None:
    password = "  spaces at both ends  "
    assert (
        nidan("user", "add", "bob", "--email", "b@example.com", "--password-stdin", input=password + "\r\n").exit_code
        == 0
    )
    assert isinstance(
        signin.login(live.services, username="bob", password=password, client=CLIENT), signin.Authenticated
    )
    with pytest.raises(InvalidCredentials):
        signin.login(live.services, username="bob", password=password.strip(), client=CLIENT)


def test_user_add_admin_role_ends_setup(nidan: Invoke, live: Runtime) -> None:
    assert setup.needs_setup(live.services)
    result = add_user(nidan, "root", "--role", "admin")
    assert result.exit_code == 0, result.output
    assert "Created admin root" in result.stdout
    assert not setup.needs_setup(live.services)


def test_user_add_prompts_twice_without_password_stdin(nidan: Invoke, live: Runtime) -> None:
    result = nidan("user", "add", "carol", "--email", "c@example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert isinstance(
        signin.login(live.services, username="carol", password=PASSWORD, client=CLIENT), signin.Authenticated
    )


def test_user_add_prompt_with_mismatched_confirmation_creates_nobody(nidan: Invoke) -> None:
    result = nidan("user", "add", "carol", "--email", "c@example.com", input=f"{PASSWORD}\nsomething else\n")
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert json.loads(nidan("user", "list", "--json").stdout) == []


def test_duplicate_username_is_refused_case_insensitively(nidan: Invoke) -> None:
    assert add_user(nidan, "alice").exit_code == 0
    result = add_user(nidan, "ALICE")
    assert_refused(result, "username_taken")
    assert "already taken" in result.stderr
    assert [u["username"] for u in json.loads(nidan("user", "list", "--json").stdout)] == ["alice"]


def test_weak_password_is_refused(nidan: Invoke) -> None:
    result = add_user(nidan, "alice", password="short")
    assert_refused(result, "weak_password")
    assert "at least 12 characters" in result.stderr
    assert json.loads(nidan("user", "list", "--json").stdout) == []


def test_empty_stdin_is_refused(nidan: Invoke) -> None:
    result = nidan("user", "add", "alice", "--email", "a@example.com", "--password-stdin", input="")
    assert_refused(result, "invalid_request")
    assert "standard input" in result.stderr


@pytest.mark.parametrize(
    ("username", "email"),
    [
        ("not a name", "a@example.com"),
        ("alice-", "a@example.com"),
        ("x" * 65, "a@example.com"),
        ("alice", "not-an-email"),
    ],
)
def test_invalid_username_or_email_is_refused(nidan: Invoke, username: str, email: str) -> None:
    result = nidan("user", "add", username, "--email", email, "--password-stdin", input=PASSWORD + "\n")
    assert_refused(result, "invalid_request")


def test_unknown_role_is_a_usage_error(nidan: Invoke) -> None:
    result = add_user(nidan, "alice", "--role", "owner")
    assert result.exit_code == 2, result.output
    assert "--role" in result.stderr
    assert "admin" in result.stderr and "member" in result.stderr
    assert json.loads(nidan("user", "list", "--json").stdout) == []


# -- user list -----------------------------------------------------------------------------------------------


def test_user_list_when_empty(nidan: Invoke) -> None:
    result = nidan("user", "list")
    assert result.exit_code == 0
    assert "No users yet" in result.stdout


def test_user_show_tells_an_admin_about_a_drifting_phone_clock(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    ctx.clock.set(datetime.now(UTC))  # type: ignore[attr-defined]  # the command looks at the last 30 days
    bob = make_user(ctx, "bob")
    secret = enrollment.start_totp(ctx, bob).secret
    enrollment.activate_totp(ctx, bob, code_at(secret, ctx), client=CLIENT)
    attempt = signin.login(ctx, username="bob", password=PASSWORD, client=CLIENT)
    assert isinstance(attempt, signin.MfaRequired)
    with pytest.raises(InvalidCode):  # the phone is 8 minutes behind
        signin.complete_mfa(
            ctx, mfa_token=attempt.mfa_token, method=Method.TOTP, code=code_at(secret, ctx, -16), client=CLIENT
        )

    shown = nidan("user", "show", "BOB")
    assert shown.exit_code == 0, shown.output
    assert "Two-step:        on since" in shown.stdout
    assert "Recovery codes:  16 left" in shown.stdout
    assert "about 8 min behind" in shown.stdout
    record = json.loads(nidan("user", "show", "bob", "--json").stdout)
    assert record["two_factor"] is True
    assert [o["offset_seconds"] for o in record["clock_observations"]] == [-480]

    make_user(ctx, "carol")
    plain = nidan("user", "show", "carol").stdout
    assert "Two-step:        off" in plain and "no drift seen" in plain
    assert_refused(nidan("user", "show", "nobody"), "user_not_found")


def test_user_unblock_lifts_a_block_and_show_tells_it(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    ctx.clock.set(datetime.now(UTC))  # type: ignore[attr-defined]  # the command compares with the real time
    make_user(ctx, "bob")
    attacker = ClientInfo(ip="203.0.113.66")
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            signin.login(ctx, username="bob", password="wrong password", client=attacker)
    shown = nidan("user", "show", "bob").stdout
    assert "passwords from 203.0.113.66: blocked until" in shown
    assert "second step: no recent failures" in shown

    result = nidan("user", "unblock", "bob", "--reason", "verified by phone")
    assert result.exit_code == 0, result.output
    assert "Cleared 1 failure counter for bob." in result.stdout
    assert "passwords from" not in nidan("user", "show", "bob").stdout
    signin.login(ctx, username="bob", password=PASSWORD, client=attacker)
    assert_refused(nidan("user", "unblock", "nobody"), "user_not_found")


def test_user_list_shows_role_two_factor_and_sign_in(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice", role=InstanceRole.ADMIN)
    bob = make_user(ctx, "bob")
    secret = enrollment.start_totp(ctx, bob).secret
    enrollment.activate_totp(ctx, bob, code_at(secret, ctx), client=CLIENT)
    signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)

    result = nidan("user", "list")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["USERNAME", "EMAIL", "ROLE", "2FA", "CREATED", "(UTC)", "LAST", "SIGN-IN", "(UTC)"]
    assert [row.split()[:4] for row in rows] == [
        ["alice", "alice@example.com", "admin", "off"],
        ["bob", "bob@example.com", "member", "on"],
    ]
    assert rows[0].split()[4:] == ["2026-03-14", "15:09", "2026-03-14", "15:09"]  # the fixed clock, in UTC
    assert rows[1].endswith("never")

    listed = json.loads(nidan("user", "list", "--json").stdout)
    assert listed == [
        {
            "username": "alice",
            "email": "alice@example.com",
            "role": "admin",
            "two_factor": False,
            "recovery_codes_remaining": 0,
            "created_at": "2026-03-14T15:09:26+00:00",
            "last_sign_in_at": "2026-03-14T15:09:26+00:00",
        },
        {
            "username": "bob",
            "email": "bob@example.com",
            "role": "member",
            "two_factor": True,
            "recovery_codes_remaining": 16,
            "created_at": "2026-03-14T15:09:26+00:00",
            "last_sign_in_at": None,
        },
    ]


# -- user passwd ---------------------------------------------------------------------------------------------


def test_passwd_changes_the_password_and_ends_sessions(nidan: Invoke, live: Runtime) -> None:
    ctx = live.services
    make_user(ctx, "alice")
    make_user(ctx, "bob")
    tokens = []
    for _ in range(2):
        signed_in = signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
        assert isinstance(signed_in, signin.Authenticated)
        tokens.append(signed_in.session_token)
    bobs = signin.login(ctx, username="bob", password=PASSWORD, client=CLIENT)
    assert isinstance(bobs, signin.Authenticated)

    result = nidan("user", "passwd", "ALICE", "--password-stdin", input=NEW_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Password changed for alice; 2 sessions ended (signed out everywhere)."

    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    assert isinstance(signin.login(ctx, username="alice", password=NEW_PASSWORD, client=CLIENT), signin.Authenticated)
    for token in tokens:
        with pytest.raises(AuthenticationRequired):
            signin.current_session(ctx, token)
    assert signin.current_session(ctx, bobs.session_token).user.username == "bob"  # others keep theirs


def test_passwd_prompts_when_not_reading_stdin(nidan: Invoke, live: Runtime) -> None:
    make_user(live.services, "alice")
    result = nidan("user", "passwd", "alice", input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "0 sessions ended" in result.stdout
    assert isinstance(
        signin.login(live.services, username="alice", password=NEW_PASSWORD, client=CLIENT), signin.Authenticated
    )


def test_passwd_unknown_user(nidan: Invoke) -> None:
    result = nidan("user", "passwd", "nobody", "--password-stdin", input=NEW_PASSWORD + "\n")
    assert_refused(result, "user_not_found")
    assert "nobody" in result.stderr


def test_passwd_weak_password_keeps_the_old_one(nidan: Invoke, live: Runtime) -> None:
    make_user(live.services, "alice")
    assert_refused(nidan("user", "passwd", "alice", "--password-stdin", input="short\n"), "weak_password")
    assert isinstance(
        signin.login(live.services, username="alice", password=PASSWORD, client=CLIENT), signin.Authenticated
    )


# -- configuration -------------------------------------------------------------------------------------------


def test_config_file_option(nidan: Invoke, settings: Settings, tmp_path: Path, live: Runtime) -> None:
    config = tmp_path / "elsewhere" / "nidan.toml"
    config.parent.mkdir()
    config.write_text(
        f'data_dir = "{settings.data_dir}"\n'
        f'database_url = "{settings.database_url}"\n'
        "[security]\n"
        f"argon2_memory_kib = {FAST_SECURITY['argon2_memory_kib']}\n"
        f"argon2_time_cost = {FAST_SECURITY['argon2_time_cost']}\n",
        encoding="utf-8",
    )
    unset: dict[str, str | None] = {
        "NIDAN_DATA_DIR": None,
        "NIDAN_DATABASE_URL": None,
        "NIDAN_SECURITY_ARGON2_MEMORY_KIB": None,
        "NIDAN_SECURITY_ARGON2_TIME_COST": None,
    }
    result = nidan(
        "--config", str(config), "user", "add", "alice", "--email", "a@example.com", "--password-stdin",
        input=PASSWORD + "\n", env=unset,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert isinstance(
        signin.login(live.services, username="alice", password=PASSWORD, client=CLIENT), signin.Authenticated
    )


def test_missing_config_file_is_a_configuration_error(nidan: Invoke, tmp_path: Path) -> None:
    result = nidan("--config", str(tmp_path / "absent.toml"), "user", "list")
    assert_refused(result, "configuration_error", exit_code=2)
    assert "does not exist" in result.stderr


@pytest.mark.parametrize("command", [["user", "list"], ["serve"]])
def test_invalid_setting_names_the_variable(nidan: Invoke, command: list[str]) -> None:
    result = nidan(*command, env={"NIDAN_SERVER_PORT": "eighty"})
    assert_refused(result, "configuration_error", exit_code=2)
    assert "NIDAN_SERVER_PORT" in result.stderr


def test_a_default_organisation_tolerance_laxer_than_the_instance_is_refused(nidan: Invoke) -> None:
    result = nidan(
        "user", "list", env={"NIDAN_POLICY_TOLERATED_FAILURES": "5", "NIDAN_RATE_LIMIT_TOLERATED_FAILURES": "3"}
    )
    assert_refused(result, "configuration_error", exit_code=2)
    assert "policy.tolerated_failures (5) is more than rate_limit.tolerated_failures (3)" in result.stderr
    assert "NIDAN_ (" not in result.stderr  # a rule between two settings names them, not an empty path
    equal = nidan(
        "user", "list", env={"NIDAN_POLICY_TOLERATED_FAILURES": "3", "NIDAN_RATE_LIMIT_TOLERATED_FAILURES": "3"}
    )
    assert equal.exit_code == 0, equal.stderr


def test_missing_key_is_reported_by_name(nidan: Invoke, runtime: Runtime, settings: Settings) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    enrollment.activate_totp(ctx, alice, code_at(enrollment.start_totp(ctx, alice).secret, ctx), client=CLIENT)
    lost = next(settings.resolved_keys_dir.glob("seal-*.key"))
    lost.unlink()
    (settings.resolved_keys_dir / "primary").unlink()

    for command in (["user", "list"], ["serve"]):
        result = nidan(*command)
        assert_refused(result, "key_missing", exit_code=2)
        assert lost.name in result.stderr


# -- serve (uvicorn replaced by a recorder; tests/e2e runs the real server) ---------------------------------


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """What ``uvicorn.run`` was called with, and the NIDAN_ environment it would hand its workers."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def record(*args: Any, **kwargs: Any) -> None:
        environment = {name: value for name, value in os.environ.items() if name.startswith("NIDAN_")}
        # uvicorn's own access log is off: nidan's (``nidan.web.access_log``, no query strings) is around the app.
        assert kwargs.pop("access_log") is False
        calls.append((args, {**kwargs, "environment": environment}))

    monkeypatch.setattr(uvicorn, "run", record)
    for name in ("NIDAN_DATA_DIR", "NIDAN_DATABASE_URL", "NIDAN_CONFIG", "NIDAN_KEYS_DIR"):
        monkeypatch.setenv(name, "restored-after-the-test")  # serve exports these for worker processes
    return calls


def setup_token_in(output: str, url: str = "http://127.0.0.1:8000/") -> str:
    prefix = f"Create the first administrator: {url}setup?token="
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, output
    return lines[0].removeprefix(prefix)


def test_serve_prints_a_new_setup_link_each_start_until_an_admin_exists(
    nidan: Invoke, live: Runtime, uvicorn_calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
) -> None:
    first = nidan("serve")
    assert first.exit_code == 0, first.output
    assert "nidan is at http://127.0.0.1:8000/" in first.stdout
    assert "expires in 24 hours" in first.stdout
    second = nidan("serve")
    old, new = setup_token_in(first.stdout), setup_token_in(second.stdout)
    assert old != new
    with pytest.raises(SetupTokenInvalid):  # the previous link stopped working
        setup.complete_setup(live.services, token=old, username="root", email="r@example.com", password=PASSWORD)

    assert add_user(nidan, "root", "--role", "admin").exit_code == 0
    third = nidan("serve", "--port", "8123", "--host", "127.0.0.2")
    assert "setup?token=" not in third.stdout
    assert "Sign in at http://127.0.0.2:8123/" in third.stdout
    assert len(uvicorn_calls) == 3


def test_serve_runs_one_process_in_place(
    nidan: Invoke, uvicorn_calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
) -> None:
    assert nidan("serve", "--port", "8123").exit_code == 0
    (args, kwargs), *_ = uvicorn_calls
    assert isinstance(args[0], AccessLog)  # the ASGI application itself, built around this runtime, logged
    kwargs.pop("environment")
    assert kwargs == {
        "host": "127.0.0.1",
        "port": 8123,
        "proxy_headers": False,
        "server_header": False,
        "ws": "none",
    }


def test_serve_with_workers_hands_settings_to_the_workers(
    nidan: Invoke, settings: Settings, uvicorn_calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
) -> None:
    result = nidan("serve", "--workers", "3", env={"NIDAN_SERVER_HOST": "127.0.0.3"})
    assert result.exit_code == 0, result.output
    assert "(3 workers)" in result.stdout
    (args, kwargs), *_ = uvicorn_calls
    assert args == ("nidan.web.server:worker_app",)
    environment = kwargs.pop("environment")
    assert kwargs == {
        "factory": True,
        "workers": 3,
        "host": "127.0.0.3",
        "port": 8000,
        "proxy_headers": False,
        "server_header": False,
        "ws": "none",
    }
    assert environment["NIDAN_DATA_DIR"] == str(settings.data_dir.resolve())
    assert environment["NIDAN_DATABASE_URL"] == settings.resolved_database_url
    # Each worker sizes its password-hashing threads by its share of the cores.
    assert environment["NIDAN_SERVER_WORKERS"] == "3"
    assert "NIDAN_KEYS_DIR" not in environment


@pytest.mark.parametrize("workers", ["0", "65"])
def test_serve_rejects_a_bad_worker_count(nidan: Invoke, workers: str) -> None:
    assert nidan("serve", "--workers", workers).exit_code == 2


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("nidan ")


@pytest.mark.parametrize(
    ("host", "public_url", "expected"),
    [
        ("127.0.0.1", None, "http://127.0.0.1:8000/"),
        ("0.0.0.0", None, "http://127.0.0.1:8000/"),  # noqa: S104
        ("::", None, "http://[::1]:8000/"),
        ("::1", None, "http://[::1]:8000/"),
        ("0.0.0.0", "https://2fa.example.com", "https://2fa.example.com/"),  # noqa: S104
    ],
)
def test_base_url(host: str, public_url: str | None, expected: str) -> None:
    settings = Settings.model_validate({"server": {"public_url": public_url}})
    assert serve_module.base_url(settings, host, 8000) == expected
