"""Correlation ids: one per request, in a context variable, echoed as ``X-Correlation-ID`` on every response."""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nidan.errors import NidanError

log = logging.getLogger("nidan.web")

HEADER = "X-Correlation-ID"
_current: ContextVar[str] = ContextVar("correlation_id", default="")
# A caller's id is reused only when it is a plain token, so it cannot inject into logs or headers.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def current_correlation_id() -> str:
    return _current.get()


#: Where the request's id is kept in the ASGI scope, for a second ``CorrelationIdMiddleware`` further in.
SCOPE_KEY = "nidan.correlation_id"


class CorrelationIdMiddleware:
    """Gives each HTTP request its correlation id (the caller's, when it is a plain token) and every answer the
    ``X-Correlation-ID`` and ``Cache-Control: no-store`` headers (and ``Strict-Transport-Security`` when ``hsts`` is
    given), and answers a crash with a 500 that carries the id.

    This is the one place headers every answer needs are added: pages, the API, the verify API's front door, static
    files, redirects, 404s and error answers all pass through it.

    The verify API's front door runs one ahead of FastAPI's stack (``nidan.web.app``), and the stack keeps its
    own for every other path: an instance that finds the request numbered already keeps that id and leaves the
    headers to the outer one, but still answers a crash further in."""

    def __init__(self, app: ASGIApp, hsts: str | None = None) -> None:
        self.app = app
        self.hsts = hsts.encode("ascii") if hsts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        numbered = scope.get(SCOPE_KEY)
        token = None
        if isinstance(numbered, str):
            correlation_id, send_with_id = numbered, send
        else:
            correlation_id = _incoming_or_new(scope)
            scope[SCOPE_KEY] = correlation_id
            token = _current.set(correlation_id)
            send_with_id = _with_headers(send, correlation_id, str(scope.get("path", "")), self.hsts)

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            # Answered here, inside this middleware, so even a crash carries its correlation id to the person.
            log.exception("unexpected error (correlation id %s)", correlation_id)
            if started:
                raise
            from nidan.web.problems import answer_outside_handlers

            # JSON for programs, the error page (no trace, the id shown) for people: problems decides.
            await answer_outside_handlers(
                scope, receive, send_with_id, 500, NidanError.code, NidanError.default_message
            )
        finally:
            if token is not None:
                _current.reset(token)


def _incoming_or_new(scope: Scope) -> str:
    incoming = ""
    for name, value in scope["headers"]:
        if name == b"x-correlation-id":
            incoming = value.decode("latin-1")
            break
    # 128 bits from the system's randomness, as uuid4's 122 are, without building a UUID for its hex.
    return incoming if _ACCEPTABLE.match(incoming) else os.urandom(16).hex()


def _with_headers(send: Send, correlation_id: str, path: str, hsts: bytes | None = None) -> Send:
    # Answers carry sessions, tokens, keys and account state: no cache may keep them. The static files may.
    cacheable = path.startswith("/static/")

    async def send_with_id(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            headers.append((b"x-correlation-id", correlation_id.encode("ascii")))
            if not cacheable and not any(name.lower() == b"cache-control" for name, _ in headers):
                headers.append((b"cache-control", b"no-store"))
            # One header, whatever answered: a browser that saw it once keeps to https for max-age, so a later
            # first request over plain http (a typed address, an old bookmark) cannot be intercepted.
            if hsts is not None and not any(name.lower() == b"strict-transport-security" for name, _ in headers):
                headers.append((b"strict-transport-security", hsts))
            message["headers"] = headers
        await send(message)

    return send_with_id


class BodySizeLimitMiddleware:
    """Refuse bodies over the limit with 413 before they are read whole (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _too_large(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited_receive, send)


class BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    from nidan.web.problems import TOO_LARGE, answer_outside_handlers

    await answer_outside_handlers(scope, receive, send, 413, "payload_too_large", TOO_LARGE)
