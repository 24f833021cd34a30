"""Organisations: create them, manage members and roles, set the two-step policy after previewing who it affects.

Enforcement never locks anyone out: a member who must have 2FA and has none is led into setting it up at their next
sign-in (after the grace period, if any), and an administrator without 2FA cannot require it of themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, OrgRole, User
from nidan.core.organisations import Member, Membership, Organisation, checked_name, checked_slug
from nidan.core.policy import (
    ADMIN_ROLES,
    Enrolment,
    OrgPolicy,
    Requirement,
    TwoFactorPolicy,
    checked_policy,
    combined,
    enrolment,
    requires_two_factor,
)
from nidan.core.ports import UnitOfWork
from nidan.errors import (
    EnableTwoFactorFirst,
    LastOwner,
    MemberExists,
    MemberNotFound,
    NotPermitted,
    OrganisationNotFound,
)
from nidan.services import accounts, audit, authority, second_step
from nidan.services.context import ServiceContext
from nidan.texts import _


def requirement_of(uow: UnitOfWork, user_id: int) -> Requirement:
    """What all the user's organisations ask of them together."""
    return combined(uow.organisations.policies_of(user_id))


def _find(uow: UnitOfWork, slug: str) -> Organisation:
    organisation = uow.organisations.get_by_slug(slug.strip().lower())
    if organisation is None:
        raise OrganisationNotFound(_("No organisation named %(name)s exists.", name=repr(slug.strip())))
    return organisation


def create(
    ctx: ServiceContext, *, slug: str, name: str, actor: User | None, client: ClientInfo, owner: User | None = None
) -> Organisation:
    """A new organisation with the instance's default policy; ``owner`` (default: the actor) becomes its owner.
    Only instance administrators (or the command line) create organisations."""
    cleaned_slug, cleaned_name = checked_slug(slug), checked_name(name)
    if actor is not None and not authority.is_instance_admin(actor):
        raise NotPermitted()
    with ctx.uow() as uow:
        now = ctx.clock.now()
        organisation = uow.organisations.add(cleaned_slug, cleaned_name, ctx.default_org_policy, now)
        first_owner = owner or actor
        if first_owner is not None:
            uow.organisations.add_member(organisation.id, first_owner.id, OrgRole.OWNER, now)
        details: dict[str, Detail] = {"organisation": organisation.slug}
        audit.record(
            ctx, uow, EventType.ORGANISATION_CREATED, client=client, actor=actor, subject=None, details=details
        )
        uow.commit()
    return organisation


def list_all(ctx: ServiceContext) -> Sequence[Organisation]:
    with ctx.uow() as uow:
        return uow.organisations.list_all()


def managed_by(ctx: ServiceContext, *, actor: User) -> list[Organisation]:
    """The organisations ``actor`` manages (owner, admin or user_admin there); every one for an instance
    administrator. Empty: the actor has no administrative role (the admin console is not for them)."""
    with ctx.uow() as uow:
        everything = uow.organisations.list_all()
        if authority.is_instance_admin(actor):
            return list(everything)
        mine = {m.organisation.id for m in uow.organisations.memberships_of(actor.id) if m.role in ADMIN_ROLES}
    return [o for o in everything if o.id in mine]


@dataclass(frozen=True, slots=True)
class MemberState:
    member: Member
    two_factor: bool
    #: Their 2FA grace period started (at a sign-in where it was required and missing).
    grace_started_at: datetime | None


@dataclass(frozen=True, slots=True)
class OrganisationView:
    organisation: Organisation
    members: list[MemberState]


def show(ctx: ServiceContext, slug: str, *, actor: User | None) -> OrganisationView:
    with ctx.uow() as uow:
        organisation = _find(uow, slug)
        authority.require_org_manager(uow, actor, organisation, settings=False)
        members = [
            MemberState(m, second_step.has_second_factor(ctx, uow, m.user), m.user.two_factor_grace_started_at)
            for m in uow.organisations.members(organisation.id)
        ]
    return OrganisationView(organisation, members)


class PreviewOutcome:
    """What a member's next sign-in will do under a proposed policy."""

    SETUP_AT_NEXT_SIGN_IN = "setup_at_next_sign_in"
    REMINDED_UNTIL = "reminded_until"


