"""Every page, in English and in Japanese, read by the person it is for.

The page routes are found by walking the app's routes (everything but the API, the programs' endpoints and the
static files): a page added without a line in ``VISITS`` fails ``test_every_page_route_is_visited``. Each page is
read in both languages (``Accept-Language``) by the right kind of person (``tests.web.site_support``): it answers
as expected, says its language in ``<html lang>``, and the Japanese page shows Japanese and no English sentence of
the catalogs or of the English page (``tests.web.language_support``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from nidan.web.app import NidanApp
from nidan.web.pages.admin_users import ACTIONS
from tests.conftest import BACKENDS, PostgresDatabases
from tests.web.language_support import EN, JA, assert_in_language
from tests.web.site_support import (
    ADMIN,
    ANONYMOUS,
    APP,
    ENROLLING,
    FIRST_START,
    MANAGER,
    ORG,
    SIGNING_IN,
    STALE_USER,
    USER,
    Site,
    first_start,
    open_site,
)

pytestmark = pytest.mark.xdist_group("every_page")

#: Answered for programs, never a page (``nidan.web.problems``): left out of the walk.
PROGRAM_PATHS = ("/api/", "/openapi", "/auth/", "/healthz")
STATIC = "/static"


class Visit(NamedTuple):
    who: str
    #: The address, ``{name}`` filled from ``Site.values``.
    url: str
    status: int = 200


#: Every GET route that is not an API's, with who reads it and at which addresses.
VISITS: dict[str, tuple[Visit, ...]] = {
    "/": (Visit(ANONYMOUS, "/", 303), Visit(USER, "/", 303)),
    "/favicon.ico": (Visit(ANONYMOUS, "/favicon.ico", 301),),
    "/login": (Visit(ANONYMOUS, "/login"),),
    "/login/verify": (Visit(SIGNING_IN, "/login/verify"), Visit(SIGNING_IN, "/login/verify?method=recovery_code")),
    "/setup": (Visit(FIRST_START, "/setup?token={setup_link}"),),
    "/recover": (Visit(ANONYMOUS, "/recover?token={recovery_link}"),),
    "/language": (Visit(ANONYMOUS, "/language", 303),),
    "/security": (Visit(USER, "/security"),),
    "/security/setup": (Visit(ENROLLING, "/security/setup"),),
    "/security/totp/disable": (Visit(USER, "/security/totp/disable"),),
    "/security/preferences": (Visit(USER, "/security/preferences"),),
    "/security/sessions": (Visit(USER, "/security/sessions"),),
    "/security/password": (Visit(USER, "/security/password"),),
    "/security/events": (Visit(USER, "/security/events"),),
    "/security/reauth": (Visit(STALE_USER, "/security/reauth?next=/security/tokens"),),
    "/security/tokens": (Visit(USER, "/security/tokens"), Visit(STALE_USER, "/security/tokens")),
    "/security/tokens/{token_id}/revoke": (Visit(USER, "/security/tokens/{token_id}/revoke"),),
    "/security/totp/change": (Visit(USER, "/security/totp/change"),),
    "/security/recovery-codes": (Visit(USER, "/security/recovery-codes"),),
    "/set-password": (Visit(ANONYMOUS, "/set-password?token={password_link}"), Visit(ANONYMOUS, "/set-password", 401)),
    "/admin": (Visit(ADMIN, "/admin"), Visit(MANAGER, "/admin"), Visit(USER, "/admin", 403)),
    "/admin/users/{username}": (Visit(ADMIN, "/admin/users/alice"), Visit(MANAGER, "/admin/users/alice")),
    "/admin/users/{username}/events": (Visit(ADMIN, "/admin/users/alice/events"),),
    "/admin/users/{username}/password-link": (Visit(ADMIN, "/admin/users/alice/password-link"),),
    "/admin/users/{username}/delete": (Visit(ADMIN, "/admin/users/alice/delete"),),
    "/admin/users/{username}/{slug}": tuple(Visit(ADMIN, f"/admin/users/alice/{slug}") for slug in ACTIONS),
    "/admin/orgs/{slug}": (Visit(ADMIN, f"/admin/orgs/{ORG}"), Visit(ADMIN, "/admin/orgs/default")),
    "/admin/orgs/{slug}/members/{username}/remove": (Visit(ADMIN, f"/admin/orgs/{ORG}/members/alice/remove"),),
    "/admin/apps": (Visit(ADMIN, "/admin/apps"),),
    "/admin/apps/{name}/remove": (Visit(ADMIN, f"/admin/apps/{APP}/remove"),),
}


def page_routes(app: NidanApp) -> dict[str, set[str]]:
    """Path -> methods of every route a browser may open: not the API's, the programs' or the static files'."""
    found: dict[str, set[str]] = {}
    for route in iter_route_contexts(app.router.routes):
        if isinstance(route.original_route, Mount):
            assert route.path == STATIC, f"a mount nobody tests: {route.path}"
            continue
        assert route.path is not None, route
        if route.path.startswith(PROGRAM_PATHS):
            continue
        found.setdefault(route.path, set()).update(route.methods or ())
    return found


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[Site]:
    with open_site(request.param, tmp_path_factory, sqlite_template, postgres) as populated:
        yield populated


@pytest.fixture(scope="module")
def first(
    site: Site, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path, postgres: PostgresDatabases | None
) -> Iterator[tuple[TestClient, str]]:
    """A browser on a new instance (no administrator yet) and its setup link, on the site's back end."""
    backend = "sqlite" if site.runtime.settings.resolved_database_url.startswith("sqlite") else "postgresql"
    with first_start(backend, tmp_path_factory, sqlite_template, postgres) as opened:
        yield opened


def _client(site: Site, who: str, request: pytest.FixtureRequest) -> tuple[TestClient, dict[str, str]]:
    if who == FIRST_START:
        client, token = request.getfixturevalue("first")
        return client, {"setup_link": token}
    return site.clients[who], site.values


def test_every_page_route_is_visited(site: Site) -> None:
    routes = page_routes(site.app)
    gets = {path for path, methods in routes.items() if "GET" in methods}
    assert gets - set(VISITS) == set(), "page routes without a visit: add them to VISITS"
    assert set(VISITS) - gets == set(), "visits of routes that are gone"


def read(client: TestClient, url: str, headers: dict[str, str]) -> httpx.Response:
    response: httpx.Response = client.get(url, headers=headers, follow_redirects=False)
    return response


@pytest.mark.parametrize("route", sorted(VISITS))
def test_every_page_in_english_and_japanese(site: Site, route: str, request: pytest.FixtureRequest) -> None:
    for visit in VISITS[route]:
        client, values = _client(site, visit.who, request)
        url = visit.url.format(**values)
        english, japanese = read(client, url, EN), read(client, url, JA)
        where = f"{visit.who} at {url}"
        assert english.status_code == visit.status, f"{where}: {english.text[:2000]}"
        assert japanese.status_code == visit.status, where
        if visit.status in (301, 302, 303, 307):
            assert japanese.headers["location"] == english.headers["location"], where
            continue
        assert english.headers["content-type"].startswith("text/html"), where
        assert_in_language(english, "en")
        assert_in_language(japanese, "ja", english)
