"""The verify API: a relying application asks whether a code is the user's, right now."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from nidan.core.models import ClientInfo, Method
from nidan.services import applications, verify
from nidan.services.context import ServiceContext
from nidan.web.api.v1.schemas import ErrorDetail
from nidan.web.deps import Client, Services, bearer_token
from nidan.web.openapi import errors_documented
from nidan.web.problems import error_body

router = APIRouter(prefix="/api/v1", tags=["verify API"])


async def application_key(request: Request) -> str:
    """The bearer token when it has an application key's shape: a request without one is refused before its body
    is looked at. Whether the key is registered is checked in the endpoint, in the same trip to the thread pool as
    the verify itself (each trip costs about as much as the check)."""
    return applications.require_key_shape(bearer_token(request))


ApplicationKey = Annotated[str, Depends(application_key)]


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=1, max_length=64, description="A 6-digit authenticator code or a recovery code.")
    method: Method | None = Field(
        default=None,
        description="Optional: digits are taken as an authenticator code, anything else as a recovery code.",
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
)
async def verify_code(
    request: Request, body: VerifyRequest, ctx: Services, client: Client, api_key: ApplicationKey
) -> JSONResponse:
    check = partial(_verify, ctx, api_key, body, client)
    # Embedded SQLite answers in microseconds and admits one writer at a time anyway: handing the work to a thread
    # would cost more than the work, so it runs right here. A database server's round trips would stall every
    # other request of this process meanwhile, so then it goes to the thread pool.
    result = check() if request.app.state.storage_is_embedded else await run_in_threadpool(check)
    # The answer is built here as VerifyOut documents it: returning a Response spares FastAPI validating and
    # serialising our own model again on the busiest endpoint.
    answer: dict[str, object] = {"ok": result.ok, "method": result.method.value}
    if result.ok:
        answer["username"] = result.username
    else:
        assert result.error is not None
        answer["error"] = error_body(result.error.code, result.error.message)["error"]
    return JSONResponse(answer)


def _verify(ctx: ServiceContext, api_key: str, body: VerifyRequest, client: ClientInfo) -> verify.VerifyResult:
    return verify.verify_for_key(
        ctx, api_key=api_key, username=body.username, code=body.code, method=body.method, client=client
    )
