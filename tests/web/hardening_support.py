"""Shared by the issue-14 hardening tests: nidan served in both configurations, plain http (no ``public_url``) and
https (``public_url = "https://nidan.example"``), and the few page steps they take.

Import the ``site`` fixture from here (``from tests.web.hardening_support import site``) to use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import ServerSettings, Settings
from nidan.services import accounts, tokens
from nidan.services.context import ServiceContext
from nidan.web.app import NidanApp, create_app
from tests.conftest import FixedClock
from tests.helpers import PASSWORD
from tests.web.csrf_support import csrf_field_of

PUBLIC_URL = "https://nidan.example"
HTTP_BASE = "http://testserver"
TOKENS_PAGE = "/security/tokens"
APP_PASSWORD_FORM = "/security/tokens/app-password"
ERROR_CODE = re.compile(r'<code class="error-code">([a-z_]+)</code>')


@dataclass
class Site:
    app: NidanApp
    runtime: Runtime
    #: Where the browser reaches nidan: the public https address, or the test client's plain http one.
    base: str
    https: bool
    client: TestClient

    @property
    def ctx(self) -> ServiceContext:
        return self.runtime.services

    def other_browser(self) -> TestClient:
        """A second browser (the attacker's), on the same server."""
        return TestClient(self.app, base_url=self.base, raise_server_exceptions=False)

    def csrf_cookie_name(self) -> str:
        return "__Host-nidan_csrf" if self.https else "nidan_csrf"


def built(settings: Settings, clock: FixedClock, server: ServerSettings) -> Runtime:
    return build_runtime(settings.model_copy(update={"server": server}), clock=clock)


@pytest.fixture(params=["http", "https"])
def site(request: pytest.FixtureRequest, settings: Settings, clock: FixedClock) -> Iterator[Site]:
    https = request.param == "https"
    runtime = built(settings, clock, ServerSettings(public_url=PUBLIC_URL if https else None))
    app = create_app(runtime=runtime)
    base = PUBLIC_URL if https else HTTP_BASE
    with TestClient(app, base_url=base, raise_server_exceptions=False) as client:
        yield Site(app, runtime, base, https, client)
    runtime.engine.dispose()


def sign_in(client: TestClient, username: str = "alice") -> None:
    page = client.get("/login")
    done = client.post(
        "/login",
        data={"csrf_token": csrf_field_of(page), "username": username, "password": PASSWORD},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/security", done.text


def error_code_of(page: httpx.Response) -> str:
    found = ERROR_CODE.search(page.text)
    assert found, page.text
    return found.group(1)


def live_tokens(ctx: ServiceContext, username: str) -> list[str]:
    return [token.name for token in tokens.list_tokens(ctx, accounts.find_user(ctx, username))]
