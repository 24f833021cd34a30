"""The server-rendered pages, driven over HTTP like a browser without JavaScript: setup, sign-in, account security.

The helpers that drive them are in ``pages_support.py``.
"""

from __future__ import annotations

import html
import re
from urllib.parse import unquote

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.services import accounts, enrollment, setup
from tests.helpers import PASSWORD, code_at, make_user
from tests.web.pages_support import (
    CODE_ITEM,
    KEY,
    assert_support_details,
    enable_totp_on_page,
    error_code_of,
    replace_cookie,
    sign_in,
    sign_out,
    signed_in_alice,
    submit,
    verify,
)

# --- helpers -------------------------------------------------------------------------------------------------------


# --- first-admin setup -----------------------------------------------------------------------------------------------


def test_setup_link_creates_the_first_admin_and_signs_them_in(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    token = setup.issue_setup_token(ctx)
    assert token
    page = client.get(f"/setup?token={token}")
    assert page.status_code == 200, page.text
    assert page.headers["cache-control"] == "no-store"
    assert f'name="token" value="{token}"' in page.text
    assert 'autocomplete="new-password"' in page.text and 'action="/setup"' in page.text
    done = submit(
        client,
        page,
        "/setup",
        token=token,
        username="Root",
        email="root@example.com",
        password=PASSWORD,
        password_repeat=PASSWORD,
    )
    assert done.status_code == 303 and done.headers["location"] == "/security?notice=welcome", done.text
    security = client.get(done.headers["location"])
    assert security.status_code == 200
    assert "Signed in as <strong>Root</strong>" in security.text
    assert "Your administrator account is ready" in security.text
    assert not setup.needs_setup(ctx)
    # The link is spent: the setup page now says so.
    again = client.get(f"/setup?token={token}")
    assert again.status_code == 409 and error_code_of(again) == "setup_already_done"


def test_setup_form_mistakes_keep_the_link_usable(client: TestClient, runtime: Runtime) -> None:
    token = setup.issue_setup_token(runtime.services)
    assert token
    page = client.get(f"/setup?token={token}")
    fields = {"token": token, "username": "root", "email": "root@example.com"}
    mismatch = submit(client, page, "/setup", **fields, password=PASSWORD, password_repeat=PASSWORD + "x")
    assert mismatch.status_code == 422 and "not the same" in mismatch.text
    assert 'value="root@example.com"' in mismatch.text and PASSWORD not in mismatch.text
    weak = submit(client, mismatch, "/setup", **fields, password="short", password_repeat="short")
    assert weak.status_code == 422 and error_code_of(weak) == "weak_password"
    assert_support_details(weak, "weak_password", "root")
    ok = submit(client, weak, "/setup", **fields, password=PASSWORD, password_repeat=PASSWORD)
    assert ok.status_code == 303, ok.text


def test_an_invalid_setup_link_shows_an_error_page(client: TestClient, runtime: Runtime) -> None:
    assert setup.issue_setup_token(runtime.services)
    for url in ("/setup?token=nope", "/setup", "/setup?token=" + "A" * 43):
        page = client.get(url)
        assert page.status_code == 401, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert_support_details(page, "setup_token_invalid", None)
        assert "Restart `nidan serve`" in html.unescape(page.text)
    # A well-formed token that was never issued is refused when the form is sent, and nothing is created.
    forged = "A" * 43
    page = client.get("/login")
    sent = submit(
        client,
        page,
        "/setup",
        token=forged,
        username="root",
        email="root@example.com",
        password=PASSWORD,
        password_repeat=PASSWORD,
    )
    assert sent.status_code == 401 and error_code_of(sent) == "setup_token_invalid"
    assert setup.needs_setup(runtime.services)


# --- signing in and out ----------------------------------------------------------------------------------------------


def test_root_sends_people_to_sign_in_or_to_their_security_page(client: TestClient, runtime: Runtime) -> None:
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login"
    signed_in_alice(client, runtime.services)
    second = client.get("/", follow_redirects=False)
    assert second.headers["location"] == "/security"
    assert client.get("/login", follow_redirects=False).headers["location"] == "/security"


def test_sign_in_without_two_step_verification(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    page = client.get("/login")
    assert 'autocomplete="username"' in page.text and 'autocomplete="current-password"' in page.text
    assert '<label for="username">' in page.text and '<label for="password">' in page.text
    done = submit(client, page, "/login", username="ALICE", password=PASSWORD)
    assert done.status_code == 303 and done.headers["location"] == "/security"
    security = client.get("/security")
    assert security.status_code == 200
    assert "Set up authenticator app" in security.text
    assert '<span class="badge off">Off</span>' in security.text
    assert "alice@example.com" in security.text


def test_wrong_password_shows_the_form_again_with_support_details(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    wrong = sign_in(client, password="not the password")
    assert wrong.status_code == 401
    assert "Incorrect username or password" in wrong.text
    assert 'value="alice"' in wrong.text and "not the password" not in wrong.text
    assert_support_details(wrong, "invalid_credentials", "alice")
    assert client.get("/security", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    session_cookie = client.cookies.get("nidan_session")
    assert session_cookie
    out = sign_out(client)
    assert out.status_code == 303 and out.headers["location"] == "/login?notice=signed_out"
    assert client.cookies.get("nidan_session") is None
    assert "You have signed out." in client.get(out.headers["location"]).text
    # The old cookie no longer opens anything, even if a copy of it was kept.
    client.cookies.set("nidan_session", session_cookie)
    back = client.get("/security", follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == "/login?notice=signin_required"


def test_signing_in_again_ends_the_previous_session_of_the_browser(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    first = client.cookies.get("nidan_session")
    again = submit(client, client.get("/security"), "/login", username="alice", password=PASSWORD)
    assert again.status_code == 303
    second = client.cookies.get("nidan_session")
    assert first and second and first != second
    replace_cookie(client, "nidan_session", first)
    assert client.get("/security", follow_redirects=False).status_code == 303


def test_pages_that_need_a_session_redirect_to_sign_in(client: TestClient) -> None:
    for path in ("/security", "/security/totp/disable"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login?notice=signin_required"
    page = client.get("/security")
    assert page.url.path == "/login" and "Sign in to continue." in page.text


# --- turning on the authenticator app, and signing in with it -------------------------------------------------------


def test_turning_on_the_authenticator_on_the_page(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    security = client.get("/security")
    enrolment = submit(client, security, "/security/totp")
    assert enrolment.status_code == 200
    assert enrolment.headers["cache-control"] == "no-store"
    assert "<svg" in enrolment.text and "QR code" in enrolment.text
    key = KEY.search(enrolment.text)
    assert key and re.fullmatch(r"([A-Z2-7]{4} )+[A-Z2-7]{4}", key.group(1))
    assert len(key.group(1).replace(" ", "")) == 32
    assert '<code class="account">alice</code>' in enrolment.text
    assert '<code class="issuer">nidan</code>' in enrolment.text
    assert 'autocomplete="one-time-code"' in enrolment.text and 'inputmode="numeric"' in enrolment.text
    assert "otpauth://" not in enrolment.text  # the URI lives only inside the QR code
    secret = key.group(1).replace(" ", "")
    done = submit(client, enrolment, "/security/totp/activate", code=code_at(secret, ctx))
    assert done.status_code == 200, done.text
    assert done.headers["cache-control"] == "no-store"
    codes = CODE_ITEM.findall(done.text)
    assert len(codes) == 16 and len(set(codes)) == 16
    assert "Two-step verification is on" in done.text
    assert "Download (.txt)" in done.text and 'data-action="print"' in done.text and 'data-action="copy"' in done.text
    # The download is built into the page: a data: link that holds the codes, no server address.
    href = re.search(
        r'href="(data:text/plain;charset=utf-8,[^"]+)" download="nidan-alice-recovery-codes.txt"', done.text
    )
    assert href
    assert all(code in unquote(html.unescape(href.group(1))) for code in codes)
    state = client.get("/security").text
    assert '<span class="badge on">On</span>' in state
    assert '<strong class="remaining">16 of 16</strong>' in state
    assert "Change authenticator app" in state and "Regenerate recovery codes" in state


def test_signing_in_with_password_and_code(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    sign_out(client)
    first = sign_in(client)
    assert first.status_code == 303 and first.headers["location"] == "/login/verify"
    assert client.cookies.get("nidan_session") is None
    mfa_cookie = client.cookies.get("nidan_mfa")
    assert mfa_cookie
    mfa_token = mfa_cookie.partition(".")[0]
    page = client.get("/login/verify")
    assert mfa_token not in page.text and mfa_token not in str(page.url)
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    assert "Use a different verification option" in page.text and "A recovery code (16 left)" in page.text
    assert "Signing in as <strong>alice</strong>" in page.text
    done = submit(client, page, "/login/verify", method="totp", code=code_at(secret, ctx))
    assert done.status_code == 303 and done.headers["location"] == "/security", done.text
    assert client.cookies.get("nidan_mfa") is None
    assert "Signed in as <strong>alice</strong>" in client.get("/security").text


def test_signing_in_with_a_recovery_code(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    _, codes = enable_totp_on_page(client, ctx)
    sign_out(client)
    sign_in(client)
    page = client.get("/login/verify?method=recovery_code")
    assert "Recovery code" in page.text and ">Authenticator app</a>" in page.text
    done = submit(client, page, "/login/verify", method="recovery_code", code=codes[3].upper())
    assert done.status_code == 303 and done.headers["location"] == "/security?notice=recovery_code_used"
    security = client.get(done.headers["location"]).text
    assert "You signed in with a recovery code" in security
    assert '<strong class="remaining">15 of 16</strong>' in security
    # The same code does not work twice.
    sign_out(client)
    sign_in(client)
    reused = verify(client, codes[3], method="recovery_code")
    assert reused.status_code == 401 and error_code_of(reused) == "invalid_code"


def test_a_wrong_code_shows_the_message_and_support_details(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    sign_out(client)
    sign_in(client)
    wrong = verify(client, "000000" if code_at(secret, ctx) != "000000" else "111111")
    assert wrong.status_code == 401
    assert "That code is not valid" in wrong.text
    assert_support_details(wrong, "invalid_code", "alice")
    assert 'autocomplete="one-time-code"' in wrong.text  # the form is there to try again
    right = submit(client, wrong, "/login/verify", method="totp", code=code_at(secret, ctx))
    assert right.status_code == 303 and right.headers["location"] == "/security"


def test_an_expired_sign_in_attempt_goes_back_to_the_password(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    sign_out(client)
    sign_in(client)
    page = client.get("/login/verify")
    ctx.clock.advance(ctx.mfa_token_lifetime.total_seconds() + 1)  # type: ignore[attr-defined]
    late = submit(client, page, "/login/verify", method="totp", code=code_at(secret, ctx))
    assert late.status_code == 303 and late.headers["location"] == "/login?notice=mfa_expired"
    assert "Your sign-in attempt has expired" in client.get(late.headers["location"]).text
    # Without any attempt, the code page sends people to the password step too.
    client.cookies.delete("nidan_mfa")
    assert client.get("/login/verify", follow_redirects=False).headers["location"] == "/login?notice=mfa_expired"


def test_too_many_wrong_codes_end_the_attempt(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    sign_out(client)
    sign_in(client)
    for _ in range(ctx.mfa_token_max_attempts):
        assert verify(client, "not-a-code", method="recovery_code").status_code == 401
        ctx.clock.advance(10)  # type: ignore[attr-defined]  # past the backoff's block (≤ 8 s here)
    last = verify(client, "999999")
    assert last.headers["location"] == "/login?notice=mfa_expired"


def test_a_wrong_first_code_can_be_retried_or_started_over(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enrolment = submit(client, client.get("/security"), "/security/totp")
    key = KEY.search(enrolment.text)
    assert key
    secret = key.group(1).replace(" ", "")
    # A phone clock 10 minutes fast: the service says so, with how to fix it.
    skewed = submit(client, enrolment, "/security/totp/activate", code=code_at(secret, ctx, offset_steps=20))
    assert skewed.status_code == 401
    assert "about 10 minutes ahead" in skewed.text and "Set time automatically" in skewed.text
    assert_support_details(skewed, "clock_skew_detected", "alice")
    assert secret not in skewed.text.replace(" ", "")
    assert "Start again with a new QR code" in skewed.text
    # The app that scanned the key still works: the retry form on the error page finishes the job.
    done = submit(client, skewed, "/security/totp/activate", code=code_at(secret, ctx))
    assert done.status_code == 200 and len(CODE_ITEM.findall(done.text)) == 16


def test_activating_without_starting_offers_to_start(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    response = submit(client, client.get("/security"), "/security/totp/activate", code="123456")
    assert response.status_code == 409 and error_code_of(response) == "totp_enrollment_not_started"
    assert 'action="/security/totp"' in response.text


def test_changing_the_authenticator_app_keeps_the_recovery_codes(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    old_secret, codes = enable_totp_on_page(client, ctx)
    enrolment = submit(client, client.get("/security"), "/security/totp")
    assert "Change your authenticator app" in enrolment.text and "keeps working" in enrolment.text
    key = KEY.search(enrolment.text)
    assert key
    new_secret = key.group(1).replace(" ", "")
    done = submit(client, enrolment, "/security/totp/activate", code=code_at(new_secret, ctx))
    assert done.status_code == 200
    assert "The old app stopped working" in done.text and "existing recovery codes still work" in done.text
    assert not CODE_ITEM.findall(done.text)
    ctx.clock.advance(totp.PERIOD)  # type: ignore[attr-defined]
    sign_out(client)
    sign_in(client)
    assert verify(client, code_at(old_secret, ctx)).status_code == 401
    assert verify(client, codes[0], method="recovery_code").status_code == 303


# --- recovery codes and turning off --------------------------------------------------------------------------------


def test_regenerating_recovery_codes_replaces_the_old_set(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    _, old_codes = enable_totp_on_page(client, ctx)
    page = submit(client, client.get("/security"), "/security/recovery-codes")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    new_codes = CODE_ITEM.findall(page.text)
    assert len(new_codes) == 16 and not set(new_codes) & set(old_codes)
    assert "Your previous codes no longer work" in page.text
    sign_out(client)
    sign_in(client)
    assert verify(client, old_codes[0], method="recovery_code").status_code == 401
    assert verify(client, new_codes[0], method="recovery_code").status_code == 303


def test_regenerating_without_two_step_verification_is_refused(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    page = submit(client, client.get("/security"), "/security/recovery-codes")
    assert page.status_code == 409 and error_code_of(page) == "totp_not_enabled"
    assert_support_details(page, "totp_not_enabled", "alice")


def test_turning_two_step_verification_off(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    confirm = client.get("/security/totp/disable")
    assert confirm.status_code == 200 and "anyone who learns your password" in confirm.text
    done = submit(client, confirm, "/security/totp/disable")
    assert done.status_code == 303 and done.headers["location"] == "/security?notice=disabled"
    security = client.get(done.headers["location"]).text
    assert "Two-step verification is off" in security and '<span class="badge off">Off</span>' in security
    assert client.get("/security/totp/disable", follow_redirects=False).headers["location"] == "/security"
    sign_out(client)
    assert sign_in(client).headers["location"] == "/security"  # the password alone signs in now
    alice = accounts.find_user(ctx, "alice")
    assert enrollment.security_state(ctx, alice.id).recovery_codes_remaining == 0


def test_clock_drift_seen_at_sign_in_is_shown_with_the_fix(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    secret, _ = enable_totp_on_page(client, ctx)
    sign_out(client)
    sign_in(client)
    behind = verify(client, code_at(secret, ctx, offset_steps=-12))
    assert behind.status_code == 401
    # At sign-in the page does not say why (that would help a guesser); the security page does, afterwards.
    assert "behind" not in behind.text
    assert submit(client, behind, "/login/verify", method="totp", code=code_at(secret, ctx)).status_code == 303
    security = client.get("/security").text
    assert "Your device clock was about 6 minutes behind at your last sign-in" in security
    assert "Android: Settings &gt; System &gt; Date &amp; time &gt; Set time automatically" in security
    assert "iPhone: Settings &gt; General &gt; Date &amp; Time &gt; Set Automatically" in security