@dataclass(frozen=True, slots=True)
class PreviewEntry:
    user: User
    role: OrgRole
    #: ``setup_at_next_sign_in`` or ``reminded_until`` (with ``until``).
    outcome: str
    until: datetime | None = None


def preview(ctx: ServiceContext, slug: str, proposed: OrgPolicy, *, actor: User | None) -> list[PreviewEntry]:
    """Who would be asked to set up 2FA at their next sign-in if the organisation had ``proposed`` (taking their
    other organisations into account); changes nothing."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        organisation = _find(uow, slug)
        authority.require_org_manager(uow, actor, organisation, settings=False)
        entries: list[PreviewEntry] = []
        for member in uow.organisations.members(organisation.id):
            if not requires_two_factor(proposed.two_factor, member.role):
                continue
            others = [(policy, role) for policy, role in _policies_with(uow, member.user.id, organisation.id, proposed)]
            decision = enrolment(
                combined(others),
                has_two_factor=second_step.has_second_factor(ctx, uow, member.user),
                registration_required=member.user.registration_required_at is not None,
                grace_started_at=member.user.two_factor_grace_started_at,
                now=now,
            )
            if decision.action is Enrolment.SETUP:
                entries.append(PreviewEntry(member.user, member.role, PreviewOutcome.SETUP_AT_NEXT_SIGN_IN))
            elif decision.action is Enrolment.REMIND:
                until = decision.grace_ends_at
                entries.append(PreviewEntry(member.user, member.role, PreviewOutcome.REMINDED_UNTIL, until))
    return entries


def _policies_with(
    uow: UnitOfWork, user_id: int, organisation_id: int, proposed: OrgPolicy
) -> Iterable[tuple[OrgPolicy, OrgRole]]:
    for membership in uow.organisations.memberships_of(user_id):
        policy = proposed if membership.organisation.id == organisation_id else membership.organisation.policy
        yield policy, membership.role


def set_policy(
    ctx: ServiceContext,
    slug: str,
    *,
    two_factor: TwoFactorPolicy,
    grace_period_days: int,
    allowed_methods: Iterable[Method],
    tolerated_failures: int | None,
    actor: User | None,
    client: ClientInfo,
    remember_device_days: int | None = None,
) -> Organisation:
    """Change an organisation's policy (owners, admins, instance administrators); audited with old and new. An
    actor who would be required to have 2FA by the new policy and has none is refused: they would be first in line.
    ``remember_device_days`` ``None``: the instance's setting (as for ``tolerated_failures``)."""
    instance_tolerated = ctx.backoff.tolerated_failures
    policy = checked_policy(
        two_factor,
        grace_period_days,
        allowed_methods,
        tolerated_failures,
        instance_tolerated=instance_tolerated,
        remember_device_days=remember_device_days,
    )
    with ctx.uow() as uow:
        organisation = _find(uow, slug)
        authority.require_org_manager(uow, actor, organisation, settings=True)
        if actor is not None and _would_be_first_in_line(ctx, uow, actor, organisation, policy):
            raise EnableTwoFactorFirst()
        uow.organisations.set_policy(organisation.id, policy)
        if policy.two_factor is not organisation.policy.two_factor:
            # A new requirement brings a new grace period for everyone it asks (not an old, stale start).
            uow.organisations.restart_grace(organisation.id)
        details: dict[str, Detail] = {
            "organisation": organisation.slug,
            "from": organisation.policy.two_factor.value,
            "to": policy.two_factor.value,
            "grace_period_days": policy.grace_period_days,
            "allowed_methods": " ".join(m.value for m in Method if m in policy.allowed_methods),
            "tolerated_failures": policy.tolerated_failures,
            "remember_device_days": policy.remember_device_days,
        }
        audit.record(
            ctx, uow, EventType.ORGANISATION_POLICY_CHANGED, client=client, actor=actor, subject=None, details=details
        )
        uow.commit()
        updated = uow.organisations.get_by_slug(organisation.slug)
    assert updated is not None
    return updated


