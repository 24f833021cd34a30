"""What keeps the pages safe: CSRF on every form, cookie attributes, security headers, and honest error pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from http.cookies import SimpleCookie

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.services import accounts, enrollment, setup
from nidan.web.app import create_app
from tests.helpers import PASSWORD, auth_header, make_user
from tests.web.csrf_support import csrf_token_for
from tests.web.pages_support import (
    assert_support_details,
    csrf_of,
    enable_totp_on_page,
    error_code_of,
    sign_in,
    signed_in_alice,
    submit,
)


def set_cookie_headers(response: httpx.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name, as sent (attributes included)."""
    found: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        name = header.split("=", 1)[0]
        found[name] = header
    return found


def attributes(header: str) -> dict[str, str]:
    parsed = SimpleCookie()
    parsed.load(header)
    (morsel,) = parsed.values()
    attrs = {key: str(value) for key, value in morsel.items() if value}
    # SimpleCookie reads flags as True; keep them visible by name.
    return {key.lower(): value for key, value in attrs.items()}


@pytest.fixture
def https_client(runtime: Runtime) -> Iterator[TestClient]:
    app = create_app(runtime=runtime)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as test_client:
        yield test_client


# --- CSRF --------------------------------------------------------------------------------------------------------


def test_the_csrf_token_is_the_hmac_of_the_cookie(client: TestClient, runtime: Runtime) -> None:
    page = client.get("/login")
    cookie = client.cookies.get("nidan_csrf")
    assert cookie
    expected = csrf_token_for(runtime.services.hash_key, cookie)
    assert csrf_of(page) == expected
    # The cookie is made once and kept: a second page uses the same pair.
    again = client.get("/login")
    assert "nidan_csrf" not in set_cookie_headers(again)
    assert csrf_of(again) == expected


