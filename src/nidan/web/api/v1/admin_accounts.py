"""Administrators creating and deleting accounts, and making a new set-password link.

Creating an account and making a link are for instance administrators (403 ``admin_required`` for anyone else:
``services.password_links`` says why); deleting follows the rule for acting on a user, so an organisation's owners,
admins and user_admins delete the members their organisation manages (403 ``not_permitted`` otherwise). Every call
needs a recent verification (403 ``reauthentication_required``). The administrator never chooses a password: the
answer carries a one-time link, shown this once, with which the account's owner sets their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from nidan.core.models import InstanceRole
from nidan.services import account_status, audit, password_links
from nidan.services.accounts import EMAIL_PATTERN
from nidan.services.password_links import PasswordLink
from nidan.web.api.v1.admin import REASON_HELP
from nidan.web.api.v1.schemas import (
    CANONICAL_SPELLING,
    NOT_BLANK_LINE_PATTERN,
    USERNAME_RULES,
    UsernameInPath,
    documented_pattern,
)
from nidan.web.deps import AdminSession, Client, ManagerSession, Services
from nidan.web.links import set_password_url
from nidan.web.openapi import errors_documented

router = APIRouter(prefix="/api/v1/admin", tags=["administration"])

LINK_HOURS = int(password_links.LINK_LIFETIME.total_seconds() // 3600)
#: The reason a deletion needs, in the query string (a DELETE has no body here, as for the other DELETEs).
RequiredReason = Annotated[
    str,
    Query(
        min_length=3,
        max_length=audit.MAX_REASON,
        description=f"Required. {REASON_HELP}",
        json_schema_extra=documented_pattern(NOT_BLANK_LINE_PATTERN),
    ),
]


class NewUserRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"username": "hanako", "email": "hanako@example.com", "role": "member"}]},
    )
    username: str = Field(
        min_length=1,
        max_length=256,
        description=f"The new account's username, stored with its case as typed. {CANONICAL_SPELLING} "
        f"{USERNAME_RULES} 409 `username_taken` when the name (in any of its spellings) is taken.",
    )
    email: str = Field(
        min_length=6,
        max_length=254,
        description="The owner's email address (422 `invalid_request` when it does not look like one).",
        json_schema_extra=documented_pattern(EMAIL_PATTERN),
    )
    role: InstanceRole = Field(
        default=InstanceRole.MEMBER,
        description="The instance role: `member`, or `admin` (manages the whole instance).",
    )


class PasswordLinkOut(BaseModel):
    username: str = Field(description="As stored: PRECIS-normalised (RFC 8265), its case kept.")
    set_password_url: str = Field(
        description=f"The one-time link with which the account's owner sets their password, valid {LINK_HOURS} "
        "hours. Shown in this answer only (nidan keeps only a keyed hash of it): pass it on to them, by a channel "
        "you trust. Making a new link makes the earlier one stop working."
    )
    expires_at: datetime = Field(description="When the link stops working.")


class NewUserOut(PasswordLinkOut):
    email: str
    role: str = Field(description="The instance role: `admin` or `member`.")


def _link_out(request: Request, made: PasswordLink) -> PasswordLinkOut:
    return PasswordLinkOut(
        username=made.user.username,
        set_password_url=set_password_url(request, made.token),
        expires_at=made.expires_at,
    )


@router.post(
    "/users",
    status_code=201,
    response_model=NewUserOut,
    responses=errors_documented(401, 403, 409, 422),
    summary="Create an account; its owner sets the password with a one-time link (instance administrators)",
    description=f"The account is created with a password nobody knows; the answer's `set_password_url` (valid "
    f"{LINK_HOURS} hours, shown once) lets its owner set theirs, then sign in and set up two-step verification. "
    "Audited as `user.created` (with `via: password_link`), and the link's use as `password_link.used`. New "
    "accounts belong to the default organisation (members; administrators as owners).",
)
def create_user(
    request: Request, body: NewUserRequest, ctx: Services, admin: AdminSession, client: Client
) -> NewUserOut:
    made = password_links.create_user(
        ctx, username=body.username, email=body.email, role=body.role, actor=admin.user, client=client
    )
    link = _link_out(request, made)
    return NewUserOut(**link.model_dump(), email=made.user.email, role=made.user.role.value)


@router.post(
    "/users/{username}/password-link",
    status_code=201,
    response_model=PasswordLinkOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Make a new one-time link with which the user sets their password (instance administrators)",
    description=f"For an account whose link expired, or someone who lost their password: valid {LINK_HOURS} "
    "hours, shown once; the earlier link stops working. Nothing changes until it is used: then the password is "
    "set, every session of the account ends and its remembered browsers are forgotten (its two-step verification "
    "stays). Audited as `password_link.issued`. Not for one's own account (403 `cannot_act_on_self`).",
)
def new_password_link(
    request: Request, username: UsernameInPath, ctx: Services, admin: AdminSession, client: Client
) -> PasswordLinkOut:
    made = password_links.issue_link(ctx, username=username, actor=admin.user, client=client)
    return _link_out(request, made)


class DeletedOut(BaseModel):
    username: str
    sessions_ended: int = Field(description="Sessions that ended (the account was signed out everywhere).")
    tokens_revoked: int = Field(description="Access tokens and app passwords that stopped working.")
    devices_forgotten: int = Field(description="Remembered browsers forgotten.")
    memberships_removed: int = Field(description="Organisations the account was a member of.")


@router.delete(
    "/users/{username}",
    response_model=DeletedOut,
    responses=errors_documented(401, 403, 404, 409, 422),
    summary="Delete an account and everything it holds (its security log stays)",
    description="In one transaction the account is deleted with its authenticator app and recovery codes, "
    "sessions, access tokens and app passwords, remembered browsers, organisation memberships and links; each "
    "stops working at once. The audit log keeps every event about it (by id and username) and its chain stays "
    "intact; `user.deleted` records the reason. Ids are never given to another account. Not for one's own account "
    "(403 `cannot_act_on_self`), the last instance administrator (409 `last_administrator`) or an organisation's "
    "last owner (409 `last_owner`). Organisation managers delete only members their organisation manages.",
)
def delete_user(
    username: UsernameInPath, reason: RequiredReason, ctx: Services, manager: ManagerSession, client: Client
) -> DeletedOut:
    result = account_status.delete(ctx, username=username, actor=manager.user, client=client, reason=reason)
    return DeletedOut(
        username=result.user.username,
        sessions_ended=result.sessions_ended,
        tokens_revoked=result.tokens_revoked,
        devices_forgotten=result.devices_forgotten,
        memberships_removed=result.memberships_removed,
    )
