"""Organisations over the API: create them, their members and roles, and their two-step policy after a preview.

Every call needs a recent step-up and an administrative role (403 ``admin_required`` otherwise). Instance
administrators create organisations and act on all of them; an organisation's owners and admins change its
settings; its user_admins manage its members but not its settings (403 ``not_permitted``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from nidan.core.models import Method, OrgRole
from nidan.core.organisations import SLUG_PATTERN, Organisation
from nidan.core.policy import (
    MAX_GRACE_DAYS,
    MAX_REMEMBER_DEVICE_DAYS,
    MAX_TOLERATED_FAILURES,
    OrgPolicy,
    TwoFactorPolicy,
)
from nidan.core.usernames import username_key
from nidan.errors import MemberExists, NotPermitted
from nidan.services import organisations
from nidan.web.api.v1.schemas import (
    INVISIBLE_REFUSED,
    NOT_BLANK_LINE_PATTERN,
    JsonBool,
    UsernameInPath,
    documented_pattern,
    json_integer,
)
from nidan.web.deps import Client, ManagerSession, Services
from nidan.web.openapi import errors_documented

router = APIRouter(prefix="/api/v1/admin/orgs", tags=["organisations"])

Slug = Annotated[
    str, Path(min_length=1, max_length=64, description="The organisation's short name.", examples=["platform-team"])
]
Username = UsernameInPath


class PolicyOut(BaseModel):
    two_factor: TwoFactorPolicy = Field(
        description="`optional`, `required_for_admins` (owners, admins and user_admins) or `required_for_all`."
    )
    grace_period_days: int = Field(
        description="Days a member who must have 2FA may still skip setting it up, counted from their first "
        "sign-in under the requirement."
    )
    allowed_methods: list[Method]
    tolerated_failures: int | None = Field(
        description="Wrong codes tolerated before the backoff blocks, for members; null: the instance's setting."
    )
    remember_device_days: int | None = Field(
        description="Days a member's browser may skip the second step once they ask to be remembered there (0: "
        "never); null: the instance's setting (`policy.remember_device_days`). A member of several organisations "
        "gets the smallest."
    )


class OrganisationOut(BaseModel):
    slug: str
    name: str
    created_at: datetime
    members: int = Field(description="How many members it has.")
    policy: PolicyOut


class OrganisationListOut(BaseModel):
    organisations: list[OrganisationOut] = Field(
        description="Every organisation for instance administrators; else those the caller manages."
    )


class MemberOut(BaseModel):
    username: str
    role: OrgRole
    managed: bool = Field(description="The organisation manages the account; false: an outside collaborator.")
    two_factor: bool = Field(description="A second factor is set up.")
    grace_started_at: datetime | None = Field(
        description="Their grace period for setting up 2FA started then (at a sign-in where it was required)."
    )


class OrganisationDetailOut(OrganisationOut):
    member_list: list[MemberOut] = Field(description="Its members, by username.")


class CreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slug: str = Field(
        min_length=1,
        max_length=64,
        description="a-z, 0-9 and '-', starting and ending with a letter or digit, e.g. `platform-team`; it cannot "
        "change later. Upper case and spaces around it are read as the same name.",
        json_schema_extra=documented_pattern(SLUG_PATTERN),
    )
    name: str = Field(
        min_length=1,
        max_length=200,
        description=f"The name people read: printable, on one line. {INVISIBLE_REFUSED}",
        json_schema_extra=documented_pattern(NOT_BLANK_LINE_PATTERN),
    )


#: Integers as JSON Schema has them (``json_integer``), with their bounds.
GraceDays = Annotated[int, Field(ge=0, le=MAX_GRACE_DAYS), BeforeValidator(json_integer)]
ToleratedFailures = Annotated[int, Field(ge=0, le=MAX_TOLERATED_FAILURES), BeforeValidator(json_integer)]
RememberDays = Annotated[int, Field(ge=0, le=MAX_REMEMBER_DEVICE_DAYS), BeforeValidator(json_integer)]


class PolicyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    two_factor: TwoFactorPolicy
    grace_period_days: GraceDays = 0
    allowed_methods: list[Method] = Field(
        default_factory=lambda: list(Method),
        description="`totp` must stay allowed: it is how people set up 2FA.",
        json_schema_extra={"contains": {"const": Method.TOTP.value}},
    )
    tolerated_failures: ToleratedFailures | None = Field(
        default=None,
        description="Wrong codes tolerated before the backoff blocks, for members; null: the instance's setting. An "
        "organisation may be stricter than the instance, never laxer: a count above the instance's "
        "`rate_limit.tolerated_failures` is refused with 422 `tolerance_above_instance`.",
    )
    remember_device_days: RememberDays | None = Field(
        default=None,
        description=f"Days (0 to {MAX_REMEMBER_DEVICE_DAYS}) a member's browser may skip the second step once they "
        "ask to be remembered there; 0: never; null: the instance's setting. A member of several organisations gets "
        "the smallest. A browser is never remembered longer than when it was remembered, nor longer than this now.",
    )


class MemberRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: OrgRole = OrgRole.MEMBER
    managed: JsonBool = Field(
        default=True,
        description="The organisation manages the account (its administrators may reset the user's 2FA); false: "
        "an outside collaborator. Only instance administrators make an account managed (403 not_permitted for "
        "others: they add outside collaborators).",
    )


class PreviewEntryOut(BaseModel):
    username: str
    role: OrgRole
    outcome: Literal["setup_at_next_sign_in", "reminded_until"] = Field(
        description="`setup_at_next_sign_in`: led into setting up 2FA before anything else; `reminded_until`: "
        "reminded and may skip until `until` (the grace period)."
    )
    until: datetime | None


class PreviewOut(BaseModel):
    will_be_asked: list[PreviewEntryOut] = Field(
        description="Members who would be asked to set up two-step verification at their next sign-in."
    )


def _out(organisation: Organisation) -> OrganisationOut:
    return OrganisationOut(
        slug=organisation.slug,
        name=organisation.name,
        created_at=organisation.created_at,
        members=organisation.members,
        policy=_policy_out(organisation.policy),
    )


def _policy_out(policy: OrgPolicy) -> PolicyOut:
    return PolicyOut(
        two_factor=policy.two_factor,
        grace_period_days=policy.grace_period_days,
        allowed_methods=[m for m in Method if m in policy.allowed_methods],
        tolerated_failures=policy.tolerated_failures,
        remember_device_days=policy.remember_device_days,
    )


def _member_out(state: organisations.MemberState) -> MemberOut:
    return MemberOut(
        username=state.member.user.username,
        role=state.member.role,
        managed=state.member.managed,
        two_factor=state.two_factor,
        grace_started_at=state.grace_started_at,
    )


def _detail(view: organisations.OrganisationView) -> OrganisationDetailOut:
    return OrganisationDetailOut(
        **_out(view.organisation).model_dump(), member_list=[_member_out(m) for m in view.members]
    )


@router.get("", response_model=OrganisationListOut, responses=errors_documented(401, 403), summary="Organisations")
def list_organisations(ctx: Services, manager: ManagerSession) -> OrganisationListOut:
    return OrganisationListOut(organisations=[_out(o) for o in organisations.managed_by(ctx, actor=manager.user)])


@router.post(
    "",
    status_code=201,
    response_model=OrganisationOut,
    responses=errors_documented(401, 403, 409, 422),
    summary="Create an organisation (instance administrators); the creator becomes its owner",
    description="It starts with the instance's default policy (`[policy]` in nidan.toml). 409 "
    "`organisation_exists` when the short name is taken.",
)
def create_organisation(body: CreateRequest, ctx: Services, manager: ManagerSession, client: Client) -> OrganisationOut:
    created = organisations.create(ctx, slug=body.slug, name=body.name, actor=manager.user, client=client)
    return _out(organisations.show(ctx, created.slug, actor=manager.user).organisation)


@router.get(
    "/{slug}",
    response_model=OrganisationDetailOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="An organisation: its policy and members",
)
def show_organisation(slug: Slug, ctx: Services, manager: ManagerSession) -> OrganisationDetailOut:
    return _detail(organisations.show(ctx, slug, actor=manager.user))


@router.put(
    "/{slug}/policy",
    response_model=OrganisationOut,
    responses=errors_documented(401, 403, 404, 409, 422),
    summary="Set the organisation's two-step policy (owners, admins, instance administrators)",
    description="Preview first who will be asked to set up 2FA (GET .../policy/preview). Members who must have 2FA "
    "and have none are led into setting it up at their next sign-in, after the grace period; nobody is locked "
    "out. 409 `enable_two_factor_first` when the caller would be required to have 2FA and has none (they would "
    "be first in line). Audited with the old and new policy.",
)
def set_policy(
    slug: Slug, body: PolicyRequest, ctx: Services, manager: ManagerSession, client: Client
) -> OrganisationOut:
    updated = organisations.set_policy(
        ctx,
        slug,
        two_factor=body.two_factor,
        grace_period_days=body.grace_period_days,
        allowed_methods=body.allowed_methods,
        tolerated_failures=body.tolerated_failures,
        remember_device_days=body.remember_device_days,
        actor=manager.user,
        client=client,
    )
    return _out(updated)


@router.get(
    "/{slug}/policy/preview",
    response_model=PreviewOut,
    responses=errors_documented(401, 403, 404, 422),
    summary="Who would be asked to set up 2FA at their next sign-in under a proposed policy (changes nothing)",
    description="Takes each member's other organisations into account. Without `grace_period_days`, the "
    "organisation's current grace period.",
)
def preview_policy(
    slug: Slug,
    ctx: Services,
    manager: ManagerSession,
    two_factor: Annotated[TwoFactorPolicy, Query(description="The proposed requirement.")],
    grace_period_days: Annotated[int | None, Query(ge=0, le=MAX_GRACE_DAYS)] = None,
) -> PreviewOut:
    if grace_period_days is None:
        grace_period_days = organisations.show(ctx, slug, actor=manager.user).organisation.policy.grace_period_days
    proposed = OrgPolicy(two_factor=two_factor, grace_period_days=grace_period_days)
    entries = organisations.preview(ctx, slug, proposed, actor=manager.user)
    return PreviewOut(will_be_asked=[_preview_out(e) for e in entries])


def _preview_out(entry: organisations.PreviewEntry) -> PreviewEntryOut:
    reminded = entry.outcome == organisations.PreviewOutcome.REMINDED_UNTIL
    return PreviewEntryOut(
        username=entry.user.username,
        role=entry.role,
        outcome="reminded_until" if reminded else "setup_at_next_sign_in",
        until=entry.until,
    )


@router.put(
    "/{slug}/members/{username}",
    response_model=MemberOut,
    responses={
        201: {"model": MemberOut, "description": "Added."},
        204: {"description": "Changed; the caller no longer manages the organisation."},
        **errors_documented(401, 403, 404, 409, 422),
    },
    summary="Add a member (201) or change their role and whether the organisation manages them (200)",
    description="Owners and admins may give any role; user_admins manage members and user_admins only. 409 "
    "`last_owner` when this would leave the organisation without an owner. 204 (no body) when callers changed "
    "their own role so that they no longer manage the organisation. Audited.",
)
def put_member(
    slug: Slug,
    username: Username,
    body: MemberRequest,
    response: Response,
    ctx: Services,
    manager: ManagerSession,
    client: Client,
) -> MemberOut | Response:
    try:
        organisations.add_member(
            ctx, slug, username=username, role=body.role, managed=body.managed, actor=manager.user, client=client
        )
        response.status_code = 201
    except MemberExists:
        organisations.change_member(
            ctx, slug, username=username, role=body.role, managed=body.managed, actor=manager.user, client=client
        )
    try:
        view = organisations.show(ctx, slug, actor=manager.user)
    except NotPermitted:  # the caller just gave up their own role there: done, and nothing more to show them
        return Response(status_code=204)
    wanted = username_key(username)
    return next(_member_out(m) for m in view.members if username_key(m.member.user.username) == wanted)


@router.delete(
    "/{slug}/members/{username}",
    status_code=204,
    responses=errors_documented(401, 403, 404, 409, 422),
    summary="Remove a member from the organisation (409 `last_owner` for its last owner). Audited.",
)
def remove_member(slug: Slug, username: Username, ctx: Services, manager: ManagerSession, client: Client) -> Response:
    organisations.remove_member(ctx, slug, username=username, actor=manager.user, client=client)
    return Response(status_code=204)
