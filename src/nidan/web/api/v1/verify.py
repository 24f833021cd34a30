"""The verify API: a relying application asks whether a code is the user's, right now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from nidan.core.access_tokens import Application
from nidan.core.models import Method
from nidan.services import applications, verify
from nidan.web.api.v1.schemas import ErrorDetail
from nidan.web.deps import Client, Services, bearer_token
from nidan.web.openapi import errors_documented
from nidan.web.problems import error_body

router = APIRouter(prefix="/api/v1", tags=["verify API"])


def calling_application(request: Request, ctx: Services) -> Application:
    """The application whose API key came as the bearer token; checked before the body is looked at."""
    return applications.authenticate(ctx, bearer_token(request))


CallingApplication = Annotated[Application, Depends(calling_application)]


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
def verify_code(body: VerifyRequest, ctx: Services, client: Client, application: CallingApplication) -> VerifyOut:
    result = verify.verify(
        ctx, application=application, username=body.username, code=body.code, method=body.method, client=client
    )
    if result.ok:
        return VerifyOut(ok=True, method=result.method, username=result.username)
    assert result.error is not None
    detail = error_body(result.error.code, result.error.message)["error"]
    return VerifyOut(ok=False, method=result.method, error=ErrorDetail.model_validate(detail))
