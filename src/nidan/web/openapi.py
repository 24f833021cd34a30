"""OpenAPI helpers: every error answer documented with the one error body, and who may call each operation."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.routing import BaseRoute

from nidan.web import deps, forward_auth
from nidan.web.api.v1.schemas import ErrorResponse

_DESCRIPTIONS = {
    401: "Not signed in, or the credentials or code were wrong.",
    403: "Not allowed now: a recent verification is needed (`reauthentication_required`: confirm at "
    "POST /api/v1/auth/reauth), or verification is locked (`verification_locked`).",
    404: "Not found.",
    409: "The account is not in a state that allows this.",
    413: "The body is too large.",
    422: "A field is missing or not valid.",
    429: "Too many attempts; retry after the Retry-After header.",
}


def errors_documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]} for status in statuses}


# --- security: the schemes, and which one each operation asks for ----------------------------------------------------

SESSION = "session"
APPLICATION_KEY = "applicationKey"
BASIC = "basic"

SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    SESSION: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "nidan session token",
        "description": "The `session_token` from POST /api/v1/auth/login or /api/v1/auth/mfa. Where an operation "
        "says so, the `setup_token` of a sign-in that must set up two-step verification first.",
    },
    APPLICATION_KEY: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "nidan application key",
        "description": "A relying application's API key (`nidan app add NAME` or POST /api/v1/admin/apps).",
    },
    BASIC: {
        "type": "http",
        "scheme": "basic",
        "description": "`username:secret`, the secret a personal access token or app password (or the password, "
        "for users without two-step verification, where the instance allows it).",
    },
}


def requires(scheme: str) -> dict[str, Any]:
    """``openapi_extra`` for a route that reads its credentials itself rather than through a dependency."""
    return {"security": [{scheme: []}]}


#: The dependencies that demand credentials: an operation using one (directly or through another) asks for them.
_SCHEME_OF_DEPENDENCY: dict[Callable[..., Any], str] = {
    deps.current_session: SESSION,
    deps.enrolling_session: SESSION,
}
#: Endpoints outside the API's modules that read their credentials themselves.
_SCHEME_OF_ENDPOINT: dict[Callable[..., Any], str] = {forward_auth.basic_gate: BASIC}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _schemes(route: RouteContext) -> list[str]:
    found = {_SCHEME_OF_DEPENDENCY[call] for call in _calls(route.dependant) if call in _SCHEME_OF_DEPENDENCY}
    if route.endpoint in _SCHEME_OF_ENDPOINT:
        found.add(_SCHEME_OF_ENDPOINT[route.endpoint])
    return sorted(found)


def with_security(document: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """``document`` with its security schemes, and every operation's ``security``: the scheme its credentials
    dependency demands, or ``[]`` (none) for the operations anyone may call. Derived from the routes, so the
    document cannot say an operation is open while it demands a session. Operations that name theirs (``requires``)
    keep it."""
    document.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for route in iter_route_contexts(routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        operations = document["paths"].get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is not None and "security" not in operation:
                operation["security"] = [{scheme: []} for scheme in _schemes(route)]
    return document
