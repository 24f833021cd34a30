"""The admin console's tests' helpers: users signed in with a role, their authenticator, organisations, the clock."""

from __future__ import annotations

import html

import httpx
from fastapi.testclient import TestClient

from nidan.core.models import ClientInfo, InstanceRole, OrgRole, User
from nidan.services import enrollment, organisations
from nidan.services.context import ServiceContext
from tests.helpers import code_at, make_user
from tests.web.pages_support import sign_in

#: Past the default 10-minute step-up window.
STALE = 11 * 60


CLI = ClientInfo()


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def text_of(page: httpx.Response) -> str:
    """The page's text as a person reads it: entities decoded, runs of white space as one space."""
    return " ".join(html.unescape(page.text).split())


def signed_in(client: TestClient, ctx: ServiceContext, username: str, role: InstanceRole = InstanceRole.MEMBER) -> User:
    user = make_user(ctx, username, role=role)
    assert sign_in(client, username).headers["location"] == "/security"
    return user


def with_totp(ctx: ServiceContext, user: User) -> str:
    """An authenticator app for ``user``, made through the services; returns its secret."""
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLI)
    advance(ctx, 30)
    return started.secret


def organisation(ctx: ServiceContext, slug: str, members: dict[str, tuple[OrgRole, bool]]) -> None:
    """An organisation with ``members``: username -> (role, managed)."""
    organisations.create(ctx, slug=slug, name=f"Org {slug.upper()}", actor=None, client=CLI)
    for username, (role, managed) in members.items():
        organisations.add_member(ctx, slug, username=username, role=role, managed=managed, actor=None, client=CLI)
