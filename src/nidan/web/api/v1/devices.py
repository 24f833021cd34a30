"""Remembered browsers: the signed-in user lists and forgets their own; an administrator forgets all of a user's.

A browser is remembered at sign-in ("don't ask for the second step again on this browser"), for as many days as
the user's organisations allow. Forgetting one only takes a shortcut away, so it needs no recent verification.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from nidan.services import devices, user_admin
from nidan.web.api.v1.admin import ReasonRequest
from nidan.web.api.v1.schemas import MAX_INT4, UsernameInPath
from nidan.web.deps import Client, ManagerSession, Services, SignedIn
from nidan.web.openapi import errors_documented

router = APIRouter(tags=["remembered browsers"])

DeviceId = Annotated[
    int, Path(ge=1, le=MAX_INT4, description="The browser's id (remembered_devices.id, an int4).", examples=[1])
]


class DeviceOut(BaseModel):
    id: int
    browser: str = Field(
        description="The browser and system in words, from its User-Agent (e.g. `Chrome on Windows`; "
        "`Unknown browser` when not recognised). Only a help to tell devices apart: the client chooses it."
    )
    first_used_at: datetime = Field(description="When it was remembered.")
    last_used_at: datetime | None = Field(description="When it last skipped the second step.")
    last_ip: str | None = Field(description="The client address it was last used from.")
    expires_at: datetime = Field(
        description="From then on it asks for the second step again. Fixed when it was remembered (using it does "
        "not extend it); earlier if the user's policy became shorter since."
    )


class DeviceListOut(BaseModel):
    devices: list[DeviceOut] = Field(description="Browsers that skip the second step now, last used first.")


class DevicesForgottenOut(BaseModel):
    username: str
    forgotten: int = Field(description="How many remembered browsers ask for the second step again.")


def _out(view: devices.DeviceView) -> DeviceOut:
    return DeviceOut(
        id=view.id,
        browser=view.browser,
        first_used_at=view.first_used_at,
        last_used_at=view.last_used_at,
        last_ip=view.last_ip,
        expires_at=view.expires_at,
    )


@router.get(
    "/api/v1/me/devices",
    response_model=DeviceListOut,
    responses=errors_documented(401, 403),
    summary="My remembered browsers (where sign-in skips the second step)",
)
def list_devices(ctx: Services, session: SignedIn) -> DeviceListOut:
    return DeviceListOut(devices=[_out(view) for view in devices.devices_of(ctx, session.user.id)])


@router.delete(
    "/api/v1/me/devices/{device_id}",
    status_code=204,
    responses=errors_documented(401, 403, 404, 422),
    summary="Forget one of my remembered browsers: it asks for the second step again (audited)",
    description="404 `device_not_found` for an id that is not one of the caller's remembered browsers (or was "
    "forgotten already).",
)
def forget_device(device_id: DeviceId, ctx: Services, session: SignedIn, client: Client) -> Response:
    devices.forget(ctx, session.user, device_id, client=client)
    return Response(status_code=204)


@router.delete(
    "/api/v1/admin/users/{username}/devices",
    response_model=DevicesForgottenOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Forget all of a user's remembered browsers (e.g. a lost laptop; audited with the reason)",
    description="Every browser the user asked to be remembered asks for the second step again; their sessions and "
    "second factors stay. Needs a recent verification and the right to manage the user (403 `not_permitted`).",
)
def forget_user_devices(
    username: UsernameInPath, body: ReasonRequest, ctx: Services, manager: ManagerSession, client: Client
) -> DevicesForgottenOut:
    user, forgotten = user_admin.forget_devices(
        ctx, username=username, actor=manager.user, client=client, reason=body.reason
    )
    return DevicesForgottenOut(username=user.username, forgotten=forgotten)
