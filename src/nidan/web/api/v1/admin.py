"""Administrators helping a user: how they stand, their security log, resetting their 2FA, Atlassian's unenroll,
clearing a backoff block and revoking their tokens.

Every call but the unenroll needs a recent step-up and an administrative role (an instance administrator, or an
organisation's owner, admin or user_admin: 403 ``admin_required`` otherwise); whom a caller may act on is decided
by the services (403 ``not_permitted``). The unenroll follows Atlassian's contract: an instance administrator's
session and their own current TOTP code in the body, which is the step-up for that one call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from nidan.core.backoff import ThrottleState
from nidan.errors import NoEnrollment
from nidan.services import account_status, audit, throttling, tokens, user_admin
from nidan.web.api.v1.events import AuditEventsResponse, Before, Limit, events_response
from nidan.web.api.v1.schemas import (
    INVISIBLE_REFUSED,
    NOT_BLANK_LINE_PATTERN,
    ONE_LINE_PATTERN,
    ClockObservationOut,
    ErrorDetail,
    UsernameInPath,
    clock_observations_out,
    documented_pattern,
)
from nidan.web.deps import Client, InstanceAdmin, ManagerSession, Services
from nidan.web.i18n import catalog_for
from nidan.web.openapi import errors_documented
from nidan.web.problems import error_body

router = APIRouter(prefix="/api/v1/admin", tags=["administration"])

Username = UsernameInPath
REASON_HELP = f"Why, for the security log (e.g. a ticket number): printable, on one line. {INVISIBLE_REFUSED}"
#: The optional reason of a query string: the same rule as in a body.
Reason = Annotated[
    str | None,
    Query(
        max_length=audit.MAX_REASON,
        description=REASON_HELP,
        json_schema_extra=documented_pattern(ONE_LINE_PATTERN),
    ),
]


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
    gate: list[PasswordCounterOut] = Field(
        default_factory=list,
        description="Refusals at the HTTP Basic gate (Git clients) for this username, per address.",
    )


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
def block_status(username: Username, ctx: Services, manager: ManagerSession) -> BlockStatusOut:
    user_admin.require_manager_of(ctx, username=username, actor=manager.user)
    return _block_out(throttling.status(ctx, username))


def _block_out(found: throttling.BlockStatus) -> BlockStatusOut:
    return BlockStatusOut(
        username=found.user.username,
        second_factor=_counter(found.second_factor),
        passwords=[PasswordCounterOut(client_ip=ip, **_counter(state).model_dump()) for ip, state in found.passwords],
        gate=[PasswordCounterOut(client_ip=ip, **_counter(state).model_dump()) for ip, state in found.gate],
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
    admin: ManagerSession,
    client: Client,
    reason: Reason = None,
) -> BlockClearedOut:
    # Permission first: to an organisation's manager an unknown name looks like one they may not touch.
    user = user_admin.require_manager_of(ctx, username=username, actor=admin.user)
    cleared = throttling.clear(ctx, username=username, actor=admin.user, client=client, reason=reason)
    return BlockClearedOut(username=user.username, counters_cleared=cleared)


class TokensRevokedOut(BaseModel):
    username: str
    revoked: int = Field(description="How many access tokens and app passwords stopped working.")


@router.delete(
    "/users/{username}/tokens",
    response_model=TokensRevokedOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Revoke all of a user's access tokens and app passwords (e.g. after a lost phone; audited)",
)
def revoke_tokens(
    username: Username,
    ctx: Services,
    admin: ManagerSession,
    client: Client,
    reason: Reason = None,
) -> TokensRevokedOut:
    user_admin.require_manager_of(ctx, username=username, actor=admin.user)  # unknown names: as for the block
    user, revoked = tokens.revoke_all(ctx, username=username, actor=admin.user, client=client, reason=reason)
    return TokensRevokedOut(username=user.username, revoked=revoked)


# --- users: who they are, how they stand, their log ---------------------------------------------------------------


class UserSummaryOut(BaseModel):
    username: str
    email: str
    role: str = Field(description="The instance role: `admin` or `member`.")
    two_factor_enabled: bool
    registration_required: bool = Field(description="Asked to set up two-step verification again at next sign-in.")
    last_sign_in_at: datetime | None
    disabled: bool = Field(default=False, description="An administrator disabled the account.")


class UserListOut(BaseModel):
    users: list[UserSummaryOut] = Field(description="The users the caller may help, by username.")


class TwoFactorOut(BaseModel):
    enabled: bool
    activated_at: datetime | None
    enrollment_pending: bool = Field(description="An authenticator app was started and not confirmed yet.")
    recovery_codes_remaining: int
    required: bool = Field(description="One of the user's organisations requires it of them.")
    due: datetime | None = Field(description="Required and not set up: the end of the grace period.")
    registration_required: bool = Field(description="Asked to set it up again at the next sign-in.")
    registration_required_at: datetime | None


class MembershipOut(BaseModel):
    organisation: str = Field(description="The organisation's short name (slug).")
    name: str
    role: str = Field(description="`owner`, `admin`, `user_admin` or `member`.")
    managed: bool = Field(description="The organisation manages the account; false: an outside collaborator.")


class UserOverviewOut(BaseModel):
    username: str
    email: str
    role: str
    created_at: datetime
    last_sign_in_at: datetime | None
    two_factor: TwoFactorOut
    clock_observations: list[ClockObservationOut] = Field(
        description="Device-clock drift seen at sign-ins in the last 30 days (a wrong code that matched another time)."
    )
    memberships: list[MembershipOut]
    live_tokens: int = Field(description="Access tokens and app passwords that still work.")
    block: BlockStatusOut
    disabled_at: datetime | None = Field(default=None, description="When an administrator disabled the account.")
    disabled_reason: str | None = Field(default=None, description="The reason given when it was disabled.")


@router.get(
    "/users",
    response_model=UserListOut,
    responses=errors_documented(401, 403),
    summary="The users the caller may help",
    description="Instance administrators see everyone; an organisation's owners, admins and user_admins see the "
    "members their organisations manage (never outside collaborators, higher roles or instance administrators).",
)
def list_users(ctx: Services, manager: ManagerSession) -> UserListOut:
    return UserListOut(
        users=[
            UserSummaryOut(
                username=found.user.username,
                email=found.user.email,
                role=found.user.role.value,
                two_factor_enabled=found.two_factor,
                registration_required=found.user.registration_required_at is not None,
                last_sign_in_at=found.user.last_sign_in_at,
                disabled=found.user.disabled,
            )
            for found in user_admin.managed_user_states(ctx, actor=manager.user)
        ]
    )


@router.get(
    "/users/{username}",
    response_model=UserOverviewOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="How a user stands: 2FA, clock drift, organisations, tokens, blocks",
)
def user_overview(username: Username, ctx: Services, manager: ManagerSession) -> UserOverviewOut:
    found = user_admin.overview(ctx, username=username, actor=manager.user)
    user, state = found.user, found.security
    return UserOverviewOut(
        username=user.username,
        email=user.email,
        role=user.role.value,
        created_at=user.created_at,
        last_sign_in_at=user.last_sign_in_at,
        two_factor=TwoFactorOut(
            enabled=state.totp_enabled,
            activated_at=state.totp_activated_at,
            enrollment_pending=state.totp_enrollment_pending,
            recovery_codes_remaining=state.recovery_codes_remaining,
            required=state.two_factor_required,
            due=state.two_factor_due,
            registration_required=state.registration_required,
            registration_required_at=found.registration_required_at,
        ),
        clock_observations=clock_observations_out(state.clock_observations),
        memberships=[
            MembershipOut(
                organisation=m.organisation.slug, name=m.organisation.name, role=m.role.value, managed=m.managed
            )
            for m in found.memberships
        ],
        live_tokens=found.live_tokens,
        block=_block_out(found.block),
        disabled_at=user.disabled_at,
        disabled_reason=user.disabled_reason,
    )


@router.get(
    "/users/{username}/events",
    response_model=AuditEventsResponse,
    responses=errors_documented(401, 403, 404, 422),
    summary="A user's security log: events about their account or done by them, newest first",
)
def user_events(
    username: Username, ctx: Services, manager: ManagerSession, limit: Limit = audit.DEFAULT_PAGE, before: Before = None
) -> AuditEventsResponse:
    user = user_admin.require_manager_of(ctx, username=username, actor=manager.user)
    return events_response(audit.my_events(ctx, user.id, limit=limit, before=before), limit)


# --- users: resetting and requiring two-step verification ----------------------------------------------------------


class ReasonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(
        min_length=3,
        max_length=audit.MAX_REASON,
        description=REASON_HELP,
        json_schema_extra=documented_pattern(NOT_BLANK_LINE_PATTERN),
    )


class ResetOut(BaseModel):
    username: str
    had_two_factor: bool = Field(description="An authenticator app (or one being set up) was removed.")
    sessions_ended: int = Field(description="The user was signed out everywhere: this many sessions ended.")


class RegistrationRequiredOut(BaseModel):
    username: str


@router.post(
    "/users/{username}/mfa/reset",
    response_model=ResetOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Reset a user's 2FA (a lost phone): they set it up again at their next sign-in",
    description="Removes the user's authenticator app and recovery codes, signs them out everywhere, and leads "
    "their next sign-in into setting 2FA up again (`mfa_setup_required`, reason `administrator`), whatever their "
    "organisations' policy. Audited with the reason. Not for one's own account (403 `cannot_act_on_self`).",
)
def reset_two_factor(
    username: Username, body: ReasonRequest, ctx: Services, manager: ManagerSession, client: Client
) -> ResetOut:
    result = user_admin.reset_two_factor(ctx, username=username, actor=manager.user, client=client, reason=body.reason)
    return ResetOut(
        username=result.user.username, had_two_factor=result.had_two_factor, sessions_ended=result.sessions_ended
    )


@router.post(
    "/users/{username}/mfa/require-registration",
    response_model=RegistrationRequiredOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Require a user to set up their 2FA again at their next sign-in",
    description="Nothing is removed now: at their next sign-in (after their current second factor, if any) the "
    "user sets up a new authenticator app before anything else. Audited with the reason.",
)
def require_registration(
    username: Username, body: ReasonRequest, ctx: Services, manager: ManagerSession, client: Client
) -> RegistrationRequiredOut:
    user = user_admin.require_registration(
        ctx, username=username, actor=manager.user, client=client, reason=body.reason
    )
    return RegistrationRequiredOut(username=user.username)


# --- users: disabling and enabling an account ----------------------------------------------------------------------


class DisabledOut(BaseModel):
    username: str
    disabled: bool = Field(description="Always true: the account is disabled.")
    already: bool = Field(description="It was disabled already: nothing changed.")
    sessions_ended: int = Field(description="Sessions that ended (the user is signed out everywhere).")
    tokens_revoked: int = Field(description="Access tokens and app passwords that stopped working.")
    devices_forgotten: int = Field(description="Remembered browsers forgotten.")


class EnabledOut(BaseModel):
    username: str
    disabled: bool = Field(description="Always false: the account can sign in again.")


@router.post(
    "/users/{username}/disable",
    response_model=DisabledOut,
    responses=errors_documented(401, 403, 404, 409, 422),
    summary="Disable an account: no sign-in, and its sessions, tokens and remembered browsers stop working",
    description="In one transaction the account is disabled, signed out everywhere, its access tokens and app "
    "passwords are revoked and its remembered browsers forgotten. While disabled, sign-in answers 403 "
    "`account_disabled` after a correct password (a wrong one stays 401 `invalid_credentials`), the Basic gate "
    "refuses it and the verify API answers `ok: false` with `account_disabled`. Audited as `user.disabled` with "
    "the reason. Not for one's own account (403 `cannot_act_on_self`), nor for the last instance administrator "
    "(409 `last_administrator`).",
)
def disable_user(
    username: Username, body: ReasonRequest, ctx: Services, manager: ManagerSession, client: Client
) -> DisabledOut:
    result = account_status.disable(ctx, username=username, actor=manager.user, client=client, reason=body.reason)
    return DisabledOut(
        username=result.user.username,
        disabled=True,
        already=result.already,
        sessions_ended=result.sessions_ended,
        tokens_revoked=result.tokens_revoked,
        devices_forgotten=result.devices_forgotten,
    )


@router.post(
    "/users/{username}/enable",
    response_model=EnabledOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Enable a disabled account again: it can sign in (its revoked tokens stay revoked)",
    description="Audited as `user.enabled` with the reason. Tokens and app passwords revoked when it was disabled "
    "stay revoked, and its remembered browsers ask for the second step again.",
)
def enable_user(
    username: Username, body: ReasonRequest, ctx: Services, manager: ManagerSession, client: Client
) -> EnabledOut:
    user = account_status.enable(ctx, username=username, actor=manager.user, client=client, reason=body.reason)
    return EnabledOut(username=user.username, disabled=False)


class UnenrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    totp_code: str = Field(
        min_length=1, max_length=64, description="The calling administrator's own current code from their app."
    )


class NoEnrollmentResponse(BaseModel):
    message: str = Field(description="`No enrollment found for this user.`")
    error: ErrorDetail


UNENROLL_DESCRIPTION = """
Atlassian's unenroll contract. The caller is an instance administrator with a session (`Authorization: Bearer`)
and an authenticator app of their own; the body's `totp_code` (their current code) is the step-up for this one
call, spent like a sign-in code (each code works once; wrong ones count towards their backoff). Answers:

