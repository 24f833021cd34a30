"""The administrators' applications page (/admin/apps): relying applications for the verify API, added (the API
key shown once, and it works), listed and removed in a browser without JavaScript. Administrators only, and only
with a recent verification, like the admin API."""

from __future__ import annotations

import html
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.core.models import ClientInfo, InstanceRole, User
from nidan.services import applications, enrollment
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, code_at, make_user
from tests.web.pages_support import assert_support_details, error_code_of, sign_in, sign_out, submit

PAGE = "/admin/apps"
API_KEY = re.compile(r'<code id="new-api-key" class="secret">(nidan_key_[A-Za-z0-9_-]+)</code>')
#: Past the default 10-minute step-up window.
STALE = 11 * 60


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def text_of(page: httpx.Response) -> str:
    return html.unescape(page.text)


def signed_in_admin(client: TestClient, ctx: ServiceContext) -> User:
    root = make_user(ctx, "root", role=InstanceRole.ADMIN)
    assert sign_in(client, "root").headers["location"] == "/security"
    return root


def add_app(client: TestClient, name: str) -> httpx.Response:
    return submit(client, client.get(PAGE), PAGE, name=name)


def api_key_of(page: httpx.Response) -> str:
    found = API_KEY.search(page.text)
    assert found, page.text
    return found.group(1)


def alice_with_totp(ctx: ServiceContext) -> str:
    """Alice with an authenticator app (made through the services); returns its secret."""
    alice = make_user(ctx)
    started = enrollment.start_totp(ctx, alice)
    enrollment.activate_totp(ctx, alice, code_at(started.secret, ctx), client=ClientInfo())
    advance(ctx, totp.PERIOD)
    return started.secret


def verify(client: TestClient, api_key: str, code: str, username: str = "alice") -> httpx.Response:
    response: httpx.Response = client.post(
        "/api/v1/verify", json={"username": username, "code": code}, headers={"Authorization": f"Bearer {api_key}"}
    )
    return response


# --- administrators ------------------------------------------------------------------------------------------------


