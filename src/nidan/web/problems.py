"""Errors to HTTP: one table from error class to status, the one JSON error body every API error uses, and the one
decision (``_wants_json``) between that body and the error page a browser reads on a page address, for the errors
FastAPI's handlers see and for those a middleware answers itself (a body too large, a crash)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from nidan import errors
from nidan.texts import Text, _, ngettext
from nidan.web.correlation import BodyTooLarge, current_correlation_id
from nidan.web.i18n import Catalog, catalog_for

log = logging.getLogger("nidan.web")

#: Most specific class first; the first match wins.
STATUS_BY_ERROR: list[tuple[type[errors.NidanError], int]] = [
    (errors.UserNotFound, 404),
    (errors.NotFound, 404),
    (errors.NoEnrollment, 400),
    (errors.UsernameTaken, 409),
    (errors.InvalidInput, 422),
    (errors.AuthenticationError, 401),
    (errors.StateConflict, 409),
    (errors.CsrfFailed, 403),
    (errors.RateLimited, 429),
    (errors.Refused, 403),
    (errors.DatabaseUnavailable, 503),
    (errors.ConfigurationError, 503),
]

TOO_LARGE = _("The request body is too large.")
_HTTP_CODES: dict[int, tuple[str, Text]] = {
    400: ("bad_request", _("The request could not be understood.")),
    401: ("authentication_required", errors.AuthenticationRequired.default_message),
    403: ("forbidden", _("You are not allowed to do this.")),
    404: ("not_found", _("Nothing was found at this address. Check the URL.")),
    405: ("http_method_not_allowed", _("This address does not accept that HTTP method.")),
    413: ("payload_too_large", TOO_LARGE),
    415: ("unsupported_media_type", _("Send the request body as JSON (Content-Type: application/json).")),
}


def status_for(error: errors.NidanError) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 500


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "code": code,
        "message": message,
        "correlation_id": current_correlation_id(),
        "timestamp": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    body.update(extra)
    return {"error": body}


def problem_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    headers = dict(headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="nidan"')
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def error_headers(error: errors.NidanError) -> dict[str, str]:
    """Headers an error implies: ``Retry-After`` (whole seconds) while rate limited or the database is busy."""
    if isinstance(error, errors.RateLimited | errors.DatabaseUnavailable):
        return {"Retry-After": str(error.retry_after_seconds)}
    return {}


def error_response(error: errors.NidanError, language: Catalog | None = None) -> JSONResponse:
    """The API's answer to ``error``: its status, headers and body from the tables above, the message in
    ``language`` (English without one); the code is the same in every language."""
    status = status_for(error)
    _log_server_error(status, error)
    message = language.text(*error.texts) if language is not None else error.message
    return problem_response(status, error.code, message, error_headers(error))


def _log_server_error(status: int, error: errors.NidanError) -> None:
    # A missing schema is logged once by the database layer (db.schema_watch), not once per request it refuses.
    if status >= 500 and not isinstance(error, errors.DatabaseNotMigrated):
        log.error("request failed: %s (%s)", error.code, error.message)


#: What is wrong with a field, by pydantic's error type, in the reader's language (pydantic's own sentences are
#: English only: the JSON ``fields`` list keeps them for programs). Written to follow "<field>: ".
_FIELD_PROBLEMS: dict[str, Text] = {
    "missing": _("required"),
    "extra_forbidden": _("not a field of this request"),
    "string_type": _("must be text"),
    "string_unicode": _("must be text"),
    "string_pattern_mismatch": _("is not in the expected form"),
    "int_type": _("must be a whole number"),
    "int_parsing": _("must be a whole number"),
    "int_from_float": _("must be a whole number"),
    "float_type": _("must be a number"),
    "float_parsing": _("must be a number"),
    "bool_type": _("must be true or false"),
    "bool_parsing": _("must be true or false"),
    "dict_type": _("must be a JSON object"),
    "model_type": _("must be a JSON object"),
    "model_attributes_type": _("must be a JSON object"),
    "list_type": _("must be a list"),
    "date_type": _("must be a date, such as 2027-03-14"),
    "date_parsing": _("must be a date, such as 2027-03-14"),
    "date_from_datetime_parsing": _("must be a date, such as 2027-03-14"),
    "date_from_datetime_inexact": _("must be a date, such as 2027-03-14"),
    "datetime_type": _("must be a date and time, such as 2026-03-14T15:09:26Z"),
    "datetime_parsing": _("must be a date and time, such as 2026-03-14T15:09:26Z"),
    "datetime_from_date_parsing": _("must be a date and time, such as 2026-03-14T15:09:26Z"),
}
_NOT_VALID = _("not valid")
#: The quoted choices in pydantic's ``expected`` ("'totp' or 'recovery_code'"), without its English "or".
_CHOICE = re.compile(r"'([^']*)'")


def _field_problem(problem: Mapping[str, Any]) -> Text:
    """What is wrong, from pydantic's error ``type`` and its limits (``ctx``); a validator of nidan's raises
    ``ValueError`` with a ``Text``, which is said as it is."""
    kind = str(problem.get("type", ""))
    ctx: Mapping[str, Any] = problem.get("ctx") or {}
    if kind in _FIELD_PROBLEMS:
        return _FIELD_PROBLEMS[kind]
    if kind == "string_too_short" and isinstance(ctx.get("min_length"), int):
        if ctx["min_length"] == 1:
            return _("must not be empty")
        return ngettext(
            "must be at least %(n)d character long", "must be at least %(n)d characters long", ctx["min_length"]
        )
    if kind == "string_too_long" and isinstance(ctx.get("max_length"), int):
        return ngettext(
            "must be at most %(n)d character long", "must be at most %(n)d characters long", ctx["max_length"]
        )
    if kind == "too_short" and isinstance(ctx.get("min_length"), int):
        return ngettext("must have at least %(n)d item", "must have at least %(n)d items", ctx["min_length"])
    if kind == "too_long" and isinstance(ctx.get("max_length"), int):
        return ngettext("must have at most %(n)d item", "must have at most %(n)d items", ctx["max_length"])
    if kind == "greater_than_equal" and "ge" in ctx:
        return _("must be %(limit)s or more", limit=ctx["ge"])
    if kind == "less_than_equal" and "le" in ctx:
        return _("must be %(limit)s or less", limit=ctx["le"])
    if kind == "greater_than" and "gt" in ctx:
        return _("must be more than %(limit)s", limit=ctx["gt"])
    if kind == "less_than" and "lt" in ctx:
        return _("must be less than %(limit)s", limit=ctx["lt"])
    if kind in ("enum", "literal_error") and "expected" in ctx:
        choices = _CHOICE.findall(str(ctx["expected"])) or [str(ctx["expected"])]
        return _("must be one of: %(choices)s", choices=", ".join(choices))
    error = ctx.get("error")
    if kind == "value_error" and isinstance(error, ValueError) and error.args and isinstance(error.args[0], Text):
        return error.args[0]
    return _NOT_VALID


def _describe_validation(exc: RequestValidationError) -> tuple[Text, list[dict[str, object]]]:
    """The message (naming the first few fields and what is wrong with each, in words of nidan's catalogs) and the
    ``fields`` list (pydantic's words, for programs)."""
    fields: list[dict[str, object]] = []
    summary: Text | None = None
    for index, problem in enumerate(exc.errors()):
        location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "body"
        fields.append({"field": location, "problem": str(problem.get("msg", "invalid"))})
        if index < 3:
            wrong = _("%(field)s: %(problem)s", field=location, problem=_field_problem(problem))
            summary = wrong if summary is None else _("%(earlier)s; %(later)s", earlier=summary, later=wrong)
    if any(p.get("type") == "json_invalid" for p in exc.errors()):
        return _("The request body is not valid JSON."), fields
    if summary is None:
        return errors.InvalidInput.default_message, fields
    return _("Some fields are missing or not valid (%(summary)s).", summary=summary), fields


def _page_validation(exc: RequestValidationError) -> tuple[int, str, Text]:
    """A page request's validation error as a person reads it. A path part that cannot name anything
    (``/security/tokens/abc/revoke``) is an address with nothing at it: 404, the page of any unknown address. A
    query value or form field is 422, naming the field as the reader sees it (no pydantic ``query.`` or ``body.``)
    and what is wrong with it in the words of nidan's catalogs."""
    problems = exc.errors()
    places = {str(problem.get("loc", ("",))[0]) for problem in problems}
    if "path" in places:
        return 404, *_HTTP_CODES[404]
    summary: Text | None = None
    for problem in problems[:3]:
        location = problem.get("loc", ())
        field = ".".join(str(part) for part in location[1:]) or ".".join(str(part) for part in location)
        wrong = _("%(field)s: %(problem)s", field=field, problem=_field_problem(problem))
        summary = wrong if summary is None else _("%(earlier)s; %(later)s", earlier=summary, later=wrong)
    if summary is None:
        return 422, "invalid_request", errors.InvalidInput.default_message
    if "body" in places:
        said = _(
            "Some fields of the form are missing or not valid (%(summary)s). Check them and send the form again.",
            summary=summary,
        )
    else:
        said = _(
            "Part of this page's address is not valid (%(summary)s). Open the page again from its link or the menu.",
            summary=summary,
        )
    return 422, "invalid_request", said


class ErrorPageRenderer(Protocol):
    """The error page: ``message`` is rendered in the page's language (the signed-in person's choice, when the
    renderer learns who they are)."""

    def __call__(self, request: Request, status: int, code: str, message: tuple[Text, ...]) -> Response: ...


#: Paths answered for programs: their errors are the JSON error body, never a page (probes read ``/healthz``).
_JSON_PATHS = ("/api/", "/openapi", "/auth/", "/healthz")


def _wants_json(request: Request) -> bool:
    """The one decision between the JSON error body (programs) and the error page (people): by path, so a program
    always gets JSON and a browser on any page address, known or not, a page. An app without pages, or a request
    that never reached one (the verify API's front door), answers JSON."""
    state = getattr(request.scope.get("app"), "state", None)
    return request.url.path.startswith(_JSON_PATHS) or getattr(state, "error_page", None) is None


def allowed_methods(request: Request) -> str:
    """``Allow`` for the request's path: every method of every route on it (RFC 9110 wants them all, and one path
    may be served by several routes, each with its own methods, where Starlette's 405 names only the first's)."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        path_regex = getattr(route, "path_regex", None)
        if route.methods and path_regex is not None and path_regex.match(path):
            methods.update(route.methods)
    return ", ".join(sorted(methods))


def _body_unreadable(exc: StarletteHTTPException) -> bool:
    """FastAPI's 400 for a JSON body it could not even decode (not UTF-8): the same mistake as malformed JSON."""
    return exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError)


async def _respond(
    request: Request,
    status: int,
    code: str,
    message: Text | errors.NidanError,
    headers: dict[str, str] | None = None,
    **extra: object,
) -> Response:
    """The answer to a failed request in the reader's language: JSON for programs, the error page for people."""
    texts = message.texts if isinstance(message, errors.NidanError) else (message,)
    if _wants_json(request):
        return problem_response(status, code, catalog_for(request).text(*texts), headers, **extra)
    renderer: ErrorPageRenderer = request.app.state.error_page
    # The page may look up who is signed in (a database read): keep it off the event loop.
    response = await run_in_threadpool(renderer, request, status, code, texts)
    response.headers.update(headers or {})
    return response


async def answer_outside_handlers(
    scope: Scope, receive: Receive, send: Send, status: int, code: str, message: Text
) -> None:
    """An error a middleware answers itself, outside FastAPI's handlers (a body declared too large, a crash): JSON
    or the error page by the same decision as every other error. Should the page fail too, the JSON body says it."""
    request = Request(scope, receive)
    try:
        response = await _respond(request, status, code, message)
    except Exception:
        log.exception("error answer failed; answering with the JSON error body")
        response = problem_response(status, code, catalog_for(request).text(message))
    await response(scope, receive, send)


def install_error_handlers(app: FastAPI, error_page: ErrorPageRenderer | None = None) -> None:
    """API paths answer JSON; page paths answer an HTML page with the same support details."""
    app.state.error_page = error_page

    @app.exception_handler(errors.NidanError)
    async def nidan_error(request: Request, exc: errors.NidanError) -> Response:
        if _wants_json(request):
            return error_response(exc, catalog_for(request))
        status = status_for(exc)
        _log_server_error(status, exc)
        return await _respond(request, status, exc.code, exc, error_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        if not _wants_json(request):
            return await _respond(request, *_page_validation(exc))
        message, fields = _describe_validation(exc)
        return await _respond(request, 422, "invalid_request", message, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _body_unreadable(exc):
            fields: list[dict[str, object]] = [{"field": "body", "problem": "not UTF-8"}]
            unreadable = _("The request body is not valid JSON.")
            return await _respond(request, 422, "invalid_request", unreadable, fields=fields)
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", Text(str(exc.detail))))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return await _respond(request, exc.status_code, code, message, headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> Response:
        return await _respond(request, 413, *_HTTP_CODES[413])

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error")
        return await _respond(request, 500, "internal_error", errors.NidanError.default_message)
