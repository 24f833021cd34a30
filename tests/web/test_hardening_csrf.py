"""Issue 14, in both configurations (plain http, and https with ``public_url = "https://nidan.example"``): the pages'
CSRF token is bound to the session, so a planted cookie and its token create nothing; forms sent from another
origin are refused; every page POST goes through the check.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute

from nidan.bootstrap import Runtime
from nidan.config import ServerSettings, Settings
from nidan.core.models import ClientInfo, InstanceRole
from nidan.services import break_glass
from nidan.web.app import create_app
from nidan.web.pages.csrf import checked_form
from tests.conftest import FixedClock
from tests.helpers import PASSWORD, code_at, make_user
from tests.web.csrf_support import cookie_of, csrf_field_of, csrf_token_for, csrf_token_of_client
from tests.web.hardening_support import (
    APP_PASSWORD_FORM,
    HTTP_BASE,
    PUBLIC_URL,
    TOKENS_PAGE,
    Site,
    built,
    error_code_of,
    live_tokens,
    sign_in,
    site,
)

__all__ = ["site"]  # the fixture, imported for pytest

KEY = re.compile(r'<code id="totp-key" class="key">([A-Z2-7 ]+)</code>')


# --- the CSRF token is bound to the session ------------------------------------------------------------------------


def test_the_form_token_covers_the_session_cookie_once_there_is_one(site: Site) -> None:
    make_user(site.ctx)
    client, key = site.client, site.ctx.hash_key
    anonymous = csrf_field_of(client.get("/login"))
    csrf_cookie = cookie_of(client, "nidan_csrf")
    assert csrf_cookie and anonymous == csrf_token_for(key, csrf_cookie)
    sign_in(client)
    session = cookie_of(client, "nidan_session")
    assert session
    bound = csrf_field_of(client.get("/security"))
    assert bound == csrf_token_for(key, csrf_cookie, session) == csrf_token_of_client(client, key)
    assert bound != anonymous
    # The sign-in page's token, for the same CSRF cookie, no longer does once the browser holds a session.
    refused = client.post(APP_PASSWORD_FORM, data={"csrf_token": anonymous, "name": "stale"}, follow_redirects=False)
    assert refused.status_code == 403 and error_code_of(refused) == "csrf_failed"
    assert live_tokens(site.ctx, "alice") == []


@pytest.mark.parametrize("attacker_signed_in", [False, True], ids=["attacker signed out", "attacker signed in"])
def test_a_planted_csrf_cookie_and_its_token_create_nothing_in_the_victims_account(
    site: Site, attacker_signed_in: bool
) -> None:
    """The audit's attack: over plain http the attacker plants his own ``nidan_csrf`` cookie in the signed-in
    victim's browser, with the form token his own visit got for it, and submits the app-password form."""
    ctx = site.ctx
    make_user(ctx, "alice")
    make_user(ctx, "mallory")
    victim = site.client
    sign_in(victim, "alice")
    with site.other_browser() as attacker:
        if attacker_signed_in:
            sign_in(attacker, "mallory")
        page = attacker.get(TOKENS_PAGE if attacker_signed_in else "/login")
        planted_cookie, planted_token = cookie_of(attacker, "nidan_csrf"), csrf_field_of(page)
    assert planted_cookie
    name = site.csrf_cookie_name()
    victim.cookies.delete(name)
    victim.cookies.set(name, planted_cookie)
    assert cookie_of(victim, "nidan_csrf") == planted_cookie and cookie_of(victim, "nidan_session")

    forged = victim.post(APP_PASSWORD_FORM, data={"csrf_token": planted_token, "name": "planted"})
    assert forged.status_code == 403, forged.text
    assert error_code_of(forged) == "csrf_failed"
    assert "reload the page and try again" in html.unescape(forged.text)
    assert live_tokens(ctx, "alice") == [] and live_tokens(ctx, "mallory") == []

    # The victim, reloading the page, gets a token for the cookie her browser now holds, and the form works.
    mine = victim.post(APP_PASSWORD_FORM, data={"csrf_token": csrf_field_of(victim.get(TOKENS_PAGE)), "name": "mine"})
    assert mine.status_code == 200, mine.text
    assert live_tokens(ctx, "alice") == ["mine"]


