"""The verify API: a relying application asks whether a code is the user's, right now."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import State
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nidan.core.models import Method
from nidan.errors import NidanError
from nidan.services import applications, verify
from nidan.services.context import ServiceContext
from nidan.web import i18n
from nidan.web.api.v1.schemas import TYPED_CODE, ErrorDetail
from nidan.web.deps import Client, bearer_token, client_info_of
from nidan.web.openapi import APPLICATION_KEY, errors_documented, requires
from nidan.web.problems import error_body, error_response

router = APIRouter(prefix="/api/v1", tags=["verify API"])


async def application_key(request: Request) -> str:
    """The bearer token when it has an application key's shape: a request without one is refused before its body
    is looked at. Whether the key is registered is checked in the endpoint, in the same trip to the thread pool as
    the verify itself (each trip costs about as much as the check)."""
    return applications.require_key_shape(bearer_token(request))


ApplicationKey = Annotated[str, Depends(application_key)]


_USERNAME_MAX = 256
_CODE_MAX = 64


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=_USERNAME_MAX)
    code: str = Field(
        min_length=1, max_length=_CODE_MAX, description=f"A 6-digit authenticator code or a recovery code. {TYPED_CODE}"
    )
    method: Method | None = Field(
        default=None,
        description="Optional: digits (full-width ones too) are taken as an authenticator code, anything else as a "
        "recovery code.",
    )


class VerifyOut(BaseModel):
    ok: bool
    method: Method
    username: str | None = Field(default=None, description="The user's canonical username, when ok.")
    error: ErrorDetail | None = Field(default=None, description="Why not, when not ok (`invalid_code`, ...).")


DESCRIPTION = """
For relying applications registered by an administrator (`nidan app add NAME`), with
`Authorization: Bearer <API key>`. The same rules as sign-in: each code works once, wrong codes count towards the
user's backoff (429 with `Retry-After` while blocked), every answer is audited with the application's name.

