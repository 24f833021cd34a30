"""Step-up re-verification ("sudo mode") over the REST API and on the pages.

Sensitive actions need a verification made within the step-up window (10 minutes by default): sign-in counts, and
so does ``POST /api/v1/auth/reauth``, which answers with a new session token. The fixed clock is moved past the
window to make a session "old".
"""

from __future__ import annotations

import html
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.services import accounts, enrollment
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, auth_header, code_at, enable_totp, login, make_user
from tests.web.pages_support import (
    assert_support_details,
    enable_totp_on_page,
    error_code_of,
    replace_cookie,
    signed_in_alice,
    submit,
)

#: Past the default 10-minute window.
STALE = 11 * 60
REAUTH = "/api/v1/auth/reauth"


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def wrong_code(secret: str, ctx: ServiceContext) -> str:
    return "000000" if code_at(secret, ctx) != "000000" else "111111"


def totp_alice(client: TestClient, runtime: Runtime) -> tuple[str, str, list[str]]:
    """Alice with an authenticator: (a session token, the TOTP secret, her recovery codes)."""
    ctx = runtime.services
    make_user(ctx)
    token = login(client)["session_token"]
    secret, codes = enable_totp(client, ctx, token)
    return token, secret, codes


def reauth(client: TestClient, token: str, **body: str) -> httpx.Response:
    response: httpx.Response = client.post(REAUTH, json=body, headers=auth_header(token))
    return response


def reauth_with_code(client: TestClient, runtime: Runtime, token: str, secret: str) -> str:
    response = reauth(client, token, method="totp", code=code_at(secret, runtime.services))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "authenticated"
    assert body["expires_in"] == int(runtime.services.session_lifetime.total_seconds())
    new_token: str = body["session_token"]
    return new_token


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


#: Each sensitive action (2FA on): how to ask for it, and the answer when it is allowed.
SENSITIVE = [
    pytest.param("DELETE", "/api/v1/me/totp", 204, id="turn-off-2fa"),
    pytest.param("POST", "/api/v1/me/totp", 200, id="change-authenticator"),
    pytest.param("POST", "/api/v1/me/recovery-codes", 200, id="regenerate-recovery-codes"),
]


# --- the API ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "allowed"), SENSITIVE)
def test_each_sensitive_action_needs_a_recent_verification_and_a_code_gives_it(
    client: TestClient, runtime: Runtime, method: str, path: str, allowed: int
) -> None:
    token, secret, _ = totp_alice(client, runtime)
    advance(runtime.services, STALE)
    refused = client.request(method, path, headers=auth_header(token))
    assert refused.status_code == 403, refused.text
    error = error_of(refused)
    assert error["code"] == "reauthentication_required"
    assert "/api/v1/auth/reauth" in error["message"] and error["correlation_id"]
    # Nothing changed: 2FA is still on and nothing is pending.
    alice = accounts.find_user(runtime.services, "alice")
    state = enrollment.security_state(runtime.services, alice.id)
    assert state.totp_enabled and not state.totp_enrollment_pending and state.recovery_codes_remaining == 16

    new_token = reauth_with_code(client, runtime, token, secret)
    done = client.request(method, path, headers=auth_header(new_token))
    assert done.status_code == allowed, done.text


@pytest.mark.parametrize(("method", "path", "allowed"), SENSITIVE)
def test_a_recovery_code_gives_step_up_and_is_then_spent(
    client: TestClient, runtime: Runtime, method: str, path: str, allowed: int
) -> None:
    token, _, codes = totp_alice(client, runtime)
    advance(runtime.services, STALE)
    response = reauth(client, token, method="recovery_code", code=codes[0])
    assert response.status_code == 200, response.text
    new_token = response.json()["session_token"]
    me = client.get("/api/v1/me", headers=auth_header(new_token)).json()
    assert me["two_factor"]["recovery_codes_remaining"] == 15
    # The same code does not work a second time.
    again = reauth(client, new_token, method="recovery_code", code=codes[0])
    assert again.status_code == 401 and error_of(again)["code"] == "invalid_code"
    assert client.request(method, path, headers=auth_header(new_token)).status_code == allowed


