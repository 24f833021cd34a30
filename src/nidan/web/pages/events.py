"""The signed-in person's security log: what happened to their account, when, and from where."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from nidan.core.audit import AuditRecord, EventType
from nidan.core.models import User
from nidan.services import audit
from nidan.web.deps import Services
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.rendering import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50

#: What each event means, said to the account's owner.
LABELS: dict[str, str] = {
    EventType.SIGN_IN_SUCCEEDED: "Signed in",
    EventType.SIGN_IN_PASSWORD_FAILED: "Sign-in failed: wrong password",
    EventType.SIGN_IN_SECOND_FACTOR_FAILED: "Sign-in failed: wrong code",
    EventType.RECOVERY_CODE_USED: "Recovery code used",
    EventType.TOTP_ENROLLED: "Two-step verification turned on",
    EventType.TOTP_CHANGED: "Authenticator app changed",
    EventType.TOTP_REMOVED: "Two-step verification turned off",
    EventType.RECOVERY_CODES_REGENERATED: "New recovery codes made (the old ones stopped working)",
    EventType.BACKOFF_BLOCKED: "Blocked for a while after failed attempts",
    EventType.BACKOFF_LOCKED: "Verification locked after too many failed attempts",
    EventType.BACKOFF_CLEARED: "Block cleared by an administrator",
    EventType.STEP_UP_SUCCEEDED: "Confirmed it was you (to change settings)",
    EventType.STEP_UP_FAILED: "Confirming it was you failed",
    EventType.SESSION_REVOKED: "Signed out",
    EventType.SESSIONS_REVOKED_ALL: "Signed out everywhere",
    EventType.USER_CREATED: "Account created",
    EventType.USER_PASSWORD_SET: "Password changed",
    EventType.SETUP_COMPLETED: "First-time setup completed",
    EventType.TOKEN_CREATED: "Access token or app password created",
    EventType.TOKEN_REVOKED: "Access token or app password revoked",
    EventType.TOKENS_REVOKED_ALL: "All access tokens and app passwords revoked",
    EventType.BASIC_AUTH_FAILED: "Git or app sign-in refused (password or token)",
    EventType.APPLICATION_ADDED: "Application registered for the verify API",
    EventType.APPLICATION_REMOVED: "Application removed from the verify API",
    EventType.VERIFY_SUCCEEDED: "Code accepted by an application",
    EventType.VERIFY_FAILED: "Code refused by an application",
    EventType.SIGN_IN_SETUP_REQUIRED: "Signed in: two-step verification must be set up first",
    EventType.TWO_FACTOR_RESET: "Two-step verification reset by an administrator",
    EventType.TWO_FACTOR_UNENROLLED: "Two-step verification removed by an administrator",
    EventType.REGISTRATION_REQUIRED: "Asked to set up two-step verification again",
    EventType.ORGANISATION_CREATED: "Organisation created",
    EventType.ORGANISATION_POLICY_CHANGED: "Organisation's two-step policy changed",
    EventType.MEMBER_ADDED: "Added to an organisation",
    EventType.MEMBER_CHANGED: "Role in an organisation changed",
    EventType.MEMBER_REMOVED: "Removed from an organisation",
    EventType.ADMIN_RECOVERED: "Administrator access recovered on the server",
    EventType.RECOVERY_LINK_USED: "Recovery link used",
    EventType.DEFAULT_METHOD_CHANGED: "Default verification method changed",
    EventType.REMEMBERED_DEVICE_ADDED: "Browser remembered: it skips the second step",
    EventType.REMEMBERED_DEVICE_REPLAYED: "Remembered browser forgotten: its token was used twice (copied?)",
    EventType.REMEMBERED_DEVICE_FORGOTTEN: "Remembered browser forgotten",
    EventType.REMEMBERED_DEVICES_FORGOTTEN: "All remembered browsers forgotten by an administrator",
}


@dataclass(frozen=True, slots=True)
class EventRow:
    iso_time: str
    time: str
    label: str
    by: str | None
    facts: str
    ip: str
    device: str
    correlation_id: str


def _by(item: AuditRecord, viewer: User) -> str | None:
    """Who did it, when that was someone else (an administrator); the device column tells the command line."""
    event = item.event
    if event.actor_username is None or event.actor_user_id == viewer.id:
        return None
    return f"by {event.actor_username}"


def _facts(item: AuditRecord) -> str:
    return ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in sorted(item.event.details.items()))


def event_row(item: AuditRecord, viewer: User) -> EventRow:
    moment = item.event.occurred_at.astimezone(UTC)
    return EventRow(
        iso_time=moment.isoformat(timespec="seconds"),
        time=moment.isoformat(sep=" ", timespec="seconds"),
        label=LABELS.get(item.event.event_type, item.event.event_type),
        by=_by(item, viewer),
        facts=_facts(item),
        ip=item.event.client_ip or "—",
        device=item.event.user_agent or "—",
        correlation_id=item.event.correlation_id or "—",
    )


@router.get("/security/events")
def security_log(
    request: Request, ctx: Services, session: PageSession, before: Annotated[int | None, Query(ge=1)] = None
) -> Response:
    user = session.user
    records = audit.my_events(ctx, user.id, limit=PAGE_SIZE, before=before)
    older = records[-1].seq if len(records) == PAGE_SIZE else None
    return render(
        request,
        "security_events.html",
        username=user.username,
        rows=[event_row(item, user) for item in records],
        older=older,
        first_page=before is None,
    )
