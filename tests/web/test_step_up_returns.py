"""After "Confirm it's you" the person lands where they were finishing their action: the page itself for a GET, the
page that asks for the action for a POST (never the POST replayed), an administrator's confirmation page included.
The pages a POST returns to say what their button does."""

from __future__ import annotations

import html

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole
from nidan.services import accounts, enrollment
from tests.helpers import PASSWORD, make_user
from tests.web.admin_support import STALE, advance, signed_in, text_of
from tests.web.pages_support import enable_totp_on_page, signed_in_alice, submit

NEXT = 'name="next" value="'


def next_of(page_text: str) -> str:
    start = page_text.index(NEXT) + len(NEXT)
    return page_text[start : page_text.index('"', start)]


def test_an_administrators_action_posted_on_a_stale_session_returns_to_its_confirmation_page(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get("/admin/users/alice/disable")
    advance(ctx, STALE)
    ask = submit(client, page, "/admin/users/alice/disable", reason="left the company")
    assert ask.status_code == 403 and "Confirm it's you" in text_of(ask)
    assert next_of(ask.text) == "/admin/users/alice/disable"
    assert '<a href="/admin">Cancel</a>' in ask.text  # not the security page: the person was in the console
    done = submit(client, ask, "/security/reauth", method="password", password=PASSWORD, next=next_of(ask.text))
    assert done.status_code == 303
    assert done.headers["location"] == "/admin/users/alice/disable?notice=reauthenticated"
    confirm = client.get(done.headers["location"])
    assert confirm.status_code == 200 and "Disable the account of alice?" in text_of(confirm)
    # The POST was not replayed: the account is untouched until the button is pressed again.
    assert accounts.find_user(ctx, "alice").disabled_at is None
    disabled = submit(client, confirm, "/admin/users/alice/disable", reason="left the company")
    assert disabled.headers["location"] == "/admin/users/alice?notice=user_disabled"
    assert accounts.find_user(ctx, "alice").disabled_at is not None


def test_a_get_action_reopens_its_page(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    advance(ctx, STALE)
    ask = client.get("/security/password")
    assert ask.status_code == 403 and next_of(ask.text) == "/security/password"
    done = submit(client, ask, "/security/reauth", method="password", password=PASSWORD, next=next_of(ask.text))
    assert done.headers["location"] == "/security/password?notice=reauthenticated"
    assert client.get(done.headers["location"]).status_code == 200


def test_the_change_app_and_new_codes_pages_say_what_their_buttons_do(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    # Nothing to change or regenerate without an app: back to the security page.
    assert client.get("/security/totp/change", follow_redirects=False).headers["location"] == "/security"
    assert client.get("/security/recovery-codes", follow_redirects=False).headers["location"] == "/security"
    enable_totp_on_page(client, ctx)
    change = client.get("/security/totp/change")
    assert change.status_code == 200 and 'action="/security/totp"' in change.text
    assert ">Show the new QR code</button>" in change.text
    codes = client.get("/security/recovery-codes")
    assert codes.status_code == 200 and ">Regenerate recovery codes</button>" in codes.text
    alice = accounts.find_user(ctx, "alice")
    assert enrollment.security_state(ctx, alice.id).recovery_codes_remaining == 16  # looking changes nothing


def test_a_wrong_code_while_changing_the_app_keeps_saying_replace(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    enrolment = submit(client, client.get("/security/totp/change"), "/security/totp")
    assert ">Replace the app</button>" in enrolment.text and ">Turn on</button>" not in enrolment.text
    wrong = submit(client, enrolment, "/security/totp/activate", code="000000")
    assert wrong.status_code in (400, 401, 422), wrong.text
    assert "<h1>Change your authenticator app</h1>" in wrong.text
    assert ">Replace the app</button>" in wrong.text and ">Turn on</button>" not in wrong.text


def test_the_first_setup_still_turns_it_on(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enrolment = submit(client, client.get("/security"), "/security/totp")
    assert ">Turn on</button>" in enrolment.text and "Replace the app" not in enrolment.text


def test_changing_the_app_in_japanese(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    client.cookies.set("nidan_lang", "ja")
    enrolment = submit(client, client.get("/security/totp/change"), "/security/totp")
    assert "認証アプリを置き換える</button>" in html.unescape(enrolment.text)
