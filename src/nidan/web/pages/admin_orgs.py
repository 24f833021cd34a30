"""The admin console's page about one organisation: its two-step policy and its members.

Changing the policy is two steps: the form posts to a preview that lists who will be asked to set up two-step
verification at their next sign-in (or reminded until a date, during a grace period), and only "Apply" (the same
values again, with the CSRF token) changes it. Owners and admins change the policy; user admins see it and manage
members. Every change needs a recent verification; the services decide who may do what, and the refusals that are
part of the work (the last owner, a member already there, an administrator without 2FA requiring it of everyone)
are shown on the page, next to the form they concern.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.datastructures import FormData

from nidan.core.models import Method, OrgRole, User
from nidan.core.organisations import Member
from nidan.core.policy import MAX_GRACE_DAYS, MAX_REMEMBER_DEVICE_DAYS, OrgPolicy, TwoFactorPolicy, checked_policy
from nidan.core.roles import (
    Standing,
    grantable_roles,
    is_instance_admin,
    may_change_settings,
    may_edit_member,
    may_make_managed,
)
from nidan.errors import (
    EnableTwoFactorFirst,
    InvalidInput,
    LastOwner,
    MemberExists,
    MemberNotFound,
    NidanError,
    NotPermitted,
    UserNotFound,
)
from nidan.services import organisations, signin, user_admin
from nidan.services.context import ServiceContext
from nidan.services.organisations import OrganisationView, PreviewOutcome
from nidan.texts import Text, _
from nidan.web.deps import Client, Services
from nidan.web.pages.admin import POLICY_LABELS, ROLE_LABELS, console_gate, org_path, user_key, user_path
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm
from nidan.web.pages.csrf import field as form_field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render
from nidan.web.pages.stepup import confirm_if_needed
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

PREFIX = "/admin/orgs"

Slug = Annotated[str, Path(min_length=1, max_length=128)]
Username = Annotated[str, Path(min_length=1, max_length=256)]

#: The failures that concern a form on the page, shown next to it.
PAGE_ERRORS = (InvalidInput, MemberExists, MemberNotFound, LastOwner, UserNotFound, NotPermitted)


@dataclass(frozen=True, slots=True)
class Failure:
    #: The form it concerns: ``policy``, ``add`` or ``members``.
    form: str
    details: SupportDetails


@dataclass(frozen=True, slots=True)
class PolicyFields:
    """The policy form's values as text (what was typed, or the current policy)."""

    two_factor: str
    grace_period_days: str
    methods: frozenset[str]
    tolerated_failures: str
    #: Empty: the instance's setting.
    remember_device_days: str = ""

    @classmethod
    def of(cls, policy: OrgPolicy) -> PolicyFields:
        tolerated = "" if policy.tolerated_failures is None else str(policy.tolerated_failures)
        remember = "" if policy.remember_device_days is None else str(policy.remember_device_days)
        methods = frozenset(m.value for m in policy.allowed_methods)
        return cls(policy.two_factor.value, str(policy.grace_period_days), methods, tolerated, remember)

    @classmethod
    def read(cls, form: FormData) -> PolicyFields:
        methods = {v[:32] for v in form.getlist("methods")[: 2 * len(Method)] if isinstance(v, str)}
        return cls(
            two_factor=form_field(form, "two_factor", 64),
            grace_period_days=form_field(form, "grace_period_days", 16).strip(),
            methods=frozenset(methods | {Method.TOTP.value}),
            tolerated_failures=form_field(form, "tolerated_failures", 16).strip(),
            remember_device_days=form_field(form, "remember_device_days", 16).strip(),
        )

    def policy(self, instance_tolerated: int) -> OrgPolicy:
        """The policy these fields ask for; ``InvalidInput`` naming the field that is wrong."""
        try:
            two_factor = TwoFactorPolicy(self.two_factor)
        except ValueError:
            raise InvalidInput(_("Choose whether two-step verification is optional or required.")) from None
        grace = _number(self.grace_period_days, _("The grace period is 0 to %(days)d days.", days=MAX_GRACE_DAYS))
        tolerated = None
        if self.tolerated_failures:
            tolerated = _number(self.tolerated_failures, _("Tolerated failures are 0 to 1000, or empty."))
        remember = None
        if self.remember_device_days:
            remember = _number(
                self.remember_device_days,
                _(
                    "A browser may be remembered for 0 to %(most)d days, or leave it empty.",
                    most=MAX_REMEMBER_DEVICE_DAYS,
                ),
            )
        methods = [m for m in Method if m.value in self.methods]
        return checked_policy(
            two_factor,
            grace,
            methods,
            tolerated,
            instance_tolerated=instance_tolerated,
            remember_device_days=remember,
        )


def _number(value: str, message: Text) -> int:
    if not value:
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 6:
        raise InvalidInput(message)
    return int(value)


@dataclass(frozen=True, slots=True)
class MemberRow:
    state: organisations.MemberState
    #: The signed-in person may change this member's role (and remove them).
    editable: bool
    #: The signed-in person may open this member's page in the console.
    helpable: bool