def test_the_page_that_upgrades_an_enrolment_sign_in_has_forms_for_the_new_session(site: Site) -> None:
    """Setting up 2FA turns an enrolment-only session into a full one in the same answer as the recovery codes
    page: that page's forms must be bound to the new session cookie, the one the browser sends with them."""
    ctx = site.ctx
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    link = break_glass.recover_admin(ctx, username="root", client=ClientInfo()).token
    client = site.client
    page = client.get(f"/recover?token={link}")
    assert client.post("/recover", data={"csrf_token": csrf_field_of(page), "token": link}).status_code == 200
    enrolment_session = cookie_of(client, "nidan_session")
    setup = client.get("/security/setup")
    enrolment = client.post("/security/totp", data={"csrf_token": csrf_field_of(setup)})
    key = KEY.search(enrolment.text)
    assert key, enrolment.text
    code = code_at(key.group(1).replace(" ", ""), ctx)
    codes = client.post("/security/totp/activate", data={"csrf_token": csrf_field_of(enrolment), "code": code})
    assert codes.status_code == 200, codes.text
    full_session = cookie_of(client, "nidan_session")
    assert full_session and full_session != enrolment_session
    out = client.post("/logout", data={"csrf_token": csrf_field_of(codes)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login?notice=signed_out", out.text


# --- where a form was sent from --------------------------------------------------------------------------------------


def _own(site: Site) -> str:
    return site.base


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://evil.example:8000"},
        {"Origin": "nonsense"},
        {"Referer": "https://evil.example/page?x=1"},
        {"Referer": "null"},
        # The Origin decides when both are sent.
        {"Origin": "https://evil.example", "Referer": "{own}/security/tokens"},
        # Same host, another port or scheme: another origin.
        {"Origin": "{own}:8443"},
        {"Origin": "ftp://{host}"},
    ],
)
def test_a_form_from_another_origin_is_refused_before_anything_happens(site: Site, headers: dict[str, str]) -> None:
    ctx = site.ctx
    make_user(ctx)
    sign_in(site.client)
    page = site.client.get(TOKENS_PAGE)
    host = site.base.split("://", 1)[1]
    sent = {name: value.format(own=_own(site), host=host) for name, value in headers.items()}
    response = site.client.post(APP_PASSWORD_FORM, data={"csrf_token": csrf_field_of(page), "name": "x"}, headers=sent)
    assert response.status_code == 403, response.text
    assert error_code_of(response) == "csrf_failed"
    assert "reload the page and try again" in html.unescape(response.text)
    assert live_tokens(ctx, "alice") == []


@pytest.mark.parametrize(
    "headers",
    [
        {},  # neither: the token decides alone
        {"Origin": "{own}"},
        {"Origin": "{own}:{port}"},  # the default port written out
        {"Origin": "{own_upper}"},
        {"Referer": "{own}/security/tokens"},
        {"Referer": "{own}/security/tokens?notice=token_revoked"},
    ],
)
def test_a_form_from_nidans_own_origin_is_accepted(site: Site, headers: dict[str, str]) -> None:
    ctx = site.ctx
    make_user(ctx)
    sign_in(site.client)
    page = site.client.get(TOKENS_PAGE)
    port = "443" if site.https else "80"
    sent = {
        name: value.format(own=_own(site), port=port, own_upper=_own(site).upper()) for name, value in headers.items()
    }
    response = site.client.post(APP_PASSWORD_FORM, data={"csrf_token": csrf_field_of(page), "name": "x"}, headers=sent)
    assert response.status_code == 200, response.text
    assert live_tokens(ctx, "alice") == ["x"]


