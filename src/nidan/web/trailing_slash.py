"""``/security/`` leads to ``/security``: a relative redirect, in place of Starlette's ``redirect_slashes``.

Starlette builds that redirect's address from the request's ``Host`` header and scheme, so ``Host: evil.example``
got ``Location: http://evil.example/security`` (and http behind a TLS proxy). Here the answer names a path only:
the browser stays on the address it used, and no header a client sends ends up in a ``Location``.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

#: What may stay unescaped in a path segment (RFC 3986 pchar, without '%'): a '?', '#' or '\\' the client had
#: escaped stays escaped, so it can neither start a query nor turn the path into another host for the browser.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def relative_location(scope: Scope, routes: Router) -> str | None:
    """The path without its trailing slashes (query kept), when a route answers it; else ``None``."""
    path: str = scope["path"]
    if path == "/" or not path.endswith("/"):
        return None
    stripped = path.rstrip("/")
    # '//evil.example' or '/\\evil.example' in a Location is another host to a browser (protocol-relative).
    if not stripped.startswith("/") or stripped.startswith(("//", "/\\")):
        return None
    candidate = dict(scope, path=stripped)
    if not any(route.matches(candidate)[0] is not Match.NONE for route in routes.routes):
        return None
    location = quote(stripped, safe=_PATH_SAFE)
    query: bytes = scope.get("query_string", b"")
    return f"{location}?{query.decode('latin-1')}" if query else location


def slash_redirect_or_not_found(router: Router) -> ASGIApp:
    """The router's answer when no route matched: the relative redirect above, else its usual 404."""

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        location = relative_location(scope, router) if scope["type"] == "http" else None
        if location is None:
            await router.not_found(scope, receive, send)
            return
        # 307, as Starlette answered: the method and body are kept.
        await RedirectResponse(location, status_code=307)(scope, receive, send)

    return default