@dataclass(frozen=True, slots=True)
class NewMember:
    username: str = ""
    role: str = OrgRole.MEMBER.value
    #: Only an instance administrator makes an account managed; the page starts with that box ticked for them.
    managed: bool = False


@dataclass(frozen=True, slots=True)
class OrgAccess:
    """What the signed-in person may change here, as ``core.roles`` decides it, so the page offers only that (the
    services ask the same functions again before they act)."""

    view: OrganisationView
    standing: Standing
    #: May change the organisation's settings (its policy; owners and admins).
    settings: bool
    #: The roles they may give: their own and below.
    roles: tuple[OrgRole, ...]
    #: May make an account managed by the organisation (instance administrators).
    make_managed: bool

    def may_change(self, member: Member) -> bool:
        return may_edit_member(self.standing, role=member.role)


def _access(ctx: ServiceContext, session: signin.CurrentSession, slug: str) -> OrgAccess:
    """The organisation as its manager sees it (``NotPermitted`` for anyone else), and what they may change."""
    console_gate(ctx, session)
    return org_access(organisations.show(ctx, slug, actor=session.user), session.user)


def org_access(view: OrganisationView, actor: User) -> OrgAccess:
    """What ``actor`` may change in the organisation ``view`` shows (their role there read from its members)."""
    mine = next((m.member.role for m in view.members if m.member.user.id == actor.id), None)
    standing = Standing(is_instance_admin(actor), mine)
    return OrgAccess(
        view, standing, may_change_settings(standing), grantable_roles(standing), may_make_managed(standing)
    )


def _org_page(
    request: Request,
    ctx: ServiceContext,
    session: signin.CurrentSession,
    slug: str,
    *,
    status: int = 200,
    failure: Failure | None = None,
    policy: PolicyFields | None = None,
    new_member: NewMember | None = None,
) -> Response:
    access = _access(ctx, session, slug)
    organisation = access.view.organisation
    helpable = {u.id for u in user_admin.managed_users(ctx, actor=session.user)}
    rows = [
        MemberRow(
            state,
            editable=access.may_change(state.member),
            helpable=state.member.user.id in helpable,
        )
        for state in access.view.members
    ]
    return render(
        request,
        "admin_org.html",
        status=status,
        username=session.user.username,
        organisation=organisation,
        access=access,
        rows=rows,
        policy=policy or PolicyFields.of(organisation.policy),
        policy_labels=POLICY_LABELS,
        role_labels=ROLE_LABELS,
        max_grace_days=MAX_GRACE_DAYS,
        instance_tolerance=ctx.backoff.tolerated_failures,
        max_remember_days=MAX_REMEMBER_DEVICE_DAYS,
        instance_remember_days=ctx.remember_device_days,
        new_member=new_member or NewMember(managed=access.make_managed),
        failure=failure,
        path=org_path(organisation.slug),
        user_path=user_path,
        user_key=user_key,
    )


def _fail(form: str, exc: NidanError, session: signin.CurrentSession) -> Failure:
    return Failure(form, problem(exc, session.user.username))


def _org_gate(
    request: Request, ctx: ServiceContext, session: signin.CurrentSession, slug: str, *, settings: bool = False
) -> tuple[OrgAccess, Response | None]:
    """Managers of the organisation only (403 otherwise), then "Confirm it's you" when the verification is old;
    ``settings``: owners and admins only (a user admin is not offered the policy form, nor its preview)."""
    access = _access(ctx, session, slug)
    if settings and not access.settings:
        raise NotPermitted(
            _("Only the organisation's owners and admins (and instance administrators) change its policy.")
        )
    return access, confirm_if_needed(request, ctx, session, org_path(access.view.organisation.slug))


@router.get(PREFIX + "/{slug}")
def org_page(request: Request, slug: Slug, ctx: Services, session: PageSession) -> Response:
    return _org_page(request, ctx, session, slug)


# --- the policy: preview, then apply -------------------------------------------------------------------------------


def _preview_page(
    request: Request,
    ctx: ServiceContext,
    session: signin.CurrentSession,
    slug: str,
    fields: PolicyFields,
    proposed: OrgPolicy,
    *,
    status: int = 200,
    failure: SupportDetails | None = None,
) -> Response:
    access = _access(ctx, session, slug)
    entries = organisations.preview(ctx, slug, proposed, actor=session.user)
    organisation = access.view.organisation
    return render(
        request,
        "admin_org_preview.html",
        status=status,
        username=session.user.username,
        organisation=organisation,
        current=organisation.policy,
        proposed=proposed,
        fields=fields,
        setup=[e for e in entries if e.outcome == PreviewOutcome.SETUP_AT_NEXT_SIGN_IN],
        reminded=[e for e in entries if e.outcome == PreviewOutcome.REMINDED_UNTIL],
        policy_labels=POLICY_LABELS,
        role_labels=ROLE_LABELS,
        instance_tolerance=ctx.backoff.tolerated_failures,
        instance_remember_days=ctx.remember_device_days,
        first_in_line=failure is not None and failure.code == EnableTwoFactorFirst.code,
        problem=failure,
        path=org_path(organisation.slug),
        user_path=user_path,
    )


