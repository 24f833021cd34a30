"""Shared by the enforcement and authority tests: one database per module and back end, and small builders.

A fresh PostgreSQL database per test costs about a second (clone and drop); the tables here run hundreds of cases,
so each module shares one database per back end and every case makes its own users and organisations (unique
names), never touching the default organisation's policy. The shared clock only ever moves forward.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import SecuritySettings, ServerSettings, Settings
from nidan.core import totp
from nidan.core.models import ClientInfo, InstanceRole, Method, OrgRole, User
from nidan.core.passwords import PasswordHashing
from nidan.core.policy import TwoFactorPolicy
from nidan.core.recovery import HashParameters
from nidan.services import enrollment, organisations, signin
from nidan.services.context import ServiceContext
from tests.conftest import FAST_SECURITY, FixedClock, PostgresDatabases
from tests.helpers import PASSWORD, code_at, make_user

CLIENT = ClientInfo(ip="192.0.2.60", user_agent="pytest-enforcement")
_names = itertools.count(1)
CHEAP_HASH = HashParameters(time_cost=1, memory_cost_kib=64)


def shared_runtime(
    backend: str, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, postgres: PostgresDatabases | None
) -> Iterator[Runtime]:
    """A runtime on its own database for a whole module (use from a module-scoped fixture)."""
    data = tmp_path_factory.mktemp("shared") / "data"
    data.mkdir()
    name = None
    if backend == "sqlite":
        shutil.copy(sqlite_template, data / "nidan.db")
        url = f"sqlite:///{data / 'nidan.db'}"
    else:
        assert postgres is not None
        name = postgres.create()
        url = postgres.url_for(name)
    settings = Settings(
        data_dir=data, database_url=url, server=ServerSettings(), security=SecuritySettings(**FAST_SECURITY)
    )
    built = build_runtime(settings, clock=FixedClock())
    # argon2 at its smallest: these tables hash thousands of passwords and recovery codes (what is hashed and
    # checked is the same; the production cost has its own test).
    services = replace(built.services, passwords=PasswordHashing(CHEAP_HASH), recovery_hash=CHEAP_HASH)
    yield replace(built, services=services)
    built.engine.dispose()
    if name is not None:
        assert postgres is not None
        postgres.drop(name)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def new_user(ctx: ServiceContext, prefix: str = "u", role: InstanceRole = InstanceRole.MEMBER) -> User:
    return make_user(ctx, unique(prefix), role=role)


def new_org(
    ctx: ServiceContext,
    two_factor: TwoFactorPolicy = TwoFactorPolicy.OPTIONAL,
    grace_period_days: int = 0,
    *,
    allowed_methods: Iterable[Method] = tuple(Method),
    tolerated_failures: int | None = None,
    owner: User | None = None,
) -> str:
    """A new organisation with that policy, set by the command line; returns its slug."""
    slug = unique("org-")
    organisations.create(ctx, slug=slug, name=slug, actor=None, client=CLIENT, owner=owner)
    set_policy(ctx, slug, two_factor, grace_period_days, allowed_methods=allowed_methods, tolerated=tolerated_failures)
    return slug


def set_policy(
    ctx: ServiceContext,
    slug: str,
    two_factor: TwoFactorPolicy,
    grace_period_days: int = 0,
    *,
    allowed_methods: Iterable[Method] = tuple(Method),
    tolerated: int | None = None,
    actor: User | None = None,
) -> None:
    organisations.set_policy(
        ctx,
        slug,
        two_factor=two_factor,
        grace_period_days=grace_period_days,
        allowed_methods=allowed_methods,
        tolerated_failures=tolerated,
        actor=actor,
        client=CLIENT,
    )


def join(ctx: ServiceContext, slug: str, user: User, role: OrgRole = OrgRole.MEMBER, *, managed: bool = True) -> None:
    organisations.add_member(ctx, slug, username=user.username, role=role, managed=managed, actor=None, client=CLIENT)


def turn_on_totp(ctx: ServiceContext, user: User) -> tuple[str, list[str]]:
    """Authenticator app on (service level); moves the clock two steps so the next code is fresh."""
    started = enrollment.start_totp(ctx, user)
    codes = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT).recovery_codes
    advance(ctx, 2 * totp.PERIOD)
    return started.secret, codes


def sign_in(ctx: ServiceContext, user: User) -> signin.Authenticated | signin.MfaRequired | signin.SetupRequired:
    return signin.login(ctx, username=user.username, password=PASSWORD, client=CLIENT)


def second_step(
    ctx: ServiceContext, mfa_token: str, code: str, method: Method = Method.TOTP
) -> signin.Authenticated | signin.SetupRequired:
    return signin.complete_mfa(ctx, mfa_token=mfa_token, method=method, code=code, client=CLIENT)


def sign_in_fully(
    ctx: ServiceContext, user: User, secret: str | None = None
) -> signin.Authenticated | signin.SetupRequired:
    """Password, then (when asked) the current TOTP code; the clock moves a step on afterwards."""
    first = sign_in(ctx, user)
    if not isinstance(first, signin.MfaRequired):
        return first
    assert secret is not None, "asked for a second factor"
    result = second_step(ctx, first.mfa_token, code_at(secret, ctx))
    advance(ctx, totp.PERIOD)
    return result


def finish_setup(ctx: ServiceContext, setup: signin.SetupRequired) -> tuple[str, signin.Authenticated]:
    """Set up an authenticator app with an enrolment-only session; returns its secret and the full session."""
    session = signin.current_session(ctx, setup.setup_token)
    assert session.enrolment_only
    started = enrollment.start_totp(ctx, session.user)
    enrollment.activate_totp(ctx, session.user, code_at(started.secret, ctx), client=CLIENT)
    full = signin.finish_enrolment(ctx, session, CLIENT)
    advance(ctx, 2 * totp.PERIOD)
    return started.secret, full
