"""CSRF protection for every page form: a random cookie, and a hidden field keyed to it with the server's key.

The field is ``HMAC-SHA-256(hash_key, "csrf:" + cookie)`` in hex. A forged cross-site form cannot carry it: the
other site can neither read the cookie (HttpOnly, SameSite=Strict) nor compute the HMAC without the server's key.
Under https the cookie is ``__Host-`` prefixed, so a sibling subdomain cannot plant a pair it obtained itself.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.datastructures import FormData

from nidan.core.tokens import looks_like_token, new_token
from nidan.errors import CsrfFailed
from nidan.services.context import ServiceContext
from nidan.web.deps import services
from nidan.web.pages import cookies

COOKIE = "nidan_csrf"
FIELD = "csrf_token"
#: One year: the cookie only ties forms to this browser; it grants nothing by itself.
COOKIE_MAX_AGE = 365 * 24 * 3600
_NEW_COOKIE_STATE = "nidan_new_csrf_cookie"


def expected_token(hash_key: bytes, cookie_value: str) -> str:
    return hmac.new(hash_key, f"csrf:{cookie_value}".encode(), hashlib.sha256).hexdigest()


def _cookie_value(request: Request) -> str | None:
    value = request.cookies.get(cookies.cookie_name(request, COOKIE), "")
    return value if looks_like_token(value) else None


def form_token(request: Request, ctx: ServiceContext) -> str:
    """The token for forms on the page being rendered; a new cookie is made (and later set) when none is valid."""
    value = _cookie_value(request) or getattr(request.state, _NEW_COOKIE_STATE, None)
    if value is None:
        value = new_token(ctx.random_bytes)
        setattr(request.state, _NEW_COOKIE_STATE, value)
    return expected_token(ctx.hash_key, value)


def attach_cookie(request: Request, response: Response) -> None:
    """Set the cookie ``form_token`` had to make for this response, if any."""
    value = getattr(request.state, _NEW_COOKIE_STATE, None)
    if value is not None:
        cookies.set_cookie(request, response, cookies.cookie_name(request, COOKIE), value, COOKIE_MAX_AGE, "strict")


async def checked_form(request: Request, ctx: Annotated[ServiceContext, Depends(services)]) -> FormData:
    """The submitted form, once its CSRF token is proven; nothing else in the handler runs before this."""
    # Page forms carry a few text fields and never a file; anything else is refused with 400 by the parser.
    form = await request.form(max_files=0, max_fields=32)
    sent = form.get(FIELD)
    cookie = _cookie_value(request)
    if not isinstance(sent, str) or cookie is None:
        raise CsrfFailed()
    if not hmac.compare_digest(sent.encode(), expected_token(ctx.hash_key, cookie).encode()):
        raise CsrfFailed()
    return form


def field(form: FormData, name: str, max_length: int = 1024) -> str:
    """A text field of the form ('' when absent or a file), cut to a sane length."""
    value = form.get(name)
    return value[:max_length] if isinstance(value, str) else ""


CheckedForm = Annotated[FormData, Depends(checked_form)]
