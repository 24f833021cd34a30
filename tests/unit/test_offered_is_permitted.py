"""The admin console offers exactly what the services permit: the page's member rows, role lists and managed boxes,
and the user page's actions, are asked of the same ``core.roles`` functions that ``services.authority`` enforces, for
every actor role against every target role."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import cast

import pytest

from nidan.core.models import InstanceRole, OrgRole, User
from nidan.core.organisations import Member, Membership, Organisation
from nidan.core.policy import ADMIN_ROLES, OrgPolicy
from nidan.core.ports import UnitOfWork
from nidan.errors import CannotActOnSelf, NotPermitted
from nidan.services import authority, organisations
from nidan.web.pages.admin_orgs import OrgAccess, org_access
from nidan.web.pages.admin_users import ACTIONS, offered

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
ORG = Organisation(1, "a", "Org A", WHEN, OrgPolicy())


def person(user_id: int, instance_admin: bool = False) -> User:
    role = InstanceRole.ADMIN if instance_admin else InstanceRole.MEMBER
    return User(user_id, f"u{user_id}", f"u{user_id}@example.test", role, "", WHEN, None)


@dataclass
class Memberships:
    """The one read ``services.authority`` makes of storage: a user's memberships."""

    roles: dict[int, OrgRole] = field(default_factory=dict)

    def memberships_of(self, user_id: int) -> list[Membership]:
        role = self.roles.get(user_id)
        return [] if role is None else [Membership(ORG, role, True)]


@dataclass
class Storage:
    organisations: Memberships


#: Who acts: an instance administrator (a member or not), or an organisation's member in each role.
ACTORS: list[tuple[bool, OrgRole | None]] = [(True, None), *((a, r) for a in (False, True) for r in OrgRole)]
TARGETS = list(itertools.product(OrgRole, (False, True), (False, True)))  # role, instance admin, managed


def _world(actor_admin: bool, actor_role: OrgRole | None, target: Member) -> tuple[User, UnitOfWork, OrgAccess]:
    actor = person(1, actor_admin)
    roles = {target.user.id: target.role} | ({} if actor_role is None else {actor.id: actor_role})
    uow = cast(UnitOfWork, Storage(Memberships(roles)))
    members = [organisations.MemberState(target, False, None)]
    if actor_role is not None:
        members.append(organisations.MemberState(Member(actor, actor_role, True), False, None))
    return actor, uow, org_access(organisations.OrganisationView(ORG, members), actor)


def _permitted(
    uow: UnitOfWork,
    actor: User,
    target: User,
    before: OrgRole | None,
    after: OrgRole | None,
    managed: tuple[bool, bool],
) -> bool:
    try:
        authority.require_membership_change(
            uow, actor, ORG, target, before=before, after=after, managed_before=managed[0], managed_after=managed[1]
        )
    except NotPermitted:
        return False
    return True


@pytest.mark.parametrize(("actor_admin", "actor_role"), ACTORS)
@pytest.mark.parametrize(("target_role", "target_admin", "managed"), TARGETS)
def test_a_member_row_offers_what_the_service_permits(
    actor_admin: bool, actor_role: OrgRole | None, target_role: OrgRole, target_admin: bool, managed: bool
) -> None:
    target = Member(person(2, target_admin), target_role, managed)
    actor, uow, access = _world(actor_admin, actor_role, target)
    if actor_role not in ADMIN_ROLES and not actor_admin:
        # No page for them: the service refuses to show it (and, below, every change too).
        with pytest.raises(NotPermitted):
            authority.require_org_manager(uow, actor, ORG, settings=False)
    editable = access.may_change(target)
    same = (managed, managed)
    # "Remove…" is on the row exactly when removing is permitted.
    assert editable is _permitted(uow, actor, target.user, target_role, None, same)
    # The row's role list: each role offered is a change the service permits, and no other.
    for role in OrgRole:
        assert (editable and role in access.roles) is _permitted(uow, actor, target.user, target_role, role, same)
    # The row's "managed" box: ticking it is offered (not disabled) exactly when permitted; unticking likewise.
    flipped = (managed, not managed)
    box_offered = editable and (managed or access.make_managed)
    assert box_offered is _permitted(uow, actor, target.user, target_role, target_role, flipped)


@pytest.mark.parametrize(("actor_admin", "actor_role"), ACTORS)
@pytest.mark.parametrize("newcomer_admin", [False, True])
def test_the_add_form_offers_what_the_service_permits(
    actor_admin: bool, actor_role: OrgRole | None, newcomer_admin: bool
) -> None:
    newcomer = Member(person(3, newcomer_admin), OrgRole.MEMBER, False)
    actor, uow, access = _world(actor_admin, actor_role, newcomer)
    cast(Storage, uow).organisations.roles.pop(newcomer.user.id)  # not a member yet
    for role, managed in itertools.product(OrgRole, (False, True)):
        offered_here = role in access.roles and (access.make_managed or not managed)
        assert offered_here is _permitted(uow, actor, newcomer.user, None, role, (False, managed))


@pytest.mark.parametrize(("actor_admin", "actor_role"), ACTORS)
def test_the_policy_form_is_shown_exactly_to_who_may_change_it(actor_admin: bool, actor_role: OrgRole | None) -> None:
    actor, uow, access = _world(actor_admin, actor_role, Member(person(2), OrgRole.MEMBER, True))
    try:
        authority.require_org_manager(uow, actor, ORG, settings=True)
    except NotPermitted:
        assert not access.settings
    else:
        assert access.settings


@pytest.mark.parametrize("is_self", [False, True])
def test_the_user_page_offers_the_actions_its_gate_permits(is_self: bool) -> None:
    actor = person(1, instance_admin=True)
    subject = actor if is_self else person(2)
    uow = cast(UnitOfWork, Storage(Memberships()))
    shown = offered(ACTIONS.values(), actor=actor, subject=subject)
    #: What does not apply to an account in its state (an enabled one is not enabled again).
    moot = {"enable"}
    for action in ACTIONS.values():
        try:
            authority.require_user_manager(uow, actor, subject, not_self=action.not_self)
        except CannotActOnSelf:
            assert action.slug not in shown
        else:
            assert (action.slug in shown) is (action.slug not in moot)
    assert is_self or shown == set(ACTIONS) - moot
    disabled = replace(subject, disabled_at=subject.created_at)
    assert is_self or offered(ACTIONS.values(), actor=actor, subject=disabled) == set(ACTIONS) - {"disable"}