def _would_be_first_in_line(
    ctx: ServiceContext, uow: UnitOfWork, actor: User, organisation: Organisation, policy: OrgPolicy
) -> bool:
    """The actor's own role would need 2FA under ``policy`` and they have none."""
    role = authority.org_role(uow, actor, organisation)
    required = role is not None and requires_two_factor(policy.two_factor, role)
    return required and not second_step.has_second_factor(ctx, uow, actor)


def add_member(
    ctx: ServiceContext,
    slug: str,
    *,
    username: str,
    role: OrgRole,
    managed: bool,
    actor: User | None,
    client: ClientInfo,
) -> None:
    user = accounts.find_user(ctx, username)
    with ctx.uow() as uow:
        organisation = _find(uow, slug)
        if authority.org_role(uow, user, organisation) is not None:
            raise MemberExists()  # first: callers that "add or change" go on to change it, with its own checks
        authority.require_membership_change(
            uow, actor, organisation, user, before=None, after=role, managed_before=False, managed_after=managed
        )
        uow.organisations.add_member(organisation.id, user.id, role, ctx.clock.now(), managed=managed)
        details: dict[str, Detail] = {"organisation": organisation.slug, "role": role.value, "managed": managed}
        audit.record(ctx, uow, EventType.MEMBER_ADDED, client=client, actor=actor, subject=user, details=details)
        uow.commit()


def change_member(
    ctx: ServiceContext,
    slug: str,
    *,
    username: str,
    role: OrgRole,
    managed: bool,
    actor: User | None,
    client: ClientInfo,
) -> None:
    user = accounts.find_user(ctx, username)
    with ctx.uow() as uow:
        organisation = _find(uow, slug)
        # Locked before anything is read: the roles checked below must be the ones this change applies to.
        uow.organisations.lock(organisation.id)
        membership = _membership(uow, user, organisation)
        current = membership.role
        authority.require_membership_change(
            uow,
            actor,
            organisation,
            user,
            before=current,
            after=role,
            managed_before=membership.managed,
            managed_after=managed,
        )
        if current is OrgRole.OWNER and role is not OrgRole.OWNER:
            _keep_an_owner(uow, organisation, user)
        uow.organisations.set_member(organisation.id, user.id, role, managed=managed)
        details: dict[str, Detail] = {
            "organisation": organisation.slug,
            "from": current.value,
            "role": role.value,
            "managed": managed,
        }
        audit.record(ctx, uow, EventType.MEMBER_CHANGED, client=client, actor=actor, subject=user, details=details)
        uow.commit()


def remove_member(ctx: ServiceContext, slug: str, *, username: str, actor: User | None, client: ClientInfo) -> None:
    user = accounts.find_user(ctx, username)
    with ctx.uow() as uow:
        organisation = _find(uow, slug)
        # Locked before anything is read: the roles checked below must be the ones this change applies to.
        uow.organisations.lock(organisation.id)
        membership = _membership(uow, user, organisation)
        current = membership.role
        authority.require_membership_change(
            uow,
            actor,
            organisation,
            user,
            before=current,
            after=None,
            managed_before=membership.managed,
            managed_after=membership.managed,
        )
        if current is OrgRole.OWNER:
            _keep_an_owner(uow, organisation, user)
        uow.organisations.remove_member(organisation.id, user.id)
        details: dict[str, Detail] = {"organisation": organisation.slug, "role": current.value}
        audit.record(ctx, uow, EventType.MEMBER_REMOVED, client=client, actor=actor, subject=user, details=details)
        uow.commit()


def _membership(uow: UnitOfWork, user: User, organisation: Organisation) -> Membership:
    found = next((m for m in uow.organisations.memberships_of(user.id) if m.organisation.id == organisation.id), None)
    if found is None:
        raise MemberNotFound()
    return found


def _keep_an_owner(uow: UnitOfWork, organisation: Organisation, leaving: User) -> None:
    """The caller holds the organisation's lock, so two owners stepping down at once cannot both pass this."""
    owners = [m for m in uow.organisations.members(organisation.id) if m.role is OrgRole.OWNER]
    if all(m.user.id == leaving.id for m in owners):
        raise LastOwner()
