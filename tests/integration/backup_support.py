"""What the backup, key-rotation and doctor tests share: a populated instance, an empty second instance on either
back end, the command line, and reading or rewriting archives by hand."""

from __future__ import annotations

import contextlib
import io
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner, Result

from nidan.cli.main import app
from nidan.config import SecuritySettings, Settings
from nidan.core.models import ClientInfo, InstanceRole, Method, User
from nidan.services import enrollment, signin
from nidan.services.context import ServiceContext
from tests.conftest import FAST_SECURITY, PostgresDatabases
from tests.helpers import PASSWORD, code_at, make_user

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="pytest")
Invoke = Callable[..., Result]


@dataclass
class Population:
    """Users with what they need to sign in: alice (TOTP and recovery codes), bob (a session, a pending app)."""

    secrets: dict[str, str] = field(default_factory=dict)
    recovery_codes: dict[str, list[str]] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)


def enable_totp(ctx: ServiceContext, user: User, population: Population) -> None:
    started = enrollment.start_totp(ctx, user)
    activation = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT)
    population.secrets[user.username] = started.secret
    population.recovery_codes[user.username] = activation.recovery_codes


def populate(ctx: ServiceContext, *, totp_users: int = 1) -> Population:
    population = Population()
    for number in range(totp_users):
        name = "alice" if number == 0 else f"user{number}"
        user = make_user(ctx, name)
        population.users[name] = user
        enable_totp(ctx, user, population)
    bob = make_user(ctx, "bob", role=InstanceRole.ADMIN)
    population.users["bob"] = bob
    enrollment.start_totp(ctx, bob)  # a pending app: sealed too
    signed_in = signin.login(ctx, username="bob", password=PASSWORD, client=CLIENT)
    assert isinstance(signed_in, signin.Authenticated)
    population.sessions["bob"] = signed_in.session_token
    return population


def sign_in_with_totp(ctx: ServiceContext, username: str, secret: str) -> signin.Authenticated:
    ctx.clock.advance(60)  # type: ignore[attr-defined]  # a time step no earlier sign-in used
    started = signin.login(ctx, username=username, password=PASSWORD, client=CLIENT)
    assert isinstance(started, signin.MfaRequired)
    return signin.complete_mfa(
        ctx, mfa_token=started.mfa_token, method=Method.TOTP, code=code_at(secret, ctx), client=CLIENT
    )


def sign_in_with_recovery_code(ctx: ServiceContext, username: str, code: str) -> signin.Authenticated:
    started = signin.login(ctx, username=username, password=PASSWORD, client=CLIENT)
    assert isinstance(started, signin.MfaRequired)
    return signin.complete_mfa(ctx, mfa_token=started.mfa_token, method=Method.RECOVERY_CODE, code=code, client=CLIENT)


@contextlib.contextmanager
def empty_instance(backend: str, base: Path, postgres: PostgresDatabases | None) -> Iterator[Settings]:
    """Settings for a brand-new instance: a data directory that does not exist yet, and a database with no tables
    (the SQLite file is not there; the PostgreSQL database is created empty, not from the migrated template)."""
    suffix = uuid.uuid4().hex[:12]
    data_dir = base / f"instance-{suffix}"
    security = SecuritySettings(**FAST_SECURITY)
    if backend == "sqlite":
        yield Settings(data_dir=data_dir, database_url=None, security=security)
        return
    assert postgres is not None
    name = f"nidan_e_{suffix}"
    with postgres.admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield Settings(data_dir=data_dir, database_url=postgres.url_for(name), security=security)
    finally:
        postgres.drop(name)


def cli_for(settings: Settings, tmp_path: Path) -> Invoke:
    """Run ``nidan`` in process on ``settings``' data directory and database, with cheap argon2 and no nidan.toml."""
    env: dict[str, str | None] = {
        "NIDAN_DATA_DIR": str(settings.data_dir),
        "NIDAN_DATABASE_URL": settings.database_url,
        "NIDAN_KEYS_DIR": None,
        "NIDAN_CONFIG": str(tmp_path / "no-such-nidan.toml"),
        "NIDAN_SECURITY_ARGON2_MEMORY_KIB": str(FAST_SECURITY["argon2_memory_kib"]),
        "NIDAN_SECURITY_ARGON2_TIME_COST": str(FAST_SECURITY["argon2_time_cost"]),
    }

    def invoke(*args: str, input: str | None = None) -> Result:
        result = CliRunner(env=env).invoke(app, list(args), input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    return invoke


def assert_refused(result: Result, code: str, exit_code: int = 1) -> str:
    """One line on stderr with the error code, the given exit status, no traceback; returns the line."""
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"error [{code}]:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr.strip()


# -- archives by hand -----------------------------------------------------------------------------------------


def read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        members: dict[str, bytes] = {}
        for info in tar:
            extracted = tar.extractfile(info)
            assert extracted is not None
            members[info.name] = extracted.read()
        return members


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path
