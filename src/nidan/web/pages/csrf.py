"""CSRF protection for every page form: where the form was sent from, and a token bound to this browser's cookies.

Two checks, both on every page POST (``CheckedForm``), before anything else the handler does:

1. **Origin.** A browser names the page a form was sent from in ``Origin`` (or, lacking it, ``Referer``). When
   either is present it must be nidan's own origin; ``Origin: null`` is refused. Neither present (old browsers,
   some privacy tools) leaves the decision to the token.
2. **Token.** A random cookie (HttpOnly, SameSite=Strict), and a hidden field that is
   ``HMAC-SHA-256(hash_key, "csrf:" + cookie)`` in hex on pages shown without a session (sign-in, setup, recovery
   link), and ``HMAC-SHA-256(hash_key, "csrf:" + cookie + ":session:" + session cookie)`` once there is one. The
   cookie is url-safe base64 (no ':'), so the two forms never read as each other. A forged cross-site form cannot
   carry the field: the other site can neither read the cookie nor compute the HMAC without the server's key.

Why the session is in the HMAC: over plain http (or from a sibling subdomain) an attacker can plant a cookie of his
own choosing in the victim's browser, and learn a valid field for it from his own visit. Bound to the session
cookie, that pair does not verify for the victim's session, which the attacker cannot read. Under https every cookie
is also ``__Host-`` prefixed, so a sibling subdomain cannot plant one at all.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response
from starlette.datastructures import FormData

from nidan.core.tokens import looks_like_token, new_token
from nidan.errors import CsrfFailed
from nidan.services.context import ServiceContext
from nidan.texts import _
from nidan.web.deps import services
from nidan.web.pages import cookies

log = logging.getLogger("nidan.web")

COOKIE = "nidan_csrf"
FIELD = "csrf_token"
#: One year: the cookie only ties forms to this browser; it grants nothing by itself.
COOKIE_MAX_AGE = 365 * 24 * 3600
_NEW_COOKIE_STATE = "nidan_new_csrf_cookie"

FOREIGN_ORIGIN_MESSAGE = _(
    "This form was sent from a page that is not nidan's own, so it was not accepted. Open nidan at its usual "
    "address, reload the page and try again."
)

#: (scheme, host, port): what browsers compare to decide whether two addresses are the same origin.
Origin = tuple[str, str, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: A Host header as browsers send it: a name or an address, an optional port; nothing that could carry a path.
_HOST_HEADER = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def expected_token(hash_key: bytes, cookie_value: str, session: str | None = None) -> str:
    """The form field for the CSRF cookie ``cookie_value`` and the session cookie ``session`` (``None``: none)."""
    message = f"csrf:{cookie_value}" if session is None else f"csrf:{cookie_value}:session:{session}"
    return hmac.new(hash_key, message.encode(), hashlib.sha256).hexdigest()


def _cookie_value(request: Request) -> str | None:
    value = request.cookies.get(cookies.cookie_name(request, COOKIE), "")
    return value if looks_like_token(value) else None


def form_token(request: Request, ctx: ServiceContext) -> str:
    """The token for forms on the page being rendered; a new cookie is made (and later set) when none is valid.

    It is bound to the session cookie the browser will send with the form: the one this answer sets, if any."""
    value = _cookie_value(request) or getattr(request.state, _NEW_COOKIE_STATE, None)
    if value is None:
        value = new_token(ctx.random_bytes)
        setattr(request.state, _NEW_COOKIE_STATE, value)
    return expected_token(ctx.hash_key, value, cookies.session_for_forms(request))


def attach_cookie(request: Request, response: Response) -> None:
    """Set the cookie ``form_token`` had to make for this response, if any."""
    value = getattr(request.state, _NEW_COOKIE_STATE, None)
    if value is not None:
        cookies.set_cookie(request, response, cookies.cookie_name(request, COOKIE), value, COOKIE_MAX_AGE, "strict")


# --- where the form came from ----------------------------------------------------------------------------------


def origin_of(url: str) -> Origin | None:
    """The origin of an http(s) address, default port filled in; ``None`` for anything else (``null`` too)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _public_url(request: Request) -> str | None:
    settings = getattr(request.app.state, "settings", None)
    public_url = settings.server.public_url if settings is not None else None
    return public_url if isinstance(public_url, str) and public_url else None


def is_own_origin(request: Request, sender: Origin) -> bool:
    """Whether ``sender`` is nidan's own origin: ``server.public_url``'s when it is set, else the request's Host."""
    public_url = _public_url(request)
    if public_url is not None:
        return sender == origin_of(public_url)
    # Without a configured address, the Host header names the address the browser sent the form to: browsers set it
    # themselves and no page can choose it, so a form from another site shows that site's origin against nidan's
    # host. The scheme cannot be compared: behind a TLS proxy nidan itself sees http. (A DNS-rebinding page can make
    # the two agree, but then the browser holds no nidan cookie for that name: no session, no token.)
    host = request.headers.get("host", "")
    if _HOST_HEADER.fullmatch(host) is None:
        return False
    own = origin_of(f"{sender[0]}://{host}")
    return own is not None and own[1:] == sender[1:]


def _sent_from_own_origin(request: Request) -> bool:
    sent = request.headers.get("origin")
    if sent is None:
        sent = request.headers.get("referer")
        if sent is None:
            return True  # the browser says nothing about where from: the token decides alone
    sender = origin_of(sent)
    if sender is not None and is_own_origin(request, sender):
        return True
    # Only the origin is logged, never the Referer itself: its path or query may carry a one-time link's token.
    shown = f"{sender[0]}://{sender[1]}:{sender[2]}" if sender is not None else "an unreadable or null origin"
    log.warning("page form refused: sent from %s, not nidan's own origin", shown[:300])
    return False


# --- the check ---------------------------------------------------------------------------------------------------


async def checked_form(request: Request, ctx: Annotated[ServiceContext, Depends(services)]) -> FormData:
    """The submitted form, once where it came from and its CSRF token are proven; nothing else in the handler runs
    before this."""
    if not _sent_from_own_origin(request):
        raise CsrfFailed(FOREIGN_ORIGIN_MESSAGE)
    # Page forms carry a few text fields and never a file; anything else is refused with 400 by the parser.
    form = await request.form(max_files=0, max_fields=32)
    sent = form.get(FIELD)
    cookie = _cookie_value(request)
    if not isinstance(sent, str) or cookie is None:
        raise CsrfFailed()
    expected = expected_token(ctx.hash_key, cookie, cookies.session_from_cookie(request))
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfFailed()
    return form


def field(form: FormData, name: str, max_length: int = 1024) -> str:
    """A text field of the form ('' when absent or a file), cut to a sane length."""
    value = form.get(name)
    return value[:max_length] if isinstance(value, str) else ""


CheckedForm = Annotated[FormData, Depends(checked_form)]
