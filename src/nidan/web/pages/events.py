"""The signed-in person's security log: what happened to their account, when, and from where.

Everything in it is said in words in the reader's language: the event, its details (never a raw key), the device
(``Chrome on Windows``, ``nidan command line``; the User-Agent itself only in the cell's title) and every time in
the reader's time zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from nidan.core import user_agents
from nidan.core.audit import AuditRecord, Detail, EventType
from nidan.core.models import User
from nidan.services import audit
from nidan.texts import Text, _, ngettext
from nidan.web import i18n
from nidan.web.deps import Services
from nidan.web.i18n import LANGUAGE_NAMES
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.rendering import render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50

#: What each event means, said to the account's owner.
LABELS: dict[str, Text] = {
    EventType.SIGN_IN_SUCCEEDED: _("Signed in"),
    EventType.SIGN_IN_PASSWORD_FAILED: _("Sign-in failed: wrong password"),
    EventType.SIGN_IN_SECOND_FACTOR_FAILED: _("Sign-in failed: wrong code"),
    EventType.RECOVERY_CODE_USED: _("Recovery code used"),
    EventType.TOTP_ENROLLED: _("Two-step verification turned on"),
    EventType.TOTP_CHANGED: _("Authenticator app changed"),
    EventType.TOTP_REMOVED: _("Two-step verification turned off"),
    EventType.RECOVERY_CODES_REGENERATED: _("New recovery codes made (the old ones stopped working)"),
    EventType.BACKOFF_BLOCKED: _("Blocked for a while after failed attempts"),
    EventType.BACKOFF_LOCKED: _("Verification locked after too many failed attempts"),
    EventType.BACKOFF_CLEARED: _("Block cleared by an administrator"),
    EventType.STEP_UP_SUCCEEDED: _("Confirmed it was you (to change settings)"),
    EventType.STEP_UP_FAILED: _("Confirming it was you failed"),
    EventType.SESSION_REVOKED: _("Signed out"),
    EventType.SESSIONS_REVOKED_ALL: _("Signed out everywhere"),
    EventType.USER_CREATED: _("Account created"),
    EventType.USER_DISABLED: _("Account disabled by an administrator"),
    EventType.USER_ENABLED: _("Account enabled again by an administrator"),
    EventType.USER_DELETED: _("Account deleted by an administrator"),
    EventType.USER_PASSWORD_SET: _("Password changed"),
    EventType.SETUP_COMPLETED: _("First-time setup completed"),
    EventType.TOKEN_CREATED: _("Access token or app password created"),
    EventType.TOKEN_REVOKED: _("Access token or app password revoked"),
    EventType.TOKENS_REVOKED_ALL: _("All access tokens and app passwords revoked"),
    EventType.BASIC_AUTH_FAILED: _("Git or app sign-in refused (password or token)"),
    EventType.APPLICATION_ADDED: _("Application registered for the verify API"),
    EventType.APPLICATION_REMOVED: _("Application removed from the verify API"),
    EventType.VERIFY_SUCCEEDED: _("Code accepted by an application"),
    EventType.VERIFY_FAILED: _("Code refused by an application"),
    EventType.SIGN_IN_SETUP_REQUIRED: _("Signed in: two-step verification must be set up first"),
    EventType.TWO_FACTOR_RESET: _("Two-step verification reset by an administrator"),
    EventType.TWO_FACTOR_UNENROLLED: _("Two-step verification removed by an administrator"),
    EventType.REGISTRATION_REQUIRED: _("Asked to set up two-step verification again"),
    EventType.ORGANISATION_CREATED: _("Organisation created"),
    EventType.ORGANISATION_POLICY_CHANGED: _("Organisation's two-step policy changed"),
    EventType.MEMBER_ADDED: _("Added to an organisation"),
    EventType.MEMBER_CHANGED: _("Role in an organisation changed"),
    EventType.MEMBER_REMOVED: _("Removed from an organisation"),
    EventType.ADMIN_RECOVERED: _("Administrator access recovered on the server"),
    EventType.RECOVERY_LINK_USED: _("Recovery link used"),
    EventType.PASSWORD_LINK_ISSUED: _("Link to set a password made by an administrator"),
    EventType.PASSWORD_LINK_USED: _("Password set with a one-time link"),
    EventType.DEFAULT_METHOD_CHANGED: _("Default verification method changed"),
    EventType.PREFERENCES_CHANGED: _("Language or time zone changed"),
    EventType.PASSWORD_CHANGED: _("Password changed"),
    EventType.PASSWORD_CHANGE_FAILED: _("Password change refused: the current password was wrong"),
    EventType.REMEMBERED_DEVICE_ADDED: _("Browser remembered: it skips the second step"),
    EventType.REMEMBERED_DEVICE_REPLAYED: _("Remembered browser forgotten: its token was used twice (copied?)"),
    EventType.REMEMBERED_DEVICE_FORGOTTEN: _("Remembered browser forgotten"),
    EventType.REMEMBERED_DEVICES_FORGOTTEN: _("All remembered browsers forgotten by an administrator"),
}


#: How a step was taken (the ``method`` detail).
_METHODS: dict[str, Text] = {
    "totp": _("with the authenticator app"),
    "recovery_code": _("with a recovery code"),
    "password": _("with the password"),
    "totp_setup": _("by setting up the authenticator app"),
    "recovery_link": _("with a recovery link"),
}
#: Why, when nidan gave the reason (administrators write theirs in their own words).
_REASONS: dict[str, Text] = {
    "policy": _("an organisation requires two-step verification"),
    "administrator": _("an administrator asked for it"),
    "password_set": _("the password was set by someone else"),
    "signed_out_elsewhere": _("signed out on every other device"),
    "current_password_wrong": _("the current password was wrong"),
    "token_unknown": _("no such token"),
    "token_revoked": _("the token was revoked"),
    "token_expired": _("the token has expired"),
    "scope_missing": _("the token lacks the scope this needs"),
    "password_incorrect": _("wrong password"),
    "password_disabled": _("a password is not accepted here: use a token"),
    "two_factor_enabled": _("two-step verification is on: use a token instead of the password"),
    "two_factor_required": _("two-step verification is required: use a token instead of the password"),
}
#: The events whose ``reason`` is one of ``_REASONS`` (the others carry what an administrator wrote).
_REASONS_FROM_NIDAN = {
    EventType.SIGN_IN_SETUP_REQUIRED,
    EventType.SESSIONS_REVOKED_ALL,
    EventType.PASSWORD_CHANGE_FAILED,
    EventType.BASIC_AUTH_FAILED,
}
#: What a block counts (the ``scope`` of the backoff events).
_THROTTLE_SCOPES: dict[str, Text] = {
    "second_factor": _("for the second step"),
    "password": _("for passwords from one address"),
    "password_ip": _("for passwords from one address, whatever the username"),
    "gate": _("for Git and app sign-ins from one address"),
    "gate_ip": _("for Git and app sign-ins from one address, whatever the username"),
}
_ROLES: dict[str, Text] = {
    "owner": _("role: owner"),
    "admin": _("role: administrator"),
    "user_admin": _("role: user administrator"),
    "member": _("role: member"),
}
_KINDS: dict[str, Text] = {
    "personal_access_token": _("personal access token"),
    "app_password": _("app password"),
}
#: An organisation's two-step policy (``from`` and ``to`` of a policy change), named as the admin console names it.
_POLICIES: dict[str, Text] = {
    "optional": _("Optional"),
    "required_for_admins": _("Required for administrators"),
    "required_for_all": _("Required for everyone"),
}
_ROLE_NAMES: dict[str, Text] = {
    "owner": _("Owner"),
    "admin": _("Admin"),
    "user_admin": _("User admin"),
    "member": _("Member"),
}
#: The methods an organisation allows (``allowed_methods``).
_METHOD_NAMES: dict[str, Text] = {
    "totp": _("authenticator app"),
    "recovery_code": _("recovery codes"),
}


@dataclass(frozen=True, slots=True)
class _Moment:
    """A stored time inside a sentence: shown in the reader's language and time zone when the page is rendered."""

    value: datetime

    def __str__(self) -> str:
        return i18n.moment(self.value)


