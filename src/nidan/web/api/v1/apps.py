"""Administrators register the relying applications that may call the verify API (each call needs step-up)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from nidan.core.access_tokens import Application
from nidan.core.usernames import APPLICATION_NAME_PATTERN
from nidan.services import applications
from nidan.web.api.v1.schemas import CANONICAL_SPELLING, documented_pattern
from nidan.web.deps import AdminSession, Client, Services
from nidan.web.openapi import errors_documented

router = APIRouter(prefix="/api/v1/admin/apps", tags=["administration"])

#: An application's name: an ASCII username's rule (``nidan.core.usernames.application_name_key``).
NAME_HELP = f"a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit; e.g. 'wiki'. {CANONICAL_SPELLING}"

AppName = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description=NAME_HELP,
        examples=["wiki"],
        json_schema_extra=documented_pattern(APPLICATION_NAME_PATTERN),
    ),
]


class ApplicationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(
        min_length=1,
        max_length=64,
        description=NAME_HELP,
        json_schema_extra=documented_pattern(APPLICATION_NAME_PATTERN),
    )


class ApplicationOut(BaseModel):
    id: int
    name: str
    created_at: datetime
    created_by: str | None
    last_used_at: datetime | None = Field(description="To the minute.")


class RegisteredApplicationOut(BaseModel):
    id: int
    name: str
    api_key: str = Field(description="Send it as 'Authorization: Bearer <key>'. Shown only this once.")
    created_at: datetime


class ApplicationListOut(BaseModel):
    apps: list[ApplicationOut]


def _out(application: Application) -> ApplicationOut:
    return ApplicationOut(
        id=application.id,
        name=application.name,
        created_at=application.created_at,
        created_by=application.created_by,
        last_used_at=application.last_used_at,
    )


@router.post(
    "",
    status_code=201,
    response_model=RegisteredApplicationOut,
    responses=errors_documented(401, 403, 409, 422),
    summary="Register an application for the verify API; its API key is in this answer only",
)
def add_application(
    body: ApplicationRequest, ctx: Services, admin: AdminSession, client: Client
) -> RegisteredApplicationOut:
    registered = applications.add(ctx, name=body.name, actor=admin.user, client=client)
    application = registered.application
    return RegisteredApplicationOut(
        id=application.id, name=application.name, api_key=registered.api_key, created_at=application.created_at
    )


@router.get("", response_model=ApplicationListOut, responses=errors_documented(401, 403), summary="Applications")
def list_applications(ctx: Services, _admin: AdminSession) -> ApplicationListOut:
    return ApplicationListOut(apps=[_out(a) for a in applications.list_all(ctx)])


@router.delete(
    "/{name}",
    status_code=204,
    responses=errors_documented(401, 403, 404, 422),
    summary="Remove an application: its API key stops working at once",
)
def remove_application(name: AppName, ctx: Services, admin: AdminSession, client: Client) -> Response:
    applications.remove(ctx, name=name, actor=admin.user, client=client)
    return Response(status_code=204)
