"""One populated instance per test module and back end, and a browser for each kind of person who reads its pages.

Signing in, the second step and the data behind the pages (an organisation, an application, tokens, a remembered
browser, a recovery link) are made once; the tests only read pages, so they share it. The clock moves only while
the site is built: the stale session is older than the step-up window, every other one is fresh, and nothing
expires while the tests run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.access_tokens import TokenKind
from nidan.core.models import InstanceRole, OrgRole, User
from nidan.services import applications, break_glass, password_links, setup, tokens, user_admin
from nidan.services.context import ServiceContext
from nidan.web.app import NidanApp, create_app
from tests.conftest import PostgresDatabases
from tests.helpers import code_at, make_user
from tests.integration.enforcement_support import shared_runtime
from tests.web.admin_support import CLI, STALE, advance, organisation, with_totp
from tests.web.pages_support import csrf_of, sign_in, submit

#: The people a page is read by (``Site.clients``).
ANONYMOUS = "anonymous"
SIGNING_IN = "signing in"  # past the password, asked for the second step
ENROLLING = "enrolling"  # signed in only to set up two-step verification
USER = "user"  # a member with an authenticator app, verified a moment ago
STALE_USER = "stale user"  # verified longer ago than the step-up window
MANAGER = "manager"  # a user admin of an organisation
ADMIN = "admin"  # an instance administrator
FIRST_START = "first start"  # a browser on an instance that has no administrator yet

ORG = "platform"
APP = "wiki"


@dataclass
class Site:
    runtime: Runtime
    app: NidanApp
    clients: dict[str, TestClient]
    #: What the pages' addresses name: the user's token, the recovery link, the setup link.
    values: dict[str, str] = field(default_factory=dict)

    @property
    def ctx(self) -> ServiceContext:
        return self.runtime.services

    def browser(self) -> TestClient:
        """Another browser on the site (use it in a ``with``)."""
        return TestClient(self.app, raise_server_exceptions=False)

    def csrf_token(self, who: str) -> str:
        """A form token of ``who``'s browser (a page a signed-in person can always open)."""
        page = self.clients[who].get("/security" if who not in (ANONYMOUS, SIGNING_IN) else "/login")
        return csrf_of(page)


def _signed_in(client: TestClient, ctx: ServiceContext, user: User, secret: str, *, remember: bool = False) -> None:
    """Password and the authenticator's code on the pages, as a browser does; the clock moves a step on."""
    assert sign_in(client, user.username).headers["location"] == "/login/verify"
    page = client.get("/login/verify")
    extra = {"remember_device": "1"} if remember else {}
    done = submit(client, page, "/login/verify", method="totp", code=code_at(secret, ctx), **extra)
    assert done.status_code == 303, done.text
    advance(ctx, 30)


def _populate(site: Site, stack: ExitStack) -> None:
    ctx = site.ctx

    def browser() -> TestClient:
        return stack.enter_context(TestClient(site.app, raise_server_exceptions=False))

    clients = site.clients
    clients[ANONYMOUS] = browser()
    admin = make_user(ctx, "root", role=InstanceRole.ADMIN)
    admin_secret = with_totp(ctx, admin)
    # A second administrator, locked out: `nidan admin recover` printed a link for them.
    make_user(ctx, "root2", role=InstanceRole.ADMIN)
    site.values["recovery_link"] = break_glass.recover_admin(ctx, username="root2", client=CLI).token

    users = {name: make_user(ctx, name) for name in ("alice", "bob", "carol", "dave", "mia")}
    secrets = {name: with_totp(ctx, users[name]) for name in ("alice", "bob", "dave", "mia")}
    organisation(
        ctx,
        ORG,
        {"alice": (OrgRole.MEMBER, True), "bob": (OrgRole.MEMBER, True), "mia": (OrgRole.USER_ADMIN, False)},
    )
    applications.add(ctx, name=APP, actor=admin, client=CLI)
    for kind, name, scopes in ((TokenKind.PERSONAL, "ci", ["read_repository"]), (TokenKind.APP_PASSWORD, "mail", None)):
        made = tokens.create(ctx, users["alice"], kind=kind, name=name, scopes=scopes, expires_on=None, client=CLI)
        site.values.setdefault("token_id", str(made.token.id))
    user_admin.require_registration(ctx, username="carol", actor=admin, client=CLI, reason="new phone")
    # Erin was sent a link to set her password.
    make_user(ctx, "erin")
    site.values["password_link"] = password_links.issue_link(ctx, username="erin", actor=admin, client=CLI).token

    # Bob signs in first and the clock moves past the step-up window: he is asked to confirm it's him.
    clients[STALE_USER] = browser()
    _signed_in(clients[STALE_USER], ctx, users["bob"], secrets["bob"])
    advance(ctx, STALE)
    clients[USER] = browser()
    _signed_in(clients[USER], ctx, users["alice"], secrets["alice"], remember=True)
    clients[ADMIN] = browser()
    _signed_in(clients[ADMIN], ctx, admin, admin_secret)
    clients[MANAGER] = browser()
    _signed_in(clients[MANAGER], ctx, users["mia"], secrets["mia"])
    clients[ENROLLING] = browser()
    assert sign_in(clients[ENROLLING], "carol").headers["location"] == "/security/setup"
    clients[SIGNING_IN] = browser()
    assert sign_in(clients[SIGNING_IN], "dave").headers["location"] == "/login/verify"


@contextmanager
def first_start(
    backend: str, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, postgres: PostgresDatabases | None
) -> Iterator[tuple[TestClient, str]]:
    """A browser on a brand-new instance and its setup link."""
    runtimes = shared_runtime(backend, tmp_path_factory, sqlite_template, postgres)
    runtime = next(runtimes)
    try:
        token = setup.issue_setup_token(runtime.services)
        assert token is not None
        with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
            yield client, token
    finally:
        next(runtimes, None)  # the generator's cleanup: dispose the engine, drop the database


@contextmanager
def open_site(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
    *,
    extend: Callable[[NidanApp], None] | None = None,
) -> Iterator[Site]:
    """The populated site on ``backend``; ``extend(app)``, when given, adds routes before the first request."""
    runtimes = shared_runtime(backend, tmp_path_factory, sqlite_template, postgres)
    runtime = next(runtimes)
    # Remembered browsers are on (30 days), so the security page lists the one alice ticked.
    runtime = replace(runtime, services=replace(runtime.services, remember_device_days=30))
    try:
        app = create_app(runtime=runtime)
        if extend is not None:
            extend(app)
        with ExitStack() as stack:
            site = Site(runtime, app, {})
            _populate(site, stack)
            yield site
    finally:
        next(runtimes, None)  # the generator's cleanup: dispose the engine, drop the database