@dataclass(frozen=True, slots=True)
class _Listing:
    """Words to list inside a sentence, each in the reader's language when the page is rendered."""

    items: tuple[Text, ...]

    def __str__(self) -> str:
        said = i18n.current()
        return said.gettext(", ").join(item.render(said) for item in self.items)


def _moment(value: str) -> _Moment | str:
    """A time the log stored as ISO 8601 text, to show in the reader's zone (as it is when it is not one)."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    return _Moment(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


@dataclass(frozen=True, slots=True)
class EventRow:
    iso_time: str
    #: Shown in the reader's time zone, to the second (the ``exactly`` filter).
    moment: datetime
    #: Rendered in the page's language (``| said``), as are ``by`` and each of ``facts``.
    label: Text
    by: Text | None
    facts: tuple[Text, ...]
    ip: str
    #: What sent the request, in words (``None``: nothing was sent); the User-Agent itself is for the cell's title.
    device: Text | None
    user_agent: str
    correlation_id: str


def _by(item: AuditRecord, viewer: User) -> Text | None:
    """Who did it, when that was someone else (an administrator); the device column tells the command line."""
    event = item.event
    if event.actor_username is None or event.actor_user_id == viewer.id:
        return None
    return _("by %(name)s", name=event.actor_username)


def _number(value: Detail) -> int:
    return value if isinstance(value, int) else 0


def _browser(described: str) -> Text:
    """A browser as the log stored it (``Chrome on Windows``, in English) in the reader's words."""
    browser, on, system = described.partition(" on ")
    if not on:
        return _("Unknown browser") if browser == "Unknown browser" else Text(browser)
    if browser == "Unknown browser":
        return _("Unknown browser on %(system)s", system=system)
    return _("%(browser)s on %(system)s", browser=browser, system=system)