A wrong code, a replayed code, an unknown user and a user without two-step verification all get the same answer:
200 `{"ok": false, "error": {"code": "invalid_code", ...}}`. A user locked by administrators gets `ok: false` with
`verification_locked`.
"""


@router.post(
    "/verify",
    response_model=VerifyOut,
    response_model_exclude_none=True,
    responses=errors_documented(401, 422, 429),
    summary="Check a user's code (for relying applications)",
    description=DESCRIPTION,
    openapi_extra=requires(APPLICATION_KEY),
)
async def verify_code(request: Request, body: VerifyRequest, client: Client, api_key: ApplicationKey) -> JSONResponse:
    call = verify.VerifyCall(api_key, body.username, body.code, body.method, client)
    return JSONResponse(await answer(request.app.state, call, lambda: i18n.catalog_for(request)))


async def answer(state: State, call: verify.VerifyCall, language: Callable[[], i18n.Catalog]) -> dict[str, object]:
    """The verify API's answer to ``call``, built as ``VerifyOut`` documents it (returning a Response spares
    FastAPI validating and serialising our own model again on the busiest endpoint); errors are raised. The
    error's message is in the caller's ``language`` (asked for only then)."""
    # Authenticator codes that arrive together are checked together, in one transaction (VerifyQueue). A
    # recovery code's argon2id would hold that transaction's locks: it goes to the thread pool on its own.
    queue: VerifyQueue | None = state.verify_queue
    ctx: ServiceContext = state.services
    if queue is not None and call.is_fast:
        result = await queue.check(call)
    else:
        result = await run_in_threadpool(verify.verify_call, ctx, call)
    body: dict[str, object] = {"ok": result.ok, "method": result.method.value}
    if result.ok:
        body["username"] = result.username
    else:
        assert result.error is not None
        body["error"] = error_body(result.error.code, language().text(*result.error.texts))["error"]
    return body


class VerifyQueue:
    """Authenticator-code calls gathered over a few turns of the event loop, then checked together in one
    transaction (``verify.verify_together``: group commit), at most ``MAX_TOGETHER`` at a time.

    The first call of a group schedules the check ``EXTRA_TURNS`` turns later (at once when ``MAX_TOGETHER`` are
    waiting), so the calls whose requests arrive together wait for nothing but each other and a few polls of the
    sockets: alone, a call is checked microseconds later. Each caller gets its own outcome; nobody is answered
    before the transaction holding their call has committed.

    ``inline``: the check runs on the loop itself (embedded SQLite: microseconds a call, one writer at a time
    anyway). Otherwise (a database server's round trips) each group goes to the thread pool, one group at a time:
    the calls that arrive meanwhile form the next one, so a group costs one trip to a thread and one commit, not
    one per call."""

    #: Bounds how long one check holds the event loop (and the write lock): about 0.15 ms per call on SQLite.
    MAX_TOGETHER = 32
    #: Further turns of the loop the first call of a group waits for others. Each turn reads the sockets that became
    #: readable meanwhile without blocking (microseconds when nothing came): at 16 connections the groups grew from
    #: about 6 calls to 15, and a call's CPU fell by a fifth.
    EXTRA_TURNS = 2

    def __init__(self, ctx: ServiceContext, *, inline: bool = True) -> None:
        self._ctx = ctx
        self._inline = inline
        self._waiting: list[tuple[verify.VerifyCall, asyncio.Future[verify.VerifyResult]]] = []
        #: The group a thread is checking now (not inline), if any.
        self._in_thread: asyncio.Task[None] | None = None

    async def check(self, call: verify.VerifyCall) -> verify.VerifyResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[verify.VerifyResult] = loop.create_future()
        self._waiting.append((call, future))
        if len(self._waiting) == 1 and self._in_thread is None:
            loop.call_soon(self._after_turns, self.EXTRA_TURNS)
        try:
            return await future
        finally:
            # A refusal (429, 401) is raised from the future with a traceback through this frame, which holds the
            # future, which holds the refusal: a cycle only the garbage collector's rare full pass would free,
            # with every request's frames in it (the 429 run grew a worker by 4 MiB).
            del future

    def _after_turns(self, turns: int) -> None:
        if turns and len(self._waiting) < self.MAX_TOGETHER:
            asyncio.get_running_loop().call_soon(self._after_turns, turns - 1)
            return
        self._check_waiting()

    def _next_group(self) -> list[tuple[verify.VerifyCall, asyncio.Future[verify.VerifyResult]]]:
        group = self._waiting[: self.MAX_TOGETHER]
        del self._waiting[: self.MAX_TOGETHER]
        return group

    def _check_waiting(self) -> None:
        if not self._waiting or self._in_thread is not None:
            return
        group = self._next_group()
        if not self._inline:
            self._in_thread = asyncio.ensure_future(self._check_in_thread(group))
            return
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._check_waiting)
        _settle(group, verify.verify_together(self._ctx, [call for call, _ in group]))

    async def _check_in_thread(
        self, group: list[tuple[verify.VerifyCall, asyncio.Future[verify.VerifyResult]]]
    ) -> None:
        outcomes: list[verify.VerifyResult | Exception] | None = None
        try:
            outcomes = await run_in_threadpool(verify.verify_together, self._ctx, [call for call, _ in group])
        except Exception as error:  # verify_together answers every call itself: this is a bug, a 500 for each
            outcomes = [error] * len(group)
        finally:
            self._in_thread = None
            if outcomes is None:  # cancelled: the server is stopping
                for _, future in group:
                    future.cancel()
        _settle(group, outcomes)
        if self._waiting:  # they came while this group was checked: at once, the next group
            self._check_waiting()


def _settle(
    group: list[tuple[verify.VerifyCall, asyncio.Future[verify.VerifyResult]]],
    outcomes: list[verify.VerifyResult | Exception],
) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # the caller went away meanwhile: its call was checked all the same
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


# --- The same endpoint without FastAPI's request machinery, for the calls that need none of it ---------------------

PATH = "/api/v1/verify"
#: Bodies up to this size (or ``server.max_body_bytes``, when smaller) are read here; a larger one (never a
#: well-formed call) goes to the route as it came.
_FAST_BODY_LIMIT = 2048
_METHODS = {method.value: method for method in Method}
_FIELDS = frozenset(VerifyRequest.model_fields)
#: Starlette's JSONResponse.render, built once.
_AS_JSONRESPONSE_DOES = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
_JSON_HEADERS = ((b"content-type", b"application/json"),)


class VerifyFastPath:
    """ASGI app answering well-formed verify calls itself, ahead of FastAPI's whole stack (its routing, dependency
    solving and validation, and its own middleware): the busiest endpoint spends most of its time there
    otherwise, for a body of three strings. ``nidan.web.app`` puts it behind a ``CorrelationIdMiddleware`` of its
    own, so its answers carry a correlation id, the no-store header and a 500 with the id after a crash, as every
    other answer does.

    It answers only a call the route would accept: JSON of at most the route's fields, each of the right type and
    length, with an application key of the right shape, in a body within the size limit. Anything else (malformed
    JSON, a missing or extra field, a missing key, a large body) is handed to ``fallback`` (FastAPI's stack)
    unchanged, body included, so that every refusal is written once, in the route. What a call does is the same
    function either way: ``verify.verify_for_key`` with the same client details, answered with the same body and
    the same error table; the tests run every verify call both ways (``app.state.verify_fast_path``)."""

    def __init__(self, fallback: ASGIApp, state: State, max_body_bytes: int) -> None:
        self.fallback = fallback
        self.state = state
        self.body_limit = min(_FAST_BODY_LIMIT, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        if scope["method"] != "POST" or not state.verify_fast_path:
            await self.fallback(scope, receive, send)
            return
        headers = _Headers(scope["headers"], self.body_limit)
        if not headers.is_small_json or headers.api_key is None:
            await self.fallback(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the route sees the same
            body += message.get("body", b"")
            if len(body) > self.body_limit or not message.get("more_body", False):
                break
        last = messages[-1]
        whole = last["type"] == "http.request" and not last.get("more_body", False)
        fields = _parse(body) if whole else None
        if fields is None:
            await self.fallback(scope, _replaying(messages, receive), send)
            return
        peer = scope.get("client")
        client = client_info_of(
            state.trusted_proxies, peer[0] if peer else None, headers.forwarded_for, headers.user_agent
        )
        try:
            result = await answer(state, verify.VerifyCall(headers.api_key, *fields, client), headers.language(state))
        except NidanError as error:
            await error_response(error, headers.language(state)())(scope, receive, send)
            return
        # The bytes JSONResponse would send, without building one: this is most of what the busiest answer costs
        # beyond the check itself.
        content = _AS_JSONRESPONSE_DOES.encode(result).encode("utf-8")
        length = str(len(content)).encode("latin-1")
        await send(
            {"type": "http.response.start", "status": 200, "headers": [*_JSON_HEADERS, (b"content-length", length)]}
        )
        await send({"type": "http.response.body", "body": content})


class _Headers:
    """The few request headers a verify call needs, in one pass; of a header sent twice the first counts, as in the
    route (Starlette's ``Headers.get``)."""

    __slots__ = ("accept_language", "api_key", "cookie", "forwarded_for", "is_small_json", "user_agent")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]], body_limit: int) -> None:
        first: dict[bytes, bytes] = {}
        self.forwarded_for: list[str] = []
        for name, value in raw:
            if name == b"x-forwarded-for":
                self.forwarded_for.append(value.decode("latin-1"))
            elif name in _SINGLE_HEADERS:
                first.setdefault(name, value)
        user_agent = first.get(b"user-agent")
        self.user_agent = user_agent.decode("latin-1") if user_agent is not None else None
        self.accept_language = first.get(b"accept-language")
        self.cookie = first.get(b"cookie")
        length = first.get(b"content-length", b"")
        self.is_small_json = (
            first.get(b"content-type", b"").split(b";", 1)[0].strip().lower() == b"application/json"
            and length.isdigit()
            and int(length) <= body_limit
        )
        scheme, _, key = first.get(b"authorization", b"").decode("latin-1").partition(" ")
        key = key.strip()
        self.api_key = key if scheme.lower() == "bearer" and applications.has_key_shape(key) else None

    def language(self, state: State) -> Callable[[], i18n.Catalog]:
        """The caller's language, as ``i18n.catalog_for`` reads it from a request, worked out when asked for."""

        def chosen() -> i18n.Catalog:
            cookie = cookie_parser(self.cookie.decode("latin-1")).get(i18n.LANG_COOKIE) if self.cookie else None
            accept_language = self.accept_language.decode("latin-1") if self.accept_language else None
            default = getattr(state, "default_locale", i18n.DEFAULT_LOCALE)
            return i18n.catalog(
                i18n.negotiate(preferred=None, cookie=cookie, accept_language=accept_language, default=default)
            )

        return chosen


_SINGLE_HEADERS = frozenset(
    {b"content-type", b"content-length", b"authorization", b"user-agent", b"accept-language", b"cookie"}
)


def _parse(body: bytes) -> tuple[str, str, Method | None] | None:
    """The call's username, code and method, when ``body`` is one the route's model accepts as it is; ``None``
    sends it to the route."""
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    if type(fields) is not dict or not fields.keys() <= _FIELDS:
        return None
    username, code, method = fields.get("username"), fields.get("code"), fields.get("method")
    if type(username) is not str or not 1 <= len(username) <= _USERNAME_MAX or not _is_unicode(username):
        return None
    if type(code) is not str or not 1 <= len(code) <= _CODE_MAX or not _is_unicode(code):
        return None
    if method is not None and (type(method) is not str or method not in _METHODS):
        return None
    return username, code, _METHODS[method] if method is not None else None


def _is_unicode(text: str) -> bool:
    """JSON's ``\\ud800`` escapes make strings no UTF-8 can hold; the route's model refuses them (422)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` that first hands out the messages read already."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
