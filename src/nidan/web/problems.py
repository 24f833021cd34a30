"""Errors to HTTP: one table from error class to status, and the one JSON error body every API error uses."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

from nidan import errors
from nidan.web.correlation import BodyTooLarge, current_correlation_id

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

_HTTP_CODES = {
    400: ("bad_request", "The request could not be understood."),
    401: ("authentication_required", errors.AuthenticationRequired.default_message),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "Nothing was found at this address. Check the URL."),
    405: ("http_method_not_allowed", "This address does not accept that HTTP method."),
    413: ("payload_too_large", "The request body is too large."),
    415: ("unsupported_media_type", "Send the request body as JSON (Content-Type: application/json)."),
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


def error_response(error: errors.NidanError) -> JSONResponse:
    """The API's answer to ``error``: its status, headers and body from the tables above."""
    status = status_for(error)
    _log_server_error(status, error)
    return problem_response(status, error.code, error.message, error_headers(error))


def _log_server_error(status: int, error: errors.NidanError) -> None:
    # A missing schema is logged once by the database layer (db.schema_watch), not once per request it refuses.
    if status >= 500 and not isinstance(error, errors.DatabaseNotMigrated):
        log.error("request failed: %s (%s)", error.code, error.message)


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, object]]]:
    fields: list[dict[str, object]] = []
    for problem in exc.errors():
        location = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        fields.append({"field": location or "body", "problem": str(problem.get("msg", "invalid"))})
    if any(p.get("type") == "json_invalid" for p in exc.errors()):
        return "The request body is not valid JSON.", fields
    summary = "; ".join(f"{f['field']}: {f['problem']}" for f in fields[:3])
    return f"Some fields are missing or not valid ({summary}).", fields


class ErrorPageRenderer(Protocol):
    def __call__(self, request: Request, status: int, code: str, message: str) -> Response: ...


#: Paths answered for programs: their errors are the JSON error body, never a page (probes read ``/healthz``).
_JSON_PATHS = ("/api/", "/openapi", "/auth/", "/healthz")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(_JSON_PATHS) or request.app.state.error_page is None


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
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object
) -> Response:
    if _wants_json(request):
        return problem_response(status, code, message, headers, **extra)
    renderer: ErrorPageRenderer = request.app.state.error_page
    # The page may look up who is signed in (a database read): keep it off the event loop.
    response = await run_in_threadpool(renderer, request, status, code, message)
    response.headers.update(headers or {})
    return response


def install_error_handlers(app: FastAPI, error_page: ErrorPageRenderer | None = None) -> None:
    """API paths answer JSON; page paths answer an HTML page with the same support details."""
    app.state.error_page = error_page

    @app.exception_handler(errors.NidanError)
    async def nidan_error(request: Request, exc: errors.NidanError) -> Response:
        if _wants_json(request):
            return error_response(exc)
        status = status_for(exc)
        _log_server_error(status, exc)
        return await _respond(request, status, exc.code, exc.message, error_headers(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        message, fields = _describe_validation(exc)
        return await _respond(request, 422, "invalid_request", message, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _body_unreadable(exc):
            fields: list[dict[str, object]] = [{"field": "body", "problem": "not UTF-8"}]
            return await _respond(request, 422, "invalid_request", "The request body is not valid JSON.", fields=fields)
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", str(exc.detail)))
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
