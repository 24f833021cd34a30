"""Issue 14, in both configurations (plain http, and https with ``public_url = "https://nidan.example"``): HSTS on
every answer under an https public address and never otherwise; redirects that name a path, never the Host a
request claimed, and never another host. The pages' CSRF findings are in ``test_hardening_csrf.py``.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.responses import PlainTextResponse
from starlette.routing import Route, Router

from nidan.config import DEFAULT_HSTS, ServerSettings, Settings
from nidan.core.access_tokens import APP_KEY_PREFIX
from nidan.core.models import InstanceRole
from nidan.core.tokens import new_token
from nidan.web.api.v1.verify import VerifyFastPath
from nidan.web.app import create_app
from nidan.web.correlation import CorrelationIdMiddleware
from nidan.web.trailing_slash import relative_location
from tests.conftest import FixedClock
from tests.helpers import PASSWORD, make_user
from tests.web.csrf_support import csrf_field_of
from tests.web.hardening_support import HTTP_BASE, PUBLIC_URL, Site, built, sign_in, site

__all__ = ["site"]  # the fixture, imported for pytest


# --- HSTS ----------------------------------------------------------------------------------------------------------


def test_every_kind_of_answer_carries_hsts_under_https_and_none_over_http(site: Site) -> None:
    make_user(site.ctx)
    client = site.client
    answers = {
        "page": client.get("/login"),
        "redirect to sign in": client.get("/security", follow_redirects=False),
        "trailing-slash redirect": client.get("/login/", follow_redirects=False),
        "page 404": client.get("/nowhere"),
        "API 401": client.get("/api/v1/me"),
        "API 404": client.get("/api/v1/nowhere"),
        "API 422": client.post("/api/v1/auth/login", json={}),
        "CSRF refusal": client.post("/login", data={"username": "alice"}),
        "413": client.post("/api/v1/auth/login", content=b"x" * (site.runtime.settings.server.max_body_bytes + 1)),
        "static file": client.get("/static/nidan.css"),
        "health": client.get("/healthz"),
    }
    statuses = {name: response.status_code for name, response in answers.items()}
    assert statuses == {
        "page": 200,
        "redirect to sign in": 303,
        "trailing-slash redirect": 307,
        "page 404": 404,
        "API 401": 401,
        "API 404": 404,
        "API 422": 422,
        "CSRF refusal": 403,
        "413": 413,
        "static file": 200,
        "health": 200,
    }
    expected = [DEFAULT_HSTS] if site.https else []
    for name, response in answers.items():
        assert response.headers.get_list("strict-transport-security") == expected, name


def test_a_crash_answer_carries_hsts(site: Site) -> None:
    async def crash() -> None:
        raise RuntimeError("boom")

    site.app.add_api_route("/test-crash", crash)
    response = site.client.get("/test-crash")
    assert response.status_code == 500
    assert response.headers.get_list("strict-transport-security") == ([DEFAULT_HSTS] if site.https else [])


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast path", "FastAPI's stack"])
def test_the_verify_api_carries_hsts_on_both_of_its_paths(site: Site, fast_path: bool) -> None:
    # A key of the right shape that no application has: answered (401) before any user is looked at.
    unknown_key = new_token(lambda n: b"\x00" * n, prefix=APP_KEY_PREFIX)
    site.app.state.verify_fast_path = fast_path
    if fast_path:
        # Every well-formed call must be answered by the front door itself: the stack behind it refuses to.
        async def not_here(scope: object, receive: object, send: object) -> None:
            raise AssertionError("the verify call went past the front door")

        front = site.app.verify_front
        assert isinstance(front, CorrelationIdMiddleware) and isinstance(front.app, VerifyFastPath)
        front.app.fallback = not_here
    response = site.client.post(
        "/api/v1/verify",
        json={"username": "nobody", "code": "123456"},
        headers={"Authorization": f"Bearer {unknown_key}"},
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "app_key_invalid", response.text
    assert response.headers.get_list("strict-transport-security") == ([DEFAULT_HSTS] if site.https else [])


@pytest.mark.parametrize(
    ("public_url", "hsts", "expected"),
    [
        (PUBLIC_URL, "max-age=300", "max-age=300"),
        (PUBLIC_URL, "max-age=63072000; includeSubDomains; preload", "max-age=63072000; includeSubDomains; preload"),
        (PUBLIC_URL, "", None),  # turned off
        ("http://nidan.example", DEFAULT_HSTS, None),  # never over plain http
        (None, DEFAULT_HSTS, None),
    ],
)
def test_the_hsts_setting(
    settings: Settings, clock: FixedClock, public_url: str | None, hsts: str, expected: str | None
) -> None:
    runtime = built(settings, clock, ServerSettings(public_url=public_url, hsts=hsts))
    try:
        with TestClient(create_app(runtime=runtime), base_url=public_url or HTTP_BASE) as client:
            for path in ("/login", "/api/v1/me", "/nowhere"):
                sent = client.get(path).headers.get_list("strict-transport-security")
                assert sent == ([expected] if expected else []), path
    finally:
        runtime.engine.dispose()


# --- redirects -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/security/", "/security"),
        ("/security///", "/security"),
        ("/login/?notice=signed_out", "/login?notice=signed_out"),
        ("/api/v1/me/", "/api/v1/me"),
        ("/admin/users/alice/", "/admin/users/alice"),
    ],
)
def test_a_trailing_slash_leads_to_the_path_whatever_host_the_request_names(
    site: Site, path: str, location: str
) -> None:
    response = site.client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == location  # a path: the browser stays where it is, scheme included


@pytest.mark.parametrize(
    "path",
    ["//evil.example/", "//evil.example/security/", "///evil.example/", "/\\evil.example/", "/%2F%2Fevil.example/"],
)
def test_a_path_that_names_another_host_is_never_redirected_there(site: Site, path: str) -> None:
    response = site.client.get(site.base + path, headers={"Host": "evil.example"}, follow_redirects=False)
    location = response.headers.get("location", "")
    assert "evil" not in location and not location.startswith(("//", "/\\")), (response.status_code, location)
    assert response.status_code == 404


def test_every_redirect_of_the_sign_in_flow_is_a_local_path(site: Site) -> None:
    make_user(site.ctx)
    client = site.client
    spoofed = {"Host": "evil.example"}
    locations = [
        client.get("/", headers=spoofed, follow_redirects=False).headers["location"],
        client.get("/security", headers=spoofed, follow_redirects=False).headers["location"],
    ]
    page = client.get("/login")
    done = client.post(
        "/login",
        data={"csrf_token": csrf_field_of(page), "username": "alice", "password": PASSWORD},
        headers=spoofed,
        follow_redirects=False,
    )
    locations.append(done.headers["location"])
    locations.append(client.get("/", headers=spoofed, follow_redirects=False).headers["location"])
    security = client.get("/security")
    out = client.post("/logout", data={"csrf_token": csrf_field_of(security)}, headers=spoofed, follow_redirects=False)
    locations.append(out.headers["location"])
    assert locations == [
        "/login",
        "/login?notice=signin_required",
        "/security",
        "/security",
        "/login?notice=signed_out",
    ]


def test_the_api_key_example_names_the_public_address_not_the_host_header(
    settings: Settings, clock: FixedClock
) -> None:
    runtime = built(settings, clock, ServerSettings(public_url=PUBLIC_URL))
    make_user(runtime.services, "root", role=InstanceRole.ADMIN)
    try:
        with TestClient(create_app(runtime=runtime), base_url=PUBLIC_URL) as client:
            sign_in(client, "root")
            page = client.get("/admin/apps")
            created = client.post(
                "/admin/apps",
                data={"csrf_token": csrf_field_of(page), "name": "shop"},
                headers={"Host": "evil.example"},
            )
            assert created.status_code == 200, created.text
            assert "curl -sS https://nidan.example/api/v1/verify" in created.text
            assert "evil.example" not in created.text
    finally:
        runtime.engine.dispose()


@pytest.mark.parametrize(
    ("path", "query", "location"),
    [
        ("/a/", b"", "/a"),
        ("/a/b//", b"x=1&y=2", "/a/b?x=1&y=2"),
        ("/a%3Fb/", b"", "/a%253Fb"),
        ("/a?b/", b"", "/a%3Fb"),  # an escaped '?' stays escaped: it cannot start a query
        ("//evil.example/", b"", None),
        ("///evil.example/x/", b"", None),
        ("/\\evil.example/", b"", None),
        ("/", b"", None),
        ("/a", b"", None),
        ("///", b"", None),
    ],
)
def test_the_trailing_slash_redirect_never_names_another_host_even_when_a_route_would_answer(
    path: str, query: bytes, location: str | None
) -> None:
    # A catch-all route answers every path, '//evil.example' too: only the guard stands between it and a Location.
    router = Router(routes=[Route("/{rest:path}", PlainTextResponse("x"))])
    scope = {"type": "http", "path": path, "root_path": "", "query_string": query, "method": "GET", "headers": []}
    assert relative_location(scope, router) == location
