"""``/auth/basic``: the HTTP Basic gate reverse proxies ask before letting a Git-style client through.

nginx ``auth_request``, Traefik ``forwardAuth`` and Caddy ``forward_auth`` understand 2xx (let through), 401 and
403 (refuse) — any other status becomes a 500 for the client — so a refusal is 401 and a backoff block is 403 with
``Retry-After``. The 401 carries GitLab's message as a plain-text body: Git prints such a body after ``remote:``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from nidan.core.access_tokens import Scope
from nidan.errors import BASIC_AUTH_DENIED_MESSAGE, BasicAuthDenied, RateLimited
from nidan.services import gate
from nidan.web.deps import Client, Services
from nidan.web.i18n import catalog_for

router = APIRouter(prefix="/auth/basic", tags=["forward auth"])

#: The longest Authorization header read: a username and a password or token fit with room to spare.
MAX_HEADER = 4096


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(username, secret)`` from ``Authorization: Basic …`` (RFC 7617, UTF-8), or ``None`` when absent or
    malformed."""
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, secret = decoded.partition(":")
    return (username, secret) if colon and secret else None


def denied() -> PlainTextResponse:
    return PlainTextResponse(
        BASIC_AUTH_DENIED_MESSAGE + "\n",
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="nidan"', "X-Nidan-Error": BasicAuthDenied.code},
    )


def blocked_answer(blocked: RateLimited, request: Request) -> PlainTextResponse:
    """The block, said in the client's language (Git sends ``Accept-Language`` from the user's locale)."""
    return PlainTextResponse(
        catalog_for(request).text(*blocked.texts) + "\n",
        status_code=403,
        headers={"Retry-After": str(blocked.retry_after_seconds), "X-Nidan-Error": blocked.code},
    )


GATE_DESCRIPTION = """
For reverse proxies (nginx `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`) in front of Git over HTTP,
registries and other services whose clients cannot type a code. The client's `Authorization: Basic user:secret` is
checked for `scope`:

- a personal access token or app password of the user, not expired or revoked, carrying `scope` → **200** with
  `X-Nidan-User: <username>` (pass it on, e.g. as `REMOTE_USER`);
- a password only for a user without two-step verification who is not required to have it, while
  `password_authentication_for_git` is on;
- anything else → **401** with `WWW-Authenticate: Basic realm="nidan"` and GitLab's message as a plain-text body;
- while the username or address is blocked after failures → **403** with `Retry-After`.
"""


@router.get(
    "",
    summary="HTTP Basic gate for reverse proxies (forward-auth)",
    description=GATE_DESCRIPTION,
    response_class=Response,
    responses={
        200: {"description": "Let through; `X-Nidan-User` names the user.", "content": None},
        401: {"description": "Refused (same answer for every reason).", "content": {"text/plain": {}}},
        403: {"description": "Blocked for a while after failures; see Retry-After.", "content": {"text/plain": {}}},
        422: {"description": "`scope` is missing or unknown: a proxy configuration error."},
    },
)
def basic_gate(request: Request, ctx: Services, client: Client, scope: Annotated[Scope, Query()]) -> Response:
    credentials = basic_credentials(request.headers.get("authorization"))
    if credentials is None:
        return denied()
    username, secret = credentials
    try:
        admitted = gate.check(ctx, username=username, secret=secret, scope=scope, client=client)
    except BasicAuthDenied:
        return denied()
    except RateLimited as blocked:
        return blocked_answer(blocked, request)
    headers = {"X-Nidan-User": admitted.user.username, "X-Nidan-Auth": admitted.via, "Cache-Control": "no-store"}
    return Response(status_code=200, headers=headers)


#: Some proxies send the client's own method on the subrequest (a push is a POST, a registry upload a PUT); any
#: status but 2xx, 401 and 403 would become a 500 for the client, so every method gets the same answer.
OTHER_METHODS = ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
router.add_api_route("", basic_gate, methods=OTHER_METHODS, include_in_schema=False)


@router.get(
    "/denied",
    summary="The gate's refusal, for a proxy's error page",
    description="Always 401 with `WWW-Authenticate` and the plain-text message: point nginx's `error_page 401` "
    "here, since `auth_request` cannot pass the gate's own body on to the client.",
    response_class=PlainTextResponse,
    responses={401: {"description": "The refusal.", "content": {"text/plain": {}}}},
)
def refusal_page() -> PlainTextResponse:
    return denied()


router.add_api_route("/denied", refusal_page, methods=OTHER_METHODS, include_in_schema=False)


#: A day: longer blocks are capped at an hour anyway (``rate_limit.max_block_seconds``).
MAX_RETRY_AFTER = 86_400


@router.get(
    "/blocked",
    summary="The gate's block answer, for a proxy's error page",
    description="Always 403 with the backoff message and `Retry-After: retry_after`: point nginx's "
    "`error_page 403` here (passing on the gate's `Retry-After`), so Git shows how long to wait instead of nginx's "
    "HTML page. It tells nothing the gate did not already say.",
    response_class=PlainTextResponse,
    responses={403: {"description": "The block.", "content": {"text/plain": {}}}},
)
def block_page(request: Request, retry_after: Annotated[int, Query(ge=1, le=MAX_RETRY_AFTER)] = 1) -> PlainTextResponse:
    return blocked_answer(RateLimited(retry_after), request)


router.add_api_route("/blocked", block_page, methods=OTHER_METHODS, include_in_schema=False)