@pytest.mark.parametrize("token", [None, "", "0" * 64, "not-hex"])
def test_sign_in_without_the_right_csrf_token_is_refused(
    client: TestClient, runtime: Runtime, token: str | None
) -> None:
    make_user(runtime.services)
    client.get("/login")
    data = {"username": "alice", "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 403
    assert "reload the page and try again" in response.text
    assert_support_details(response, "csrf_failed", None)
    assert client.cookies.get("nidan_session") is None and client.cookies.get("nidan_mfa") is None


def test_a_token_without_its_cookie_is_refused(client: TestClient, runtime: Runtime) -> None:
    """A forged form that copied someone's token cannot bring the cookie it belongs to."""
    make_user(runtime.services)
    token = csrf_of(client.get("/login"))
    client.cookies.clear()
    response = client.post("/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD})
    assert response.status_code == 403 and error_code_of(response) == "csrf_failed"
    # The refusal page hands out a fresh cookie, so reloading the form works.
    assert "nidan_csrf" in set_cookie_headers(response)
    fresh = client.get("/login")
    assert submit(client, fresh, "/login", username="alice", password=PASSWORD).status_code == 303


def test_every_signed_in_form_checks_csrf_and_changes_nothing(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    alice = accounts.find_user(ctx, "alice")
    before = enrollment.security_state(ctx, alice.id)
    for path in ("/security/totp", "/security/totp/activate", "/security/recovery-codes", "/security/totp/disable"):
        for data in ({}, {"csrf_token": "f" * 64, "code": "123456"}):
            response = client.post(path, data=data, follow_redirects=False)
            assert response.status_code == 403, (path, response.text)
            assert_support_details(response, "csrf_failed", "alice")
    after = enrollment.security_state(ctx, alice.id)
    assert after == before and after.totp_enabled and not after.totp_enrollment_pending
    # Sign-out is a form too: without the token the session stays.
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.get("/security").status_code == 200


def test_setup_form_checks_csrf(client: TestClient, runtime: Runtime) -> None:
    token = setup.issue_setup_token(runtime.services)
    assert token
    client.get(f"/setup?token={token}")
    fields = {"token": token, "username": "root", "email": "root@example.com"}
    response = client.post("/setup", data={**fields, "password": PASSWORD, "password_repeat": PASSWORD})
    assert response.status_code == 403 and error_code_of(response) == "csrf_failed"
    assert setup.needs_setup(runtime.services)


def test_the_code_step_checks_csrf(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    _, codes = enable_totp_on_page(client, ctx)
    submit(client, client.get("/security"), "/logout")
    sign_in(client)
    response = client.post("/login/verify", data={"method": "recovery_code", "code": codes[0]})
    assert response.status_code == 403
    alice = accounts.find_user(ctx, "alice")
    assert enrollment.security_state(ctx, alice.id).recovery_codes_remaining == 16


# --- cookies -------------------------------------------------------------------------------------------------------


def test_cookie_attributes_over_http(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    page = client.get("/login")
    csrf_cookie = attributes(set_cookie_headers(page)["nidan_csrf"])
    assert csrf_cookie["httponly"] and csrf_cookie["samesite"] == "strict" and csrf_cookie["path"] == "/"
    assert "secure" not in csrf_cookie
    done = submit(client, page, "/login", username="alice", password=PASSWORD)
    session = attributes(set_cookie_headers(done)["nidan_session"])
    assert session["httponly"] and session["samesite"] == "lax" and session["path"] == "/"
    assert session["max-age"] == str(int(runtime.services.session_lifetime.total_seconds()))
    assert "secure" not in session
    assert "nidan_session" not in done.headers["location"]


def test_cookie_attributes_over_https(https_client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    page = https_client.get("/login")
    csrf_cookie = attributes(set_cookie_headers(page)["__Host-nidan_csrf"])
    assert csrf_cookie["secure"] and csrf_cookie["samesite"] == "strict"
    done = submit(https_client, page, "/login", username="alice", password=PASSWORD)
    headers = set_cookie_headers(done)
    assert "nidan_session" not in headers
    session = attributes(headers["__Host-nidan_session"])
    assert session["secure"] and session["httponly"] and session["samesite"] == "lax" and session["path"] == "/"
    assert "domain" not in session
    security = https_client.get("/security")
    assert security.status_code == 200 and "Signed in as <strong>alice</strong>" in security.text
    # The second step's cookie follows the same rules.
    enable_totp_on_page(https_client, ctx)
    submit(https_client, https_client.get("/security"), "/logout")
    first = submit(https_client, https_client.get("/login"), "/login", username="alice", password=PASSWORD)
    mfa = attributes(set_cookie_headers(first)["__Host-nidan_mfa"])
    assert mfa["secure"] and mfa["httponly"] and mfa["samesite"] == "strict"
    assert mfa["max-age"] == str(int(ctx.mfa_token_lifetime.total_seconds()))


def test_the_api_never_accepts_the_session_cookie(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    assert client.cookies.get("nidan_session")
    me = client.get("/api/v1/me")
    assert me.status_code == 401 and me.json()["error"]["code"] == "authentication_required"
    started = client.post("/api/v1/me/totp")
    assert started.status_code == 401
    # ...while the same token as a bearer works: it is the cookie that is refused, not the session.
    token = client.cookies.get("nidan_session")
    assert token
    assert client.get("/api/v1/me", headers=auth_header(token)).status_code == 200


def test_pages_ignore_a_bearer_token(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    login = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    page = client.get("/security", headers=auth_header(login["session_token"]), follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


# --- headers, errors, static files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/setup", "/nowhere"])
def test_pages_carry_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "img-src 'self' data:" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "strict-origin"
    assert response.headers["cache-control"] == "no-store"


def test_pages_have_no_inline_script_or_style_and_nothing_from_elsewhere(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enrolment = submit(client, client.get("/security"), "/security/totp")
    pages = [client.get("/login"), client.get("/security"), enrolment, client.get("/nowhere")]
    for page in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", page.text), page.text
        assert "<style" not in page.text and " style=" not in page.text and " on" + "click=" not in page.text
        assert not re.search(r"(src|href|action)=\"(https?:)?//", page.text), page.text


def test_static_files_are_served_from_the_package(client: TestClient) -> None:
    css = client.get("/static/nidan.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@media print" in css.text
    js = client.get("/static/nidan.js")
    assert js.status_code == 200 and "navigator.clipboard" in js.text and "window.print" in js.text


def test_error_pages_show_support_details_and_who_is_signed_in(client: TestClient, runtime: Runtime) -> None:
    anonymous = client.get("/nowhere")
    assert anonymous.status_code == 404 and anonymous.headers["content-type"].startswith("text/html")
    assert_support_details(anonymous, "not_found", None)
    signed_in_alice(client, runtime.services)
    signed_in = client.get("/nowhere")
    assert signed_in.status_code == 404
    assert_support_details(signed_in, "not_found", "alice")
    assert "Signed in as <strong>alice</strong>" in signed_in.text
    wrong_method = client.put("/security")
    assert wrong_method.status_code == 405 and error_code_of(wrong_method) == "http_method_not_allowed"


def test_api_errors_stay_json(client: TestClient) -> None:
    response = client.get("/api/v1/nowhere")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_stale_session_cookie_is_cleared_on_the_way_to_sign_in(client: TestClient) -> None:
    client.cookies.set("nidan_session", "nidan_s_" + "A" * 43)
    response = client.get("/security", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?notice=signin_required"
    assert 'nidan_session=""' in response.headers["set-cookie"] or "Max-Age=0" in response.headers["set-cookie"]


def test_a_form_with_a_file_is_refused(client: TestClient) -> None:
    page = client.get("/login")
    response = client.post(
        "/login", data={"csrf_token": csrf_of(page)}, files={"username": ("a.txt", b"x")}, follow_redirects=False
    )
    assert response.status_code == 400


def test_an_https_public_address_makes_cookies_secure_behind_a_proxy(runtime: Runtime) -> None:
    """TLS ends at the proxy, the app sees http: the configured public https address still decides."""
    app = create_app(runtime=runtime)
    server = runtime.settings.server.model_copy(update={"public_url": "https://2fa.example.com"})
    app.state.settings = runtime.settings.model_copy(update={"server": server})
    make_user(runtime.services)
    with TestClient(app, raise_server_exceptions=False) as client:
        page = client.get("/login")
        csrf_cookie = attributes(set_cookie_headers(page)["__Host-nidan_csrf"])
        assert csrf_cookie["secure"]
        # The test client keeps Secure cookies to https; a browser at the https address sends it back.
        client.cookies.set("__Host-nidan_csrf", page.headers["set-cookie"].split("=", 1)[1].split(";", 1)[0])
        done = submit(client, page, "/login", username="alice", password=PASSWORD)
        session = attributes(set_cookie_headers(done)["__Host-nidan_session"])
        assert session["secure"] and session["httponly"]
