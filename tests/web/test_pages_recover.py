"""The /recover page: the one-time link ``nidan admin recover`` prints, opened in a browser without JavaScript."""

from __future__ import annotations

import html

import httpx
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole
from nidan.services import audit, break_glass
from nidan.services.context import ServiceContext
from tests.helpers import make_user
from tests.web.pages_support import assert_support_details, csrf_of, error_code_of

CLIENT = ClientInfo(user_agent="nidan command line (test)")


def new_link(ctx: ServiceContext, username: str = "root") -> str:
    return break_glass.recover_admin(ctx, username=username, client=CLIENT).token


def press(client: TestClient, page: httpx.Response, token: str) -> httpx.Response:
    response: httpx.Response = client.post(
        "/recover", data={"csrf_token": csrf_of(page), "token": token}, follow_redirects=False
    )
    return response


def test_the_page_explains_and_offers_one_button(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    token = new_link(ctx)
    page = client.get(f"/recover?token={token}")
    assert page.status_code == 200, page.text
    assert "<h1>Recover administrator access</h1>" in page.text
    assert f'<input type="hidden" name="token" value="{token}">' in page.text
    assert page.text.count("<button") == 1 and 'action="/recover"' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "strict-origin"
    assert "form-action 'self'" in page.headers["content-security-policy"]
    # Looking at the page (a link preview, a mail scanner) spends nothing.
    assert client.get(f"/recover?token={token}").status_code == 200
    assert not audit.all_events(ctx, event_type=EventType.RECOVERY_LINK_USED)


def test_pressing_the_button_starts_an_enrolment_only_sign_in(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    token = new_link(ctx)
    page = client.get(f"/recover?token={token}")
    done = press(client, page, token)
    assert done.status_code == 303 and done.headers["location"] == "/security/setup?via=recovery_link"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("nidan_session=nidan_e_") and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "Max-Age=1800" in cookie
    setup = client.get(done.headers["location"])
    assert setup.status_code == 200 and "Signed in as <strong>root</strong>" in setup.text
    # No password was asked for on the way here: the page says what did happen.
    assert "You opened a recovery link printed by <code>nidan admin recover</code>" in setup.text
    assert "password was right" not in setup.text
    for path in ("/security", "/security/tokens", "/security/events"):
        sent_back = client.get(path, follow_redirects=False)
        assert sent_back.status_code == 303 and sent_back.headers["location"] == "/security/setup", path

    # Pressed again from the page as this browser now gets it (its forms follow the new session): the link is spent.
    again = press(client, client.get(f"/recover?token={token}"), token)
    assert again.status_code == 401
    assert_support_details(again, "recovery_link_invalid", "root")
    assert "nidan admin recover USERNAME" in html.unescape(again.text)
    (used,) = [r.event for r in audit.all_events(ctx, event_type=EventType.RECOVERY_LINK_USED)]
    assert used.actor_username == "root" and used.subject_username == "root"


def test_a_form_without_its_csrf_token_spends_nothing(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    token = new_link(ctx)
    page = client.get(f"/recover?token={token}")
    for data in ({"token": token}, {"token": token, "csrf_token": "0" * 64}):
        refused = client.post("/recover", data=data, follow_redirects=False)
        assert refused.status_code == 403 and error_code_of(refused) == "csrf_failed"
    assert press(client, page, token).status_code == 303


def test_invalid_expired_and_replaced_links_show_the_error_page(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    for url in ("/recover", "/recover?token=nope", "/recover?token=" + "A" * 43):
        page = client.get(url)
        assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")
        assert_support_details(page, "recovery_link_invalid", None)

    replaced = new_link(ctx)
    current = new_link(ctx)  # a new link makes the previous one stop working
    assert client.get(f"/recover?token={replaced}").status_code == 401
    page = client.get(f"/recover?token={current}")
    assert page.status_code == 200
    ctx.clock.advance(3601)  # type: ignore[attr-defined]
    late = press(client, page, current)
    assert late.status_code == 401 and error_code_of(late) == "recovery_link_invalid"
    assert "set-cookie" not in late.headers or "nidan_session=" not in late.headers["set-cookie"]