def _fact(event_type: str, key: str, value: Detail, details: Mapping[str, Detail]) -> Text | None:
    """One detail of an event as words; ``None``: nothing worth saying (``replayed: False``)."""
    n = _number(value)
    match key:
        case "method" if details.get("replayed") is True:
            return None  # said with "replayed"
        case "method" if isinstance(value, str) and value in _METHODS:
            return _METHODS[value]
        case "replayed":
            if value is not True:
                return None
            if details.get("method") == "recovery_code":
                return _("a recovery code that was already used")
            return _("a code that was already used")
        case "second_factor" if value == "remembered_device":
            return _("the second step was skipped on a remembered browser")
        case "clock_offset_seconds" if isinstance(value, int):
            if value >= 0:
                return ngettext(
                    "the device clock was %(n)d second ahead", "the device clock was %(n)d seconds ahead", n
                )
            return ngettext(
                "the device clock was %(n)d second behind", "the device clock was %(n)d seconds behind", abs(n)
            )
        case "position" if isinstance(value, int):
            return _("code number %(position)d of the set", position=value)
        case "recovery_codes" if isinstance(value, int):
            return ngettext("%(n)d new recovery code", "%(n)d new recovery codes", n)
        case "remembered_devices_forgotten":
            return ngettext("%(n)d remembered browser forgotten", "%(n)d remembered browsers forgotten", n)
        case "count" if event_type == EventType.REMEMBERED_DEVICES_FORGOTTEN:
            return ngettext("%(n)d remembered browser forgotten", "%(n)d remembered browsers forgotten", n)
        case "days" if isinstance(value, int):
            return ngettext("remembered for %(n)d day", "remembered for %(n)d days", n)
        case "browser" if isinstance(value, str):
            return _browser(value)
        case "device_id":
            return _("browser id: %(id)s", id=value)
        case "token_id":
            return _("token id: %(id)s", id=value)
        case "kind" if isinstance(value, str) and value in _KINDS:
            return _KINDS[value]
        case "scopes":
            return _("scopes: %(scopes)s", scopes=value)
        case "expires_at":
            return _("does not expire") if value is None else _("expires on %(day)s", day=str(value)[:10])
        case "tokens":
            return ngettext("%(n)d token revoked", "%(n)d tokens revoked", n)
        case "sessions" | "sessions_ended":
            return ngettext("%(n)d session ended", "%(n)d sessions ended", n)
        case "had_two_factor":
            return _("two-step verification was on") if value else _("two-step verification was not on")
        case "failures":
            return ngettext("after %(n)d failed attempt", "after %(n)d failed attempts", n)
        case "blocked_seconds":
            return ngettext("blocked for %(n)d second", "blocked for %(n)d seconds", n)
        case "scope" if event_type in (EventType.BACKOFF_BLOCKED, EventType.BACKOFF_LOCKED):
            return _THROTTLE_SCOPES.get(str(value))
        case "scope":
            return _("scope asked for: %(scope)s", scope=value)
        case "username_known":
            return None if value else _("no user has that name")
        case "method_available":
            return None if value else _("that method is not set up")
        case "counters" | "counters_cleared":
            return ngettext("%(n)d block cleared", "%(n)d blocks cleared", n)
        case "via" if value == "password":
            return _("with a password")
        case "via" if value == "token":
            return _("with a token")
        case "via" if value == "unenroll":
            return _("through the unenroll API")
        case "via" if value == "password_link":
            return _("its owner sets the password with a one-time link")
        case "link_valid_hours" if isinstance(value, int):
            return ngettext("the link works for %(n)d hour", "the link works for %(n)d hours", n)
        case "memberships_removed":
            return ngettext("%(n)d organisation membership removed", "%(n)d organisation memberships removed", n)
        case "reason" if event_type in _REASONS_FROM_NIDAN and str(value) in _REASONS:
            return _REASONS[str(value)]
        case "reason":
            return _("reason: %(reason)s", reason=value)
        case "role" if str(value) in _ROLES:
            return _ROLES[str(value)]
        case "managed":
            return _("managed by the organisation") if value else _("not managed by the organisation")
        case "app":
            return _("app: %(app)s", app=value)
        case "organisation":
            return _("organisation: %(organisation)s", organisation=value)
        case "locale":
            return _("language: %(language)s", language=LANGUAGE_NAMES.get(str(value), value))
        case "time_zone":
            return _("time zone: %(zone)s", zone=value)
        case "rotated_at" if isinstance(value, str):
            return _("its token was renewed at %(time)s", time=_moment(value))
        case "two_factor_due" if isinstance(value, str):
            return _("two-step verification due by %(time)s", time=_moment(value))
    return _policy_fact(event_type, key, value)


