"""Shared by the remembered-browser tests: remembering and admitting as the sign-in does (in its own transaction,
under the user's row lock), the policy's days, and the audit events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.core.audit import AuditEvent, EventType
from nidan.core.models import ClientInfo, Method, User
from nidan.core.policy import TwoFactorPolicy
from nidan.services import audit, devices, enrollment, organisations
from nidan.services.context import ServiceContext
from tests.helpers import code_at

CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
BROWSER = ClientInfo(ip="198.51.100.23", user_agent=CHROME_ON_WINDOWS)
ELSEWHERE = ClientInfo(ip="203.0.113.9", user_agent=FIREFOX_ON_LINUX)
CLI = ClientInfo()
DAY = 24 * 3600


def remembering(runtime: Runtime, days: int) -> Runtime:
    """``runtime`` with the instance's ``policy.remember_device_days`` set to ``days``."""
    return replace(runtime, services=replace(runtime.services, remember_device_days=days))


def remember(ctx: ServiceContext, user: User, client: ClientInfo = BROWSER) -> devices.RememberedDevice | None:
    """``devices.remember`` as the sign-in calls it: in its transaction, under the user's row lock, committed."""
    with ctx.uow() as uow:
        uow.users.lock(user.id)
        remembered = devices.remember(ctx, uow, user, client)
        uow.commit()
    return remembered


def remembered(ctx: ServiceContext, user: User, client: ClientInfo = BROWSER) -> devices.RememberedDevice:
    found = remember(ctx, user, client)
    assert found is not None
    return found


def admit(ctx: ServiceContext, user_id: int, token: str, client: ClientInfo = BROWSER) -> devices.Admitted | None:
    """``devices.admit`` as the sign-in calls it: in its transaction, under the user's row lock, committed."""
    with ctx.uow() as uow:
        uow.users.lock(user_id)
        admitted = devices.admit(ctx, uow, user_id, token, client)
        uow.commit()
    return admitted


def remember_days(ctx: ServiceContext, user_id: int) -> int:
    with ctx.uow() as uow:
        return devices.remember_days(ctx, uow, user_id)


def set_remember_days(ctx: ServiceContext, slug: str, days: int | None) -> None:
    """The organisation's remember-device days (``None``: the instance's), the rest of its policy left optional."""
    organisations.set_policy(
        ctx,
        slug,
        two_factor=TwoFactorPolicy.OPTIONAL,
        grace_period_days=0,
        allowed_methods=tuple(Method),
        tolerated_failures=None,
        remember_device_days=days,
        actor=None,
        client=CLI,
    )


def events(ctx: ServiceContext, *types: EventType) -> list[AuditEvent]:
    """Events of these types, oldest first."""
    wanted: Iterable[EventType] = types
    found = [record for t in wanted for record in audit.all_events(ctx, event_type=t, limit=200)]
    return [record.event for record in sorted(found, key=lambda record: record.seq)]


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def with_totp(ctx: ServiceContext, user: User) -> str:
    """An authenticator app for ``user`` (its secret); the clock moves two steps on, so the next code is fresh."""
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLI)
    advance(ctx, 2 * totp.PERIOD)
    return started.secret
