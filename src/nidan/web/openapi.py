"""OpenAPI helpers: every error answer documented with the one error body."""

from __future__ import annotations

from typing import Any

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
