"""The tokens page (/security/tokens): personal access tokens and app passwords made, listed and revoked in a
browser without JavaScript. The secret is on the answer that made it and nowhere else; creating needs a recent
verification; mistakes are shown on the page."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.access_tokens import TokenKind
from nidan.core.models import ClientInfo
from nidan.services import accounts, tokens
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, code_at, make_user
from tests.web.pages_support import (
    assert_support_details,
    enable_totp_on_page,
    error_code_of,
    sign_in,
    sign_out,
    signed_in_alice,
    submit,
)

PAGE = "/security/tokens"
SECRET = re.compile(r'<code id="new-token" class="secret">(nidan_(?:pat|app)_[A-Za-z0-9_-]+)</code>')
#: Past the default 10-minute step-up window.
STALE = 11 * 60


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def today(ctx: ServiceContext) -> str:
    return ctx.clock.now().astimezone(UTC).date().isoformat()


def in_days(ctx: ServiceContext, days: int) -> str:
    return (ctx.clock.now().astimezone(UTC).date() + timedelta(days=days)).isoformat()


def as_shown(iso_day: str) -> str:
    """An expiry day as an English page writes it: the start of that day, in UTC (no zone chosen)."""
    day = date.fromisoformat(iso_day)
    return f"{day.day} {day:%b %Y}, 00:00 UTC"


def secret_of(page: httpx.Response) -> str:
    found = SECRET.search(page.text)
    assert found, page.text
    return found.group(1)


def gate(client: TestClient, username: str, secret: str, scope: str = "read_repository") -> int:
    response: httpx.Response = client.get("/auth/basic", params={"scope": scope}, auth=(username, secret))
    return response.status_code


def create_token(client: TestClient, **fields: str | list[str]) -> httpx.Response:
    """Send the personal access token form (by default: "laptop git", read_repository, no expiry date)."""
    page = client.get(PAGE)
    data: dict[str, str | list[str]] = {"name": "laptop git", "scopes": ["read_repository"], "expires_on": ""}
    data.update(fields)
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert csrf, page.text
    response: httpx.Response = client.post(
        f"{PAGE}/personal", data={"csrf_token": csrf.group(1), **data}, follow_redirects=False
    )
    return response


def text_of(page: httpx.Response) -> str:
    return html.unescape(page.text)


# --- the page and making a token -----------------------------------------------------------------------------------


def test_the_security_page_links_to_the_tokens_page(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    security = client.get("/security")
    assert f'href="{PAGE}"' in security.text
    assert 'href="/admin/apps"' not in security.text  # alice is no administrator


def test_the_empty_page_explains_the_scopes_and_the_lifetime_cap(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    page = client.get(PAGE)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    text = text_of(page)
    assert "You have no access tokens or app passwords." in text
    for scope, words in [
        ("read_repository", "Clone and pull"),
        ("write_repository", "Push to Git"),
        ("read_registry", "Pull container images"),
        ("write_registry", "Push container images"),
        ("api", "API of a service behind a proxy"),
    ]:
        assert f'name="scopes" value="{scope}"' in page.text
        assert words in text
    cap = in_days(ctx, 365)
    assert f'type="date" min="{in_days(ctx, 1)}"' in page.text and f'max="{cap}"' in page.text
    assert f"at most 365 days here: on or before {cap}" in text
    assert 'action="/security/tokens/personal"' in page.text and 'action="/security/tokens/app-password"' in page.text


def test_a_token_is_shown_once_works_at_the_gate_and_is_listed_without_its_secret(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    expires = in_days(ctx, 30)
    made = create_token(client, scopes=["write_repository", "read_repository"], expires_on=expires)
    assert made.status_code == 200, made.text
    assert made.headers["cache-control"] == "no-store"
    secret = secret_of(made)
    assert secret.startswith("nidan_pat_")
    text = text_of(made)
    assert "you won't see it again" in text
    assert "git clone https://alice:TOKEN@" in text
    assert 'data-action="copy" data-copy-from="new-token"' in made.text
    assert f"It stops working on {as_shown(expires)}." in text
    assert "<code>read_repository</code>, <code>write_repository</code>" in made.text

    # It opens what its scopes say, and nothing else.
    assert gate(client, "alice", secret) == 200
    assert gate(client, "alice", secret, "write_repository") == 200
    assert gate(client, "alice", secret, "read_registry") == 401

    listing = client.get(PAGE)
    assert secret not in listing.text and secret[10:30] not in listing.text
    row = re.search(r'<tr id="token-(\d+)">(.*?)</tr>', listing.text, re.S)
    assert row, listing.text
    cells = html.unescape(row.group(2))
    assert "laptop git" in cells and "Personal access token" in cells
    assert "read_repository" in cells and "write_repository" in cells and "read_registry" not in cells
    shown_day = as_shown(expires).split(",")[0]
    assert f"<dt>Expires</dt><dd>{shown_day}</dd>" in cells and "Expired" not in cells
    assert '<time datetime="2026-03-14T15:09:26+00:00">14 Mar 2026</time>' in cells  # created
    assert "<dt>Last used</dt><dd>14 Mar 2026, 15:09 UTC</dd>" in cells  # by the gate, a moment ago
    assert f'href="/security/tokens/{row.group(1)}/revoke"' in cells


def test_an_app_password_carries_every_scope_and_expires_at_the_cap(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    page = client.get(PAGE)
    made = submit(client, page, f"{PAGE}/app-password", name="Thunderbird")
    assert made.status_code == 200, made.text
    secret = secret_of(made)
    assert secret.startswith("nidan_app_")
    text = text_of(made)
    assert "Your new app password" in text and "It carries every scope." in text
    assert f"It stops working on {as_shown(in_days(ctx, 365))}." in text
    for scope in ("read_repository", "write_registry", "api"):
        assert gate(client, "alice", secret, scope) == 200
    listing = text_of(client.get(PAGE))
    assert "Thunderbird" in listing and "App password" in listing and "every scope" in listing
    assert secret not in listing


def test_an_expired_token_is_marked_on_the_list(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret = secret_of(create_token(client, expires_on=in_days(ctx, 1)))
    assert "badge expired" not in client.get(PAGE).text
    advance(ctx, 2 * 24 * 3600)
    # The session has long ended; the list keeps the expired token until it is revoked.
    assert sign_in(client).status_code == 303
    listing = client.get(PAGE)
    assert '<span class="badge expired">Expired</span>' in listing.text
    assert gate(client, "alice", secret) == 401


# --- mistakes ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        pytest.param({"scopes": []}, 422, "Choose at least one scope", id="no-scope"),
        pytest.param({"scopes": ["read_repository", "sudo"]}, 422, "Unknown scope 'sudo'", id="unknown-scope"),
        pytest.param({"expires_on": "2999-01-01"}, 422, "Tokens may live at most 365 days here", id="beyond-cap"),
        pytest.param({"expires_on": "2026-03-14"}, 422, "The expiry date must be in the future", id="today"),
        pytest.param({"expires_on": "14/03/2027"}, 422, "The expiry date is not a date", id="not-a-date"),
        pytest.param({"name": "   "}, 422, "Give the token a name", id="no-name"),
        pytest.param({"name": "x" * 101}, 422, "The name is too long", id="long-name"),
    ],
)
def test_mistakes_are_shown_on_the_page_and_keep_what_was_typed(
    client: TestClient, runtime: Runtime, fields: dict[str, str | list[str]], status: int, message: str
) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    sent: dict[str, str | list[str]] = {"name": "ci deploy", "scopes": ["read_repository", "api"], **fields}
    refused = create_token(client, **sent)
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"].startswith("text/html")
    assert message in text_of(refused)
    assert_support_details(refused, "invalid_request", "alice")
    assert 'id="new-token"' not in refused.text
    # The form comes back as it was sent, ready to fix.
    name = sent["name"]
    assert isinstance(name, str)
    if name.strip() and len(name) <= 100:
        assert f'value="{name}"' in refused.text
    if "scopes" not in fields:
        assert re.search(r'value="api"\s+aria-describedby="scope-api-hint" checked', refused.text)
    alice = accounts.find_user(ctx, "alice")
    assert tokens.list_tokens(ctx, alice) == []


def test_an_app_password_without_a_name_is_refused_on_the_page(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    refused = submit(client, client.get(PAGE), f"{PAGE}/app-password", name=" ")
    assert refused.status_code == 422 and "Give the token a name" in text_of(refused)
    assert error_code_of(refused) == "invalid_request"
    assert tokens.list_tokens(ctx, accounts.find_user(ctx, "alice")) == []


# --- revoking ------------------------------------------------------------------------------------------------------


def test_revoking_asks_first_then_the_token_stops_working(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret = secret_of(create_token(client, name="old laptop"))
    keep = secret_of(create_token(client, name="new laptop"))
    alice = accounts.find_user(ctx, "alice")
    old = next(t for t in tokens.list_tokens(ctx, alice) if t.name == "old laptop")

    ask = client.get(f"{PAGE}/{old.id}/revoke")
    assert ask.status_code == 200
    assert "Revoke “old laptop”?" in text_of(ask) and "cannot be undone" in ask.text
    done = submit(client, ask, f"{PAGE}/{old.id}/revoke")
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?notice=token_revoked"
    listing = client.get(done.headers["location"])
    assert "The token was revoked" in listing.text
    assert "old laptop" not in listing.text and "new laptop" in listing.text
    assert gate(client, "alice", secret) == 401 and gate(client, "alice", keep) == 200

    # Revoked already: the confirmation and the form both say so on a page.
    gone = client.get(f"{PAGE}/{old.id}/revoke")
    assert gone.status_code == 404 and error_code_of(gone) == "token_not_found"
    again = submit(client, listing, f"{PAGE}/{old.id}/revoke")
    assert again.status_code == 404 and gone.headers["content-type"].startswith("text/html")


def test_nobody_revokes_or_sees_another_users_token(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    bob = make_user(ctx, "bob")
    bobs = tokens.create(
        ctx, bob, kind=TokenKind.PERSONAL, name="bob's ci", scopes=["api"], expires_on=None, client=ClientInfo()
    )
    signed_in_alice(client, ctx)
    assert "bob's ci" not in text_of(client.get(PAGE))
    assert client.get(f"{PAGE}/{bobs.token.id}/revoke").status_code == 404
    refused = submit(client, client.get(PAGE), f"{PAGE}/{bobs.token.id}/revoke")
    assert refused.status_code == 404 and error_code_of(refused) == "token_not_found"
    assert gate(client, "bob", bobs.secret, "api") == 200


def test_revoking_needs_no_fresh_verification(client: TestClient, runtime: Runtime) -> None:
    """Taking access away is never held up; only making new access is."""
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret = secret_of(create_token(client))
    token_id = tokens.list_tokens(ctx, accounts.find_user(ctx, "alice"))[0].id
    advance(ctx, STALE)
    done = submit(client, client.get(f"{PAGE}/{token_id}/revoke"), f"{PAGE}/{token_id}/revoke")
    assert done.status_code == 303
    assert gate(client, "alice", secret) == 401


# --- step-up and CSRF ----------------------------------------------------------------------------------------------


def test_creating_needs_a_recent_verification(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    totp_secret, _ = enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    alice = accounts.find_user(ctx, "alice")

    # The page offers the confirmation before the form, so nothing typed is lost.
    page = client.get(PAGE)
    assert page.status_code == 200
    assert 'href="/security/reauth?next=%2Fsecurity%2Ftokens"' in page.text
    assert 'action="/security/tokens/personal"' not in page.text

    # A form sent anyway (a tab left open) gets the confirmation form in its place, and nothing is made.
    for path, fields in [
        (f"{PAGE}/personal", {"name": "laptop", "scopes": "read_repository"}),
        (f"{PAGE}/app-password", {"name": "mail"}),
    ]:
        ask = submit(client, page, path, **fields)
        assert ask.status_code == 403, ask.text
        assert "Confirm it's you" in text_of(ask) and 'action="/security/reauth"' in ask.text
        assert 'name="next" value="/security/tokens"' in ask.text
        assert_support_details(ask, "reauthentication_required", "alice")
    assert tokens.list_tokens(ctx, alice) == []

    confirm = client.get("/security/reauth?next=%2Fsecurity%2Ftokens")
    assert confirm.status_code == 200 and 'name="next" value="/security/tokens"' in confirm.text
    done = submit(client, confirm, "/security/reauth", method="totp", code=code_at(totp_secret, ctx), next=PAGE)
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?notice=reauthenticated"
    back = client.get(done.headers["location"])
    assert 'action="/security/tokens/personal"' in back.text and "Confirmed: it's you." in text_of(back)
    made = create_token(client, name="laptop")
    assert made.status_code == 200 and secret_of(made)


def test_a_user_without_2fa_confirms_with_the_password(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    advance(ctx, STALE)
    ask = submit(client, client.get(PAGE), f"{PAGE}/app-password", name="mail")
    assert ask.status_code == 403 and 'type="password"' in ask.text
    done = submit(client, ask, "/security/reauth", method="password", password=PASSWORD, next=PAGE)
    assert done.headers["location"] == f"{PAGE}?notice=reauthenticated"
    assert secret_of(submit(client, client.get(PAGE), f"{PAGE}/app-password", name="mail")).startswith("nidan_app_")


def test_every_tokens_form_checks_csrf(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret = secret_of(create_token(client))
    alice = accounts.find_user(ctx, "alice")
    token_id = tokens.list_tokens(ctx, alice)[0].id
    forms = [
        (f"{PAGE}/personal", {"name": "x", "scopes": "api"}),
        (f"{PAGE}/app-password", {"name": "x"}),
        (f"{PAGE}/{token_id}/revoke", {}),
    ]
    for path, fields in forms:
        for token in ({}, {"csrf_token": "f" * 64}):
            response = client.post(path, data={**fields, **token}, follow_redirects=False)
            assert response.status_code == 403, (path, response.text)
            assert_support_details(response, "csrf_failed", "alice")
    assert [t.id for t in tokens.list_tokens(ctx, alice)] == [token_id]
    assert gate(client, "alice", secret) == 200


def test_the_tokens_pages_need_a_session(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    sign_out(client)
    for path in (PAGE, f"{PAGE}/1/revoke"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login?notice=signin_required"


def test_the_security_log_says_what_happened_to_tokens(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret = secret_of(create_token(client))
    token_id = tokens.list_tokens(ctx, accounts.find_user(ctx, "alice"))[0].id
    assert gate(client, "alice", secret, "api") == 401  # wrong scope: refused and logged
    submit(client, client.get(f"{PAGE}/{token_id}/revoke"), f"{PAGE}/{token_id}/revoke")
    log = text_of(client.get("/security/events"))
    assert "Access token or app password created" in log
    assert "Access token or app password revoked" in log
    assert "Git or app sign-in refused (password or token)" in log
    assert f"token id: {token_id}" in log and "scopes: read_repository" in log
    assert secret not in log