def test_an_added_application_gets_a_key_shown_once_that_works_at_the_verify_api(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    totp_secret = alice_with_totp(ctx)
    signed_in_admin(client, ctx)
    security = client.get("/security")
    assert f'href="{PAGE}"' in security.text and "Administration" in security.text

    page = client.get(PAGE)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "No applications are registered." in page.text
    made = add_app(client, "wiki")
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    api_key = api_key_of(made)
    text = text_of(made)
    assert "Application “wiki” added" in text and "you won't see it again" in text
    assert 'data-action="copy" data-copy-from="new-api-key"' in made.text
    assert "curl -sS http://testserver/api/v1/verify" in text
    assert "Authorization: Bearer $NIDAN_API_KEY" in text and api_key not in text.split("curl", 1)[1]

    ok = verify(client, api_key, code_at(totp_secret, ctx))
    assert ok.status_code == 200 and ok.json() == {"ok": True, "method": "totp", "username": "alice"}
    assert verify(client, "nidan_key_" + "A" * 43, code_at(totp_secret, ctx)).status_code == 401

    listing = client.get(PAGE)
    assert api_key not in listing.text and api_key[10:30] not in listing.text
    row = re.search(r'<tr id="app-\d+">(.*?)</tr>', listing.text, re.S)
    assert row, listing.text
    cells = row.group(1)
    assert "<code>wiki</code>" in cells and "<td>root</td>" in cells
    assert cells.count("14 Mar 2026, 15:09 UTC") == 2  # added, and last used by the check above
    assert f'href="{PAGE}/wiki/remove"' in cells


def test_removing_asks_first_then_the_key_stops_working(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_admin(client, ctx)
    api_key = api_key_of(add_app(client, "chat"))
    keep = api_key_of(add_app(client, "wiki"))
    ask = client.get(f"{PAGE}/chat/remove")
    assert ask.status_code == 200 and "Remove “chat”?" in text_of(ask)
    assert "by root" in ask.text and "stops working at once" in ask.text
    done = submit(client, ask, f"{PAGE}/chat/remove")
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?notice=app_removed"
    listing = client.get(done.headers["location"])
    assert "The application was removed" in listing.text
    assert "<code>chat</code>" not in listing.text and "<code>wiki</code>" in listing.text
    assert verify(client, api_key, "123456").status_code == 401
    assert verify(client, keep, "123456").status_code == 200
    # Gone already: both the confirmation and the form say so on a page.
    gone = client.get(f"{PAGE}/chat/remove")
    assert gone.status_code == 404 and gone.headers["content-type"].startswith("text/html")
    assert_support_details(gone, "application_not_found", "root")
    again = submit(client, listing, f"{PAGE}/chat/remove")
    assert again.status_code == 404 and error_code_of(again) == "application_not_found"


@pytest.mark.parametrize(
    ("name", "status", "code", "message"),
    [
        pytest.param("wiki", 409, "application_exists", "An application with that name is registered", id="taken"),
        pytest.param("WIKI", 409, "application_exists", "An application with that name is registered", id="case"),
        pytest.param("my wiki!", 422, "invalid_request", "An application name is 1 to 64 characters", id="bad"),
        pytest.param("", 422, "invalid_request", "An application name is 1 to 64 characters", id="empty"),
    ],
)
def test_mistakes_are_shown_on_the_page(
    client: TestClient, runtime: Runtime, name: str, status: int, code: str, message: str
) -> None:
    ctx = runtime.services
    signed_in_admin(client, ctx)
    api_key_of(add_app(client, "wiki"))
    refused = add_app(client, name)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"].startswith("text/html")
    assert message in text_of(refused) and 'id="new-api-key"' not in refused.text
    assert_support_details(refused, code, "root")
    assert f'value="{html.escape(name)}"' in refused.text  # kept in the form, to fix
    assert [a.name for a in applications.list_all(ctx)] == ["wiki"]


def test_every_step_needs_a_recent_verification(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_admin(client, ctx)
    page = client.get(PAGE)
    api_key_of(submit(client, page, PAGE, name="wiki"))
    advance(ctx, STALE)
    for ask in (
        client.get(PAGE),
        client.get(f"{PAGE}/wiki/remove"),
        submit(client, page, PAGE, name="chat"),
        submit(client, page, f"{PAGE}/wiki/remove"),
    ):
        assert ask.status_code == 403, ask.text
        assert "Confirm it's you" in text_of(ask) and 'name="next" value="/admin/apps"' in ask.text
        assert_support_details(ask, "reauthentication_required", "root")
    assert [a.name for a in applications.list_all(ctx)] == ["wiki"]

    done = submit(client, ask, "/security/reauth", method="password", password=PASSWORD, next=PAGE)
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?notice=reauthenticated"
    back = client.get(done.headers["location"])
    assert back.status_code == 200 and "<code>wiki</code>" in back.text
    assert api_key_of(submit(client, back, PAGE, name="chat"))


def test_every_apps_form_checks_csrf(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_admin(client, ctx)
    api_key = api_key_of(add_app(client, "wiki"))
    for path, fields in [(PAGE, {"name": "chat"}), (f"{PAGE}/wiki/remove", {})]:
        for token in ({}, {"csrf_token": "f" * 64}):
            response = client.post(path, data={**fields, **token}, follow_redirects=False)
            assert response.status_code == 403, (path, response.text)
            assert_support_details(response, "csrf_failed", "root")
    assert [a.name for a in applications.list_all(ctx)] == ["wiki"]
    assert verify(client, api_key, "123456").status_code == 200


def test_the_security_log_shows_what_administrators_did(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_admin(client, ctx)
    add_app(client, "wiki")
    submit(client, client.get(f"{PAGE}/wiki/remove"), f"{PAGE}/wiki/remove")
    log = text_of(client.get("/security/events"))
    assert "Application registered for the verify API" in log
    assert "Application removed from the verify API" in log
    assert "app: wiki" in log


# --- everyone else -------------------------------------------------------------------------------------------------


def test_members_get_the_403_page_and_change_nothing(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    applications.add(ctx, name="wiki", actor=None, client=ClientInfo())
    assert sign_in(client).status_code == 303
    assert f'href="{PAGE}"' not in client.get("/security").text
    security = client.get("/security")
    for response in (
        client.get(PAGE),
        client.get(f"{PAGE}/wiki/remove"),
        submit(client, security, PAGE, name="chat"),
        submit(client, security, f"{PAGE}/wiki/remove"),
    ):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("text/html")
        assert_support_details(response, "admin_required", "alice")
        assert "Only an instance administrator can do this" in response.text
        assert "Confirm it's you" not in text_of(response)  # told "no", not asked to prove anything
    # Even with an old verification: the role is checked first.
    advance(ctx, STALE)
    assert error_code_of(client.get(PAGE)) == "admin_required"
    assert [a.name for a in applications.list_all(ctx)] == ["wiki"]


def test_the_apps_pages_need_a_session(client: TestClient, runtime: Runtime) -> None:
    signed_in_admin(client, runtime.services)
    sign_out(client)
    for path in (PAGE, f"{PAGE}/wiki/remove"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login?notice=signin_required"
