"""The security event log over the API: one's own at ``/me/events``, everyone's for administrators."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field

from nidan.core.audit import AuditRecord, Detail, EventType
from nidan.core.usernames import USERNAME_PATTERN
from nidan.services import audit
from nidan.texts import _
from nidan.web.api.v1.schemas import CANONICAL_SPELLING, MAX_INT8, USERNAME_RULES, documented_pattern
from nidan.web.deps import AdminSession, Services, SignedIn
from nidan.web.openapi import errors_documented

router = APIRouter(prefix="/api/v1", tags=["security log"])


class UserRef(BaseModel):
    id: int | None
    username: str | None


class AuditEventOut(BaseModel):
    seq: int = Field(description="Position in the log; pass the smallest one seen as `before` for the next page.")
    occurred_at: datetime
    type: str = Field(description="For example `sign_in.succeeded`, `totp.enrolled`, `backoff.blocked`.")
    actor: UserRef | None = Field(description="Who did it; null for the command line or someone not signed in.")
    subject: UserRef | None = Field(description="Whose account it concerns.")
    client_ip: str | None
    user_agent: str | None
    correlation_id: str | None = Field(description="The request's id, as in its X-Correlation-ID header.")
    details: dict[str, Detail] = Field(description="Small facts, never a secret: e.g. a recovery code's position.")


class AuditEventsResponse(BaseModel):
    events: list[AuditEventOut] = Field(description="Newest first.")
    next_before: int | None = Field(description="Send as `before` for older events; null when there are none.")


def _ref(user_id: int | None, username: str | None) -> UserRef | None:
    return None if user_id is None and username is None else UserRef(id=user_id, username=username)


def events_response(records: Sequence[AuditRecord], limit: int) -> AuditEventsResponse:
    events = [
        AuditEventOut(
            seq=r.seq,
            occurred_at=r.event.occurred_at,
            type=r.event.event_type,
            actor=_ref(r.event.actor_user_id, r.event.actor_username),
            subject=_ref(r.event.subject_user_id, r.event.subject_username),
            client_ip=r.event.client_ip,
            user_agent=r.event.user_agent,
            correlation_id=r.event.correlation_id,
            details=dict(r.event.details),
        )
        for r in records
    ]
    return AuditEventsResponse(events=events, next_before=events[-1].seq if len(events) == limit else None)


def _iso_moment(value: object) -> datetime:
    """An ISO 8601 date and time, as UTC (read as UTC when it has no offset). Only text: pydantic would also take a
    number as seconds since 1970, which the document (``date-time``) does not promise; and a moment UTC cannot
    hold (year 1 with a positive offset) is refused here rather than overflowing in the database layer."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(_("expected an ISO 8601 date and time, such as 2026-03-14T15:09:26Z")) from None
    else:
        raise ValueError(_("expected an ISO 8601 date and time, such as 2026-03-14T15:09:26Z"))
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(_("the time is out of range")) from None


Moment = Annotated[datetime, BeforeValidator(_iso_moment)]
Limit = Annotated[int, Query(ge=1, le=audit.MAX_PAGE, description="At most this many events (1-200).")]
Before = Annotated[
    int | None,
    Query(ge=1, le=MAX_INT8, description="Only events with a smaller `seq` (the next page); `seq` is an int8."),
]


@router.get(
    "/me/events",
    response_model=AuditEventsResponse,
    responses=errors_documented(401, 422),
    summary="My security log: sign-ins, changes to my second factors, sessions ended",
)
def my_events(
    ctx: Services, session: SignedIn, limit: Limit = audit.DEFAULT_PAGE, before: Before = None
) -> AuditEventsResponse:
    records = audit.my_events(ctx, session.user.id, limit=limit, before=before)
    return events_response(records, limit)


@router.get(
    "/admin/events",
    response_model=AuditEventsResponse,
    responses=errors_documented(401, 403, 422),
    summary="Everyone's security log (administrators, after a recent step-up)",
    description="Filters combine: `username` (the event's subject or actor), `type`, and the time range "
    "`since` (inclusive) to `until` (exclusive), ISO 8601 (UTC when no offset is given). `since` must be earlier "
    "than `until` (422 `invalid_request` otherwise: a rule between two fields, which the schema cannot state). "
    "Members get 403 `admin_required`; administrators who have not verified recently get 403 "
    "`reauthentication_required`.",
)
def all_events(
    ctx: Services,
    _admin: AdminSession,
    username: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=256,
            description=f"A username. {CANONICAL_SPELLING} {USERNAME_RULES}",
            json_schema_extra=documented_pattern(USERNAME_PATTERN),
        ),
    ] = None,
    event_type: Annotated[EventType | None, Query(alias="type", description="One event type.")] = None,
    since: Annotated[Moment | None, Query()] = None,
    until: Annotated[Moment | None, Query()] = None,
    limit: Limit = audit.DEFAULT_PAGE,
    before: Before = None,
) -> AuditEventsResponse:
    records = audit.all_events(
        ctx,
        username=username,
        event_type=event_type,
        since=since,
        until=until,
        limit=limit,
        before=before,
    )
    return events_response(records, limit)