@router.post(PREFIX + "/{slug}/policy/preview")
def preview_policy(request: Request, slug: Slug, form: CheckedForm, ctx: Services, session: PageSession) -> Response:
    _, ask = _org_gate(request, ctx, session, slug, settings=True)
    if ask:
        return ask
    fields = PolicyFields.read(form)
    try:
        proposed = fields.policy(ctx.backoff.tolerated_failures)
    except InvalidInput as exc:
        failure = _fail("policy", exc, session)
        return _org_page(request, ctx, session, slug, status=status_for(exc), failure=failure, policy=fields)
    return _preview_page(request, ctx, session, slug, fields, proposed)


@router.post(PREFIX + "/{slug}/policy")
def apply_policy(
    request: Request, slug: Slug, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    _, ask = _org_gate(request, ctx, session, slug, settings=True)
    if ask:
        return ask
    fields = PolicyFields.read(form)
    try:
        proposed = fields.policy(ctx.backoff.tolerated_failures)
    except InvalidInput as exc:
        failure = _fail("policy", exc, session)
        return _org_page(request, ctx, session, slug, status=status_for(exc), failure=failure, policy=fields)
    try:
        changed = organisations.set_policy(
            ctx,
            slug,
            two_factor=proposed.two_factor,
            grace_period_days=proposed.grace_period_days,
            allowed_methods=proposed.allowed_methods,
            tolerated_failures=proposed.tolerated_failures,
            remember_device_days=proposed.remember_device_days,
            actor=session.user,
            client=client,
        )
    except EnableTwoFactorFirst as exc:
        details = problem(exc, session.user.username)
        return _preview_page(request, ctx, session, slug, fields, proposed, status=status_for(exc), failure=details)
    return redirect(org_path(changed.slug), "policy_changed")


# --- members -------------------------------------------------------------------------------------------------------


def _role(value: str) -> OrgRole:
    try:
        return OrgRole(value)
    except ValueError:
        raise InvalidInput(_("Choose a role: owner, admin, user admin or member.")) from None


@router.post(PREFIX + "/{slug}/members")
def add_member(
    request: Request, slug: Slug, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    access, ask = _org_gate(request, ctx, session, slug)
    if ask:
        return ask
    entered = NewMember(
        username=form_field(form, "username", 256).strip(),
        role=form_field(form, "role", 32),
        managed=form_field(form, "managed", 8) == "on",
    )
    try:
        organisations.add_member(
            ctx,
            slug,
            username=entered.username,
            role=_role(entered.role),
            managed=entered.managed,
            actor=session.user,
            client=client,
        )
    except PAGE_ERRORS as exc:
        failure = _fail("add", exc, session)
        return _org_page(request, ctx, session, slug, status=status_for(exc), failure=failure, new_member=entered)
    return redirect(org_path(access.view.organisation.slug), "member_added")


@router.post(PREFIX + "/{slug}/members/{username}")
def change_member(
    request: Request,
    slug: Slug,
    username: Username,
    form: CheckedForm,
    ctx: Services,
    session: PageSession,
    client: Client,
) -> Response:
    access, ask = _org_gate(request, ctx, session, slug)
    if ask:
        return ask
    try:
        organisations.change_member(
            ctx,
            slug,
            username=username,
            role=_role(form_field(form, "role", 32)),
            managed=form_field(form, "managed", 8) == "on",
            actor=session.user,
            client=client,
        )
    except PAGE_ERRORS as exc:
        failure = _fail("members", exc, session)
        return _org_page(request, ctx, session, slug, status=status_for(exc), failure=failure)
    return redirect(org_path(access.view.organisation.slug), "member_changed")


def _member(access: OrgAccess, username: str) -> organisations.MemberState:
    wanted = user_key(username)
    for state in access.view.members:
        if user_key(state.member.user) == wanted:
            return state
    raise MemberNotFound()


@router.get(PREFIX + "/{slug}/members/{username}/remove")
def remove_member_page(
    request: Request, slug: Slug, username: Username, ctx: Services, session: PageSession
) -> Response:
    access = _access(ctx, session, slug)
    state = _member(access, username)
    path = org_path(access.view.organisation.slug)
    action = f"{path}/members/{user_key(state.member.user)}/remove"
    if ask := confirm_if_needed(request, ctx, session, action):
        return ask
    return render(
        request,
        "admin_member_remove.html",
        username=session.user.username,
        organisation=access.view.organisation,
        state=state,
        role_labels=ROLE_LABELS,
        path=path,
        action=action,
    )


@router.post(PREFIX + "/{slug}/members/{username}/remove")
def remove_member(
    request: Request,
    slug: Slug,
    username: Username,
    form: CheckedForm,
    ctx: Services,
    session: PageSession,
    client: Client,
) -> Response:
    access, ask = _org_gate(request, ctx, session, slug)
    if ask:
        return ask
    try:
        organisations.remove_member(ctx, slug, username=username, actor=session.user, client=client)
    except PAGE_ERRORS as exc:
        failure = _fail("members", exc, session)
        return _org_page(request, ctx, session, slug, status=status_for(exc), failure=failure)
    return redirect(org_path(access.view.organisation.slug), "member_removed")
