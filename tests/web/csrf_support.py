"""The pages' CSRF token computed the way a test expects it, independently of ``nidan.web.pages.csrf``.

Shared by every test that checks or forges a token; written out here rather than imported from the code under test,
so a change of the construction fails the tests instead of following along silently.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import httpx
from fastapi.testclient import TestClient


def csrf_token_for(hash_key: bytes, csrf_cookie: str, session_cookie: str | None = None) -> str:
    """``HMAC-SHA-256(hash_key, "csrf:<cookie>")``, with ``":session:<session cookie>"`` appended when the browser
    holds a session cookie."""
    message = f"csrf:{csrf_cookie}" if session_cookie is None else f"csrf:{csrf_cookie}:session:{session_cookie}"
    return hmac.new(hash_key, message.encode(), hashlib.sha256).hexdigest()


def cookie_of(client: TestClient, name: str) -> str | None:
    """A cookie the client holds, under its plain name or its ``__Host-`` one (https)."""
    value: str | None = client.cookies.get(name) or client.cookies.get(f"__Host-{name}")
    return value


def csrf_token_of_client(client: TestClient, hash_key: bytes) -> str:
    """The token this client's browser state (its CSRF cookie and session cookie, if any) should be given."""
    csrf_cookie = cookie_of(client, "nidan_csrf")
    assert csrf_cookie, "no CSRF cookie yet: GET a page first"
    return csrf_token_for(hash_key, csrf_cookie, cookie_of(client, "nidan_session"))


_FIELD = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


def csrf_field_of(page: httpx.Response) -> str:
    """The token a rendered page put in its forms."""
    found = _FIELD.search(page.text)
    assert found, page.text
    return found.group(1)
