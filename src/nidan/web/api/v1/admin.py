"""Administrators helping a stuck user: see and clear their backoff block (every call needs a recent step-up)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from nidan.core.backoff import ThrottleState
from nidan.services import throttling
from nidan.web.deps import AdminSession, Client, Services
from nidan.web.openapi import errors_documented

router = APIRouter(prefix="/api/v1/admin", tags=["administration"])

Username = Annotated[str, Path(min_length=1, max_length=256)]


class CounterOut(BaseModel):
    failures: int = Field(description="Consecutive failures counted.")
    blocked_until: datetime | None = Field(description="Refused until then (429 with Retry-After).")
    locked: bool = Field(description="At the hard limit: refused until an administrator clears it.")
    locked_at: datetime | None


class PasswordCounterOut(CounterOut):
    client_ip: str


class BlockStatusOut(BaseModel):
    username: str
    second_factor: CounterOut
    passwords: list[PasswordCounterOut] = Field(description="Wrong passwords for this username, per address.")


class BlockClearedOut(BaseModel):
    username: str
    counters_cleared: int


def _counter(state: ThrottleState) -> CounterOut:
    return CounterOut(
        failures=state.failures,
        blocked_until=state.blocked_until,
        locked=state.locked_at is not None,
        locked_at=state.locked_at,
    )


@router.get(
    "/users/{username}/block",
    response_model=BlockStatusOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="A user's backoff state: second step and passwords per address",
)
def block_status(username: Username, ctx: Services, _admin: AdminSession) -> BlockStatusOut:
    found = throttling.status(ctx, username)
    return BlockStatusOut(
        username=found.user.username,
        second_factor=_counter(found.second_factor),
        passwords=[PasswordCounterOut(client_ip=ip, **_counter(state).model_dump()) for ip, state in found.passwords],
    )


@router.delete(
    "/users/{username}/block",
    response_model=BlockClearedOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Clear a user's backoff block, including the hard lock (audited with the reason)",
)
def clear_block(
    username: Username,
    ctx: Services,
    admin: AdminSession,
    client: Client,
    reason: Annotated[str | None, Query(max_length=200, description="Why, for the audit log.")] = None,
) -> BlockClearedOut:
    found = throttling.status(ctx, username)
    cleared = throttling.clear(ctx, username=username, actor=admin.user, client=client, reason=reason)
    return BlockClearedOut(username=found.user.username, counters_cleared=cleared)