def _policy_fact(event_type: str, key: str, value: Detail) -> Text | None:
    """The details of organisations, their policies and roles, and of sessions, in words."""
    n = _number(value)
    match key:
        case "from" | "to" if event_type == EventType.ORGANISATION_POLICY_CHANGED and str(value) in _POLICIES:
            policy = _POLICIES[str(value)]
            return _("was: %(policy)s", policy=policy) if key == "from" else _("now: %(policy)s", policy=policy)
        case "from" if event_type == EventType.MEMBER_CHANGED and str(value) in _ROLE_NAMES:
            return _("previous role: %(role)s", role=_ROLE_NAMES[str(value)])
        case "grace_period_days" if isinstance(value, int):
            return ngettext("grace period: %(n)d day", "grace period: %(n)d days", n)
        case "allowed_methods" if isinstance(value, str):
            names = tuple(_METHOD_NAMES.get(m) or Text(m) for m in value.split())
            return _("methods allowed: %(methods)s", methods=_Listing(names))
        case "tolerated_failures" if value is None:
            return _("failures tolerated: the instance's setting")
        case "tolerated_failures" if isinstance(value, int):
            return ngettext("%(n)d failure tolerated before a block", "%(n)d failures tolerated before a block", n)
        case "remember_device_days" if value is None:
            return _("browsers remembered: the instance's setting")
        case "remember_device_days" if value == 0:
            return _("browsers are not remembered")
        case "remember_device_days" if isinstance(value, int):
            return ngettext("browsers remembered for %(n)d day", "browsers remembered for %(n)d days", n)
        case "tokens_revoked":
            return ngettext("%(n)d token revoked", "%(n)d tokens revoked", n)
        case "session_id":
            return _("session id: %(id)s", id=value)
        case "current":
            return _("the session in use") if value else None
        case "from":
            return _("from: %(value)s", value=value)
        case "to":
            return _("to: %(value)s", value=value)
    return _("%(detail)s: %(value)s", detail=key.replace("_", " "), value=value)
    return _("%(detail)s: %(value)s", detail=key.replace("_", " "), value=value)


def _facts(item: AuditRecord) -> tuple[Text, ...]:
    """The event's details in words, in a stable order."""
    event = item.event
    said = (_fact(event.event_type, key, value, event.details) for key, value in sorted(event.details.items()))
    return tuple(fact for fact in said if fact is not None)


def event_row(item: AuditRecord, viewer: User) -> EventRow:
    moment = item.event.occurred_at.astimezone(UTC)
    return EventRow(
        iso_time=moment.isoformat(timespec="seconds"),
        moment=moment,
        label=LABELS.get(item.event.event_type) or Text(item.event.event_type),
        by=_by(item, viewer),
        facts=_facts(item),
        ip=item.event.client_ip or "—",
        device=user_agents.device(item.event.user_agent) if item.event.user_agent else None,
        user_agent=item.event.user_agent or "",
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