def test_the_sign_in_form_checks_where_it_came_from_too(site: Site) -> None:
    make_user(site.ctx)
    client = site.client
    page = client.get("/login")
    fields = {"csrf_token": csrf_field_of(page), "username": "alice", "password": PASSWORD}
    refused = client.post("/login", data=fields, headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert refused.status_code == 403 and error_code_of(refused) == "csrf_failed"
    assert cookie_of(client, "nidan_session") is None
    done = client.post("/login", data=fields, headers={"Origin": site.base}, follow_redirects=False)
    assert done.status_code == 303 and cookie_of(client, "nidan_session")


def test_with_a_public_address_it_decides_and_the_host_header_does_not(settings: Settings, clock: FixedClock) -> None:
    runtime = built(settings, clock, ServerSettings(public_url=PUBLIC_URL))
    make_user(runtime.services)
    try:
        with TestClient(create_app(runtime=runtime), base_url=PUBLIC_URL) as client:
            page = client.get("/login")
            fields = {"csrf_token": csrf_field_of(page), "username": "alice", "password": PASSWORD}
            # A request that names another host, sent from that host's page: not nidan's origin.
            elsewhere = {"Host": "other.example", "Origin": "https://other.example"}
            assert client.post("/login", data=fields, headers=elsewhere).status_code == 403
            # Behind a proxy that rewrites Host, a form from the public address is nidan's own.
            proxied = {"Host": "127.0.0.1:8000", "Origin": PUBLIC_URL}
            assert client.post("/login", data=fields, headers=proxied, follow_redirects=False).status_code == 303
    finally:
        runtime.engine.dispose()


def test_without_a_public_address_the_host_header_names_nidans_origin(runtime: Runtime) -> None:
    make_user(runtime.services)
    with TestClient(create_app(runtime=runtime), base_url=HTTP_BASE) as client:
        page = client.get("/login")
        fields = {"csrf_token": csrf_field_of(page), "username": "alice", "password": PASSWORD}
        # The form was sent to testserver:8000 (Host) from a page at testserver:8000.
        ok = client.post(
            "/login",
            data=fields,
            headers={"Host": "testserver:8000", "Origin": "http://testserver:8000"},
            follow_redirects=False,
        )
        assert ok.status_code == 303
        sign_out_page = client.get("/security")
        client.post("/logout", data={"csrf_token": csrf_field_of(sign_out_page)})
        page = client.get("/login")
        fields["csrf_token"] = csrf_field_of(page)
        # The same page address, but the form went to another port: not the same origin.
        refused = client.post(
            "/login", data=fields, headers={"Host": "testserver:8000", "Origin": "http://testserver:9000"}
        )
        assert refused.status_code == 403
        # A Host header that is not a plain host[:port] matches nothing.
        odd = client.post("/login", data=fields, headers={"Host": "testserver/x", "Origin": "http://testserver"})
        assert odd.status_code == 403


def test_pages_ask_browsers_for_an_origin_on_their_own_form_posts(site: Site) -> None:
    """Under ``no-referrer`` browsers send ``Origin: null`` with a page's own forms, which is refused: the pages'
    policy keeps the origin (and never sends a path or query, where the one-time links carry their token)."""
    page = site.client.get("/login")
    assert page.headers["referrer-policy"] == "strict-origin"
    assert '<meta name="referrer" content="strict-origin">' in page.text
    assert "no-referrer" not in page.text


def test_every_page_post_goes_through_the_checked_form(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)

    def checks(dependant: object) -> bool:
        calls = getattr(dependant, "dependencies", [])
        return any(getattr(d, "call", None) is checked_form or checks(d) for d in calls)

    def every_route(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
        for route in routes:
            included = getattr(route, "original_router", None)  # FastAPI keeps an included router as one entry
            yield from every_route(included.routes) if included is not None else [route]

    page_writes = [
        route
        for route in every_route(app.routes)
        if isinstance(route, APIRoute)
        and not route.path.startswith(("/api/", "/auth/"))
        and (route.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}
    ]
    assert len(page_writes) >= 20  # the pages' forms were found at all
    assert [route.path for route in page_writes if not checks(route.dependant)] == []
