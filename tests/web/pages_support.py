"""Driving the server-rendered pages over HTTP like a browser without JavaScript: forms with their CSRF token,
sign-in, the second step, the authenticator turned on from the security page, and an error page's support details.
"""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from nidan.core import totp
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, code_at, make_user

CSRF_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


KEY = re.compile(r'<code id="totp-key" class="key">([A-Z2-7 ]+)</code>')


CODE_ITEM = re.compile(r"<li><code>([0-9a-z]{5}-[0-9a-z]{5})</code></li>")


CORRELATION = re.compile(r'<code class="correlation-id">([0-9A-Za-z._-]+)</code>')


ERROR_CODE = re.compile(r'<code class="error-code">([a-z_]+)</code>')


def csrf_of(page: httpx.Response) -> str:
    found = CSRF_FIELD.search(page.text)
    assert found, page.text
    return found.group(1)


def submit(client: TestClient, page: httpx.Response, url: str, **fields: str) -> httpx.Response:
    """POST a form of ``page`` the way a browser would: with the page's CSRF token, not following redirects."""
    response: httpx.Response = client.post(url, data={"csrf_token": csrf_of(page), **fields}, follow_redirects=False)
    return response


def error_code_of(page: httpx.Response) -> str:
    found = ERROR_CODE.search(page.text)
    assert found, page.text
    return found.group(1)


def assert_support_details(page: httpx.Response, code: str, username: str | None) -> None:
    """The page names the error code, this request's correlation id, a time with offset, and who it was."""
    assert error_code_of(page) == code
    correlation = CORRELATION.search(page.text)
    assert correlation and correlation.group(1) == page.headers["x-correlation-id"]
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d">', page.text), page.text
    if username:
        assert f"<dt>Username</dt><dd>{username}</dd>" in page.text
    else:
        assert "<dt>Username</dt><dd>not signed in</dd>" in page.text


def sign_in(client: TestClient, username: str = "alice", password: str = PASSWORD) -> httpx.Response:
    """The password step; returns the answer to POST /login (a redirect when it worked)."""
    page = client.get("/login")
    assert page.status_code == 200, page.text
    return submit(client, page, "/login", username=username, password=password)


def verify(client: TestClient, code: str, method: str = "totp") -> httpx.Response:
    page = client.get(f"/login/verify?method={method}")
    assert page.status_code == 200, page.text
    return submit(client, page, "/login/verify", method=method, code=code)


def enable_totp_on_page(client: TestClient, ctx: ServiceContext) -> tuple[str, list[str]]:
    """Turn on the authenticator from the security page; returns the key and the 16 codes. Moves the clock on."""
    security = client.get("/security")
    enrolment = submit(client, security, "/security/totp")
    assert enrolment.status_code == 200, enrolment.text
    key = KEY.search(enrolment.text)
    assert key, enrolment.text
    secret = key.group(1).replace(" ", "")
    done = submit(client, enrolment, "/security/totp/activate", code=code_at(secret, ctx))
    assert done.status_code == 200, done.text
    codes = CODE_ITEM.findall(done.text)
    ctx.clock.advance(totp.PERIOD)  # type: ignore[attr-defined]
    return secret, codes


def signed_in_alice(client: TestClient, ctx: ServiceContext) -> None:
    make_user(ctx)
    assert sign_in(client).headers["location"] == "/security"


def sign_out(client: TestClient) -> httpx.Response:
    return submit(client, client.get("/security"), "/logout")


def replace_cookie(client: TestClient, name: str, value: str) -> None:
    """Put ``value`` in place of the browser's cookie ``name``. Setting it alone would add a second cookie (no
    domain) beside the server's, and the test client (httpx2) sends both, the server's last, which the app reads."""
    client.cookies.delete(name)
    client.cookies.set(name, value)