* **204**: the user's authenticator app and recovery codes are removed and they are signed out everywhere; at their
  next sign-in they set 2FA up again if a policy requires it.
* **400** `{"message": "No enrollment found for this user.", "error": {...}}`: the user has no second factor.
* **401**: no session, or a wrong or already used code.
* **403**: not an instance administrator (`admin_required`), or one's own account (`cannot_act_on_self`).
* **404**: no such user (`user_not_found`).
"""


@router.delete(
    "/users/{username}/mfa",
    status_code=204,
    responses={
        400: {"model": NoEnrollmentResponse, "description": "The user has no second factor to remove."},
        **errors_documented(401, 403, 404, 422, 429),
    },
    summary="Unenroll a user's second factors (Atlassian's contract: the admin's own TOTP code in the body)",
    description=UNENROLL_DESCRIPTION,
)
def unenroll(
    request: Request, username: Username, body: UnenrollRequest, ctx: Services, admin: InstanceAdmin, client: Client
) -> Response:
    try:
        user_admin.unenroll(ctx, admin=admin, username=username, totp_code=body.totp_code, client=client)
    except NoEnrollment as exc:
        # Atlassian's clients read the top-level message; everyone else reads the usual error body beside it.
        said = catalog_for(request).text(*exc.texts)
        return JSONResponse({"message": said, **error_body(exc.code, said)}, status_code=400)
    return Response(status_code=204)