def test_recently_verified_users_are_not_asked_again(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, secret, _ = totp_alice(client, runtime)
    # A fresh two-step sign-in is a verification.
    mfa_token = login(client)["mfa_token"]
    signed = client.post(
        "/api/v1/auth/mfa", json={"mfa_token": mfa_token, "method": "totp", "code": code_at(secret, ctx)}
    )
    headers = auth_header(signed.json()["session_token"])
    advance(ctx, 9 * 60)  # still inside the window
    assert client.post("/api/v1/me/recovery-codes", headers=headers).status_code == 200
    assert client.post("/api/v1/me/totp", headers=headers).status_code == 200
    assert client.delete("/api/v1/me/totp", headers=headers).status_code == 204
    # ...and the window is the setting: one more minute and a half is too old.
    advance(ctx, 90)
    assert client.post("/api/v1/me/totp", headers=headers).status_code == 200  # first set-up: not sensitive
    assert error_of(client.delete("/api/v1/me/totp", headers=headers))["code"] == "reauthentication_required"


def test_setting_up_the_first_authenticator_needs_no_step_up(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    token = login(client)["session_token"]
    advance(runtime.services, STALE)
    assert client.post("/api/v1/me/totp", headers=auth_header(token)).status_code == 200


def test_a_password_is_refused_when_a_second_factor_exists(client: TestClient, runtime: Runtime) -> None:
    token, secret, _ = totp_alice(client, runtime)
    advance(runtime.services, STALE)
    refused = reauth(client, token, method="password", password=PASSWORD)
    assert refused.status_code == 409, refused.text
    error = error_of(refused)
    assert error["code"] == "method_not_available"
    assert "two-step verification" in error["message"] and "authenticator app" in error["message"]
    # The session is unchanged: still valid, still not verified.
    assert client.get("/api/v1/me", headers=auth_header(token)).status_code == 200
    assert client.delete("/api/v1/me/totp", headers=auth_header(token)).status_code == 403
    # Not counted as a failed guess: two refusals later a code still works at once.
    assert reauth(client, token, method="password", password=PASSWORD).status_code == 409
    assert reauth(client, token, method="totp", code=code_at(secret, runtime.services)).status_code == 200


def test_a_user_without_a_second_factor_confirms_with_the_password(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    token = login(client)["session_token"]
    advance(runtime.services, STALE)
    assert error_of(client.delete("/api/v1/me/totp", headers=auth_header(token)))["code"] == (
        "reauthentication_required"
    )
    no_code = reauth(client, token, method="totp", code="123456")
    assert no_code.status_code == 409 and error_of(no_code)["code"] == "method_not_available"
    assert "password" in error_of(no_code)["message"]
    wrong = reauth(client, token, method="password", password="not the password")
    assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_credentials"
    assert "not the password" not in wrong.text
    right = reauth(client, token, method="password", password=PASSWORD)
    assert right.status_code == 200, right.text
    new_token = right.json()["session_token"]
    # Verified now: the action is evaluated (and says 2FA is not on), no longer refused.
    off = client.delete("/api/v1/me/totp", headers=auth_header(new_token))
    assert off.status_code == 409 and error_of(off)["code"] == "totp_not_enabled"


def test_the_old_session_token_stops_working_after_step_up(client: TestClient, runtime: Runtime) -> None:
    token, secret, _ = totp_alice(client, runtime)
    advance(runtime.services, STALE)
    new_token = reauth_with_code(client, runtime, token, secret)
    assert new_token != token and new_token.startswith("nidan_s_")
    old = client.get("/api/v1/me", headers=auth_header(token))
    assert old.status_code == 401 and error_of(old)["code"] == "authentication_required"
    assert client.get("/api/v1/me", headers=auth_header(new_token)).status_code == 200
    # The old token cannot step up either, nor sign out.
    advance(runtime.services, totp.PERIOD)
    assert reauth(client, token, method="totp", code=code_at(secret, runtime.services)).status_code == 401
    assert client.post("/api/v1/auth/logout", headers=auth_header(token)).status_code == 401


def test_a_replayed_code_does_not_step_up(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    token, secret, _ = totp_alice(client, runtime)
    advance(ctx, STALE)
    code = code_at(secret, ctx)
    new_token = reauth_with_code(client, runtime, token, secret)
    replayed = reauth(client, new_token, method="totp", code=code)
    assert replayed.status_code == 401 and error_of(replayed)["code"] == "invalid_code"
    # The session that failed is still the one that works.
    assert client.get("/api/v1/me", headers=auth_header(new_token)).status_code == 200
    # A code used to sign in cannot step up either.
    advance(ctx, totp.PERIOD)
    mfa_token = login(client)["mfa_token"]
    sign_in_code = code_at(secret, ctx)
    signed = client.post("/api/v1/auth/mfa", json={"mfa_token": mfa_token, "method": "totp", "code": sign_in_code})
    assert signed.status_code == 200
    assert reauth(client, new_token, method="totp", code=sign_in_code).status_code == 401


def test_step_up_is_rate_limited_by_the_backoff(client: TestClient, runtime: Runtime) -> None:
    """Default tolerated_failures=1: the second wrong code blocks for 1 s; a correct code then resets the count."""
    ctx = runtime.services
    token, secret, _ = totp_alice(client, runtime)
    advance(ctx, STALE)
    for _ in range(2):
        wrong = reauth(client, token, method="totp", code=wrong_code(secret, ctx))
        assert wrong.status_code == 401 and error_of(wrong)["code"] == "invalid_code"
    # Blocked: even the right code is not looked at (and so not spent).
    blocked = reauth(client, token, method="totp", code=code_at(secret, ctx))
    assert blocked.status_code == 429, blocked.text
    assert error_of(blocked)["code"] == "rate_limited"
    retry_after = int(blocked.headers["retry-after"])
    assert retry_after == 1
    assert "Wait 1 second" in error_of(blocked)["message"]
    advance(ctx, retry_after)
    new_token = reauth_with_code(client, runtime, token, secret)
    # The success reset the count: the next block starts at 1 s again, not 2 s.
    advance(ctx, totp.PERIOD)
    for _ in range(2):
        assert reauth(client, new_token, method="totp", code=wrong_code(secret, ctx)).status_code == 401
    again = reauth(client, new_token, method="totp", code=code_at(secret, ctx))
    assert again.status_code == 429 and again.headers["retry-after"] == "1"


def test_step_up_shares_the_backoff_with_sign_in_codes(client: TestClient, runtime: Runtime) -> None:
    """One counter for the user's second step: wrong codes at sign-in block step-up too, and password step-up
    failures count for a user without a second factor."""
    ctx = runtime.services
    token, secret, _ = totp_alice(client, runtime)
    advance(ctx, STALE)
    for _ in range(2):
        mfa_token = login(client)["mfa_token"]
        body = {"mfa_token": mfa_token, "method": "totp", "code": wrong_code(secret, ctx)}
        assert client.post("/api/v1/auth/mfa", json=body).status_code == 401
    blocked = reauth(client, token, method="totp", code=code_at(secret, ctx))
    assert blocked.status_code == 429 and error_of(blocked)["code"] == "rate_limited"

    make_user(ctx, "bob")
    bob = login(client, "bob")["session_token"]
    for _ in range(2):
        assert reauth(client, bob, method="password", password="wrong password").status_code == 401
    limited = reauth(client, bob, method="password", password=PASSWORD)
    assert limited.status_code == 429 and "retry-after" in limited.headers


@pytest.mark.parametrize(
    "body",
    [
        {"method": "totp"},
        {"method": "recovery_code"},
        {"method": "password"},
        {"method": "totp", "password": PASSWORD},
        {"method": "password", "code": "123456"},
        {"method": "totp", "code": "123456", "password": PASSWORD},
        {"method": "sms", "code": "123456"},
        {"method": "totp", "code": ""},
        {"method": "totp", "code": "123456", "extra": "x"},
    ],
)
def test_reauth_needs_exactly_the_field_its_method_takes(
    client: TestClient, runtime: Runtime, body: dict[str, str]
) -> None:
    make_user(runtime.services)
    token = login(client)["session_token"]
    response = client.post(REAUTH, json=body, headers=auth_header(token))
    assert response.status_code == 422, response.text
    assert error_of(response)["code"] == "invalid_request"


def test_reauth_needs_a_session(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    body = {"method": "password", "password": PASSWORD}
    for headers in ({}, {"Authorization": "Bearer nope"}, auth_header("nidan_s_" + "A" * 43)):
        response = client.post(REAUTH, json=body, headers=headers)
        assert response.status_code == 401 and error_of(response)["code"] == "authentication_required"
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_reauth_is_documented(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"][REAUTH]["post"]
    assert {"200", "401", "403", "409", "422", "429"} <= set(operation["responses"])
    for path, verb in [
        ("/api/v1/me/totp", "delete"),
        ("/api/v1/me/totp", "post"),
        ("/api/v1/me/recovery-codes", "post"),
    ]:
        assert "403" in spec["paths"][path][verb]["responses"], (path, verb)


# --- the pages -------------------------------------------------------------------------------------------------------


def hidden_next(page: httpx.Response) -> str:
    marker = 'name="next" value="'
    start = page.text.index(marker) + len(marker)
    return page.text[start : page.text.index('"', start)]


def test_turning_off_on_the_page_asks_to_confirm_and_returns_to_the_action(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    old_cookie = client.cookies.get("nidan_session")
    # The confirmation page of the action asks first, inline.
    ask = client.get("/security/totp/disable")
    assert ask.status_code == 403
    assert "Confirm it's you" in ask.text and 'action="/security/reauth"' in ask.text
    assert hidden_next(ask) == "/security/totp/disable"
    assert 'autocomplete="one-time-code"' in ask.text and "Use a different verification option" in ask.text
    assert 'href="/security/reauth?method=recovery_code&amp;next=%2Fsecurity%2Ftotp%2Fdisable"' in ask.text
    assert_support_details(ask, "reauthentication_required", "alice")
    # Posting the action itself (an old tab) is refused the same way and changes nothing.
    posted = submit(client, ask, "/security/totp/disable")
    assert posted.status_code == 403 and "Confirm it's you" in posted.text
    alice = accounts.find_user(ctx, "alice")
    assert enrollment.security_state(ctx, alice.id).totp_enabled

    done = submit(client, ask, "/security/reauth", method="totp", code=code_at(secret, ctx), next=hidden_next(ask))
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/security/totp/disable?notice=reauthenticated"
    new_cookie = client.cookies.get("nidan_session")
    assert new_cookie and new_cookie != old_cookie
    confirm = client.get(done.headers["location"])
    assert confirm.status_code == 200 and "anyone who learns your password" in confirm.text
    assert "Confirmed: it's you." in html.unescape(confirm.text)
    off = submit(client, confirm, "/security/totp/disable")
    assert off.status_code == 303 and off.headers["location"] == "/security?notice=disabled"
    assert not enrollment.security_state(ctx, alice.id).totp_enabled
    # The cookie from before the confirmation opens nothing any more.
    replace_cookie(client, "nidan_session", old_cookie or "")
    assert client.get("/security", follow_redirects=False).status_code == 303


def test_regenerating_codes_on_the_page_after_confirming_with_a_recovery_code(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    _, codes = enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    ask = submit(client, client.get("/security"), "/security/recovery-codes")
    assert ask.status_code == 403 and "Confirm it's you" in ask.text
    # The POST is not replayed: the confirmation returns to the page that asks for it.
    assert hidden_next(ask) == "/security/recovery-codes"
    alice = accounts.find_user(ctx, "alice")
    assert enrollment.security_state(ctx, alice.id).recovery_codes_remaining == 16
    # The link to the recovery-code form keeps where to go back to.
    switch = client.get("/security/reauth?method=recovery_code&next=%2Fsecurity%2Frecovery-codes")
    assert switch.status_code == 200 and 'value="recovery_code"' in switch.text
    assert (
        'href="/security/reauth?method=totp&amp;next=%2Fsecurity%2Frecovery-codes">Authenticator app</a>' in switch.text
    )
    done = submit(
        client, switch, "/security/reauth", method="recovery_code", code=codes[5], next="/security/recovery-codes"
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/security/recovery-codes?notice=reauthenticated"
    confirm = client.get(done.headers["location"])
    assert confirm.status_code == 200 and "Regenerate recovery codes?" in confirm.text
    assert 'action="/security/recovery-codes"' in confirm.text
    # Nothing happened yet: one code was spent confirming, the set is the old one.
    assert enrollment.security_state(ctx, alice.id).recovery_codes_remaining == 15
    regenerated = submit(client, confirm, "/security/recovery-codes")
    assert regenerated.status_code == 200 and "Your previous codes no longer work" in regenerated.text


def test_changing_the_app_on_the_page_asks_to_confirm(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    ask = submit(client, client.get("/security"), "/security/totp")
    assert ask.status_code == 403 and "Confirm it's you" in ask.text
    assert 'id="totp-key"' not in ask.text
    assert hidden_next(ask) == "/security/totp/change"
    done = submit(client, ask, "/security/reauth", method="totp", code=code_at(secret, ctx), next=hidden_next(ask))
    # Back where the change is asked for (a POST is never replayed), not on the security page.
    assert done.headers["location"] == "/security/totp/change?notice=reauthenticated"
    change = client.get(done.headers["location"])
    assert change.status_code == 200 and "Change your authenticator app" in change.text
    assert 'id="totp-key"' not in change.text and 'action="/security/totp"' in change.text
    enrolment = submit(client, change, "/security/totp")
    assert enrolment.status_code == 200 and "Change your authenticator app" in enrolment.text
    assert 'id="totp-key"' in enrolment.text
    # The button says what it does: it replaces the app, it does not turn anything on.
    assert ">Replace the app</button>" in enrolment.text and ">Turn on</button>" not in enrolment.text


def test_right_after_sign_in_the_page_does_not_ask(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    assert client.get("/security/totp/disable").status_code == 200
    assert submit(client, client.get("/security"), "/security/recovery-codes").status_code == 200
    # Nothing to confirm: the confirmation page goes straight back.
    back = client.get("/security/reauth?next=/security/totp/disable", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == "/security/totp/disable"


def test_a_wrong_code_on_the_page_shows_the_form_again_then_the_wait(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    ask = client.get("/security/totp/disable")
    wrong = submit(client, ask, "/security/reauth", method="totp", code=wrong_code(secret, ctx), next="/security")
    assert wrong.status_code == 401
    assert_support_details(wrong, "invalid_code", "alice")
    assert "That code is not valid" in wrong.text and 'action="/security/reauth"' in wrong.text
    assert hidden_next(wrong) == "/security"
    again = submit(client, wrong, "/security/reauth", method="totp", code=wrong_code(secret, ctx), next="/security")
    assert again.status_code == 401
    blocked = submit(client, again, "/security/reauth", method="totp", code=code_at(secret, ctx), next="/security")
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "1"
    assert error_code_of(blocked) == "rate_limited" and "Wait 1 second" in blocked.text
    advance(ctx, 1)
    done = submit(client, blocked, "/security/reauth", method="totp", code=code_at(secret, ctx), next="/security")
    assert done.status_code == 303


def test_a_user_without_2fa_confirms_with_the_password_on_the_page(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    advance(ctx, STALE)
    page = client.get("/security/reauth")
    assert page.status_code == 200 and 'type="password"' in page.text and 'autocomplete="current-password"' in page.text
    assert "recovery code" not in page.text.lower()
    wrong = submit(client, page, "/security/reauth", method="password", password="nope nope", next="/security")
    assert wrong.status_code == 401 and error_code_of(wrong) == "invalid_credentials"
    assert "nope nope" not in wrong.text
    done = submit(client, wrong, "/security/reauth", method="password", password=PASSWORD, next="/security")
    assert done.status_code == 303 and done.headers["location"] == "/security?notice=reauthenticated"


def test_a_password_is_refused_on_the_page_when_2fa_is_on(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    page = client.get("/security/reauth")
    refused = submit(client, page, "/security/reauth", method="password", password=PASSWORD, next="/security")
    assert refused.status_code == 409 and error_code_of(refused) == "method_not_available"
    assert client.get("/security/totp/disable").status_code == 403


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/security",
        "/\\evil.example",
        "http:/security",
        "/security/../login",
        "/login",
        "/security?x=https://evil.example",
        "",
        "HTTPS://evil.example/security",
        "javascript:alert(1)",
        "/security\\..\\..\\evil.example",
        "\\\\evil.example\\security",
        "/security//evil.example",
        "/%2F%2Fevil.example",
        "/security/%2e%2e/login",
        "/security/./tokens",
        " /security/tokens",
        "/security/tokens#x",
        "/security/reauth",
    ],
)
def test_next_never_leaves_the_allowed_pages(client: TestClient, runtime: Runtime, target: str) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    page = client.get("/security/reauth", params={"next": target})
    assert page.status_code == 200 and hidden_next(page) == "/security"
    done = submit(client, page, "/security/reauth", method="totp", code=code_at(secret, ctx), next=target)
    assert done.status_code == 303 and done.headers["location"] == "/security?notice=reauthenticated"


def test_the_confirmation_form_checks_csrf(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    advance(ctx, STALE)
    old_cookie = client.cookies.get("nidan_session")
    data = {"method": "totp", "code": code_at(secret, ctx), "next": "/security"}
    for token in ({}, {"csrf_token": "f" * 64}):
        response = client.post("/security/reauth", data={**data, **token}, follow_redirects=False)
        assert response.status_code == 403 and error_code_of(response) == "csrf_failed"
    assert client.cookies.get("nidan_session") == old_cookie
    # The code was not spent by the refused forms.
    page = client.get("/security/reauth")
    assert submit(client, page, "/security/reauth", **data).status_code == 303


def test_the_confirmation_page_needs_a_session(client: TestClient) -> None:
    response = client.get("/security/reauth", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?notice=signin_required"
