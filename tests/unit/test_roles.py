"""Who may do what, by role: the pure decisions in ``core.roles`` that the services enforce and the faces offer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from nidan.core.models import InstanceRole, OrgRole, User
from nidan.core.roles import (
    ABOVE_OWN_ROLE,
    MANAGED_IS_INSTANCE_DECISION,
    Standing,
    grantable_roles,
    is_instance_admin,
    manages_members,
    may_change_settings,
    may_edit_member,
    may_make_managed,
    membership_refusal,
    outranks,
    refused_on_own_account,
)
from nidan.errors import NotPermitted

OWNER, ADMIN, USER_ADMIN, MEMBER = OrgRole.OWNER, OrgRole.ADMIN, OrgRole.USER_ADMIN, OrgRole.MEMBER
INSTANCE_ADMIN = Standing(True, None)
OUTSIDER = Standing(False, None)


def org(role: OrgRole | None) -> Standing:
    return Standing(False, role)


def user(role: InstanceRole) -> User:
    return User(1, "u", "u@example.test", role, "", datetime(2026, 1, 1, tzinfo=UTC), None)


def test_an_instance_administrator_is_told_by_the_instance_role() -> None:
    assert is_instance_admin(user(InstanceRole.ADMIN)) and not is_instance_admin(user(InstanceRole.MEMBER))


@pytest.mark.parametrize(
    ("actor", "manages", "settings"),
    [
        (INSTANCE_ADMIN, True, True),
        (Standing(True, MEMBER), True, True),  # an instance administrator, whatever their role in it
        (org(OWNER), True, True),
        (org(ADMIN), True, True),
        (org(USER_ADMIN), True, False),  # members only, not the policy
        (org(MEMBER), False, False),
        (OUTSIDER, False, False),
    ],
)
def test_who_manages_members_and_who_changes_settings(actor: Standing, manages: bool, settings: bool) -> None:
    assert manages_members(actor) is manages
    assert may_change_settings(actor) is settings


@pytest.mark.parametrize(
    ("actor", "roles"),
    [
        (INSTANCE_ADMIN, (OWNER, ADMIN, USER_ADMIN, MEMBER)),
        (org(OWNER), (OWNER, ADMIN, USER_ADMIN, MEMBER)),
        (org(ADMIN), (ADMIN, USER_ADMIN, MEMBER)),
        (org(USER_ADMIN), (USER_ADMIN, MEMBER)),
        (org(MEMBER), ()),
        (OUTSIDER, ()),
    ],
)
def test_the_roles_one_may_give_are_ones_own_and_below(actor: Standing, roles: tuple[OrgRole, ...]) -> None:
    assert grantable_roles(actor) == roles


def test_only_an_instance_administrator_makes_an_account_managed() -> None:
    assert may_make_managed(INSTANCE_ADMIN)
    assert not any(may_make_managed(org(role)) for role in OrgRole)


def refusal(actor: Standing, before: OrgRole | None, after: OrgRole | None, **kw: bool) -> NotPermitted | None:
    managed_before, managed_after = kw.get("managed_before", True), kw.get("managed_after", True)
    return membership_refusal(
        actor,
        before=before,
        after=after,
        managed_before=managed_before,
        managed_after=managed_after,
    )


def test_membership_changes_stay_within_ones_rank() -> None:
    assert refusal(org(USER_ADMIN), None, USER_ADMIN, managed_before=False, managed_after=False) is None
    assert refusal(org(USER_ADMIN), MEMBER, USER_ADMIN) is None
    above = refusal(org(USER_ADMIN), MEMBER, ADMIN)
    assert above is not None and above.message == str(ABOVE_OWN_ROLE)
    demote = refusal(org(ADMIN), OWNER, MEMBER)  # an admin cannot demote an owner
    assert demote is not None and demote.message == str(ABOVE_OWN_ROLE)
    assert refusal(org(OWNER), OWNER, None) is None  # owners act on owners (the last-owner rule is elsewhere)
    assert refusal(org(ADMIN), ADMIN, OWNER) is not None  # nor make themselves owner


def test_people_who_do_not_manage_the_organisation_change_nothing() -> None:
    for actor in (org(MEMBER), OUTSIDER):
        found = refusal(actor, None, MEMBER, managed_before=False, managed_after=False)
        assert found is not None and found.message == NotPermitted().message


def test_an_organisation_does_not_make_an_account_its_own() -> None:
    for role in (OWNER, ADMIN, USER_ADMIN):
        claimed = refusal(org(role), MEMBER, MEMBER, managed_before=False, managed_after=True)
        assert claimed is not None and claimed.message == str(MANAGED_IS_INSTANCE_DECISION)
        assert refusal(org(role), MEMBER, MEMBER, managed_before=True, managed_after=False) is None  # letting go
    assert refusal(INSTANCE_ADMIN, None, OWNER, managed_before=False, managed_after=True) is None


@pytest.mark.parametrize("actor", [INSTANCE_ADMIN, OUTSIDER, *(org(role) for role in OrgRole)])
@pytest.mark.parametrize("role", list(OrgRole))
def test_a_member_row_is_editable_exactly_when_removing_them_is_permitted(actor: Standing, role: OrgRole) -> None:
    assert may_edit_member(actor, role=role) is (refusal(actor, role, None) is None)


@pytest.mark.parametrize(
    ("mine", "theirs", "allowed"),
    [
        (OWNER, OWNER, True),
        (OWNER, MEMBER, True),
        (ADMIN, OWNER, False),
        (ADMIN, ADMIN, False),
        (ADMIN, USER_ADMIN, True),
        (USER_ADMIN, USER_ADMIN, False),  # two user_admins cannot reset each other
        (USER_ADMIN, MEMBER, True),
        (MEMBER, MEMBER, False),
    ],
)
def test_acting_on_an_account_needs_a_higher_role(mine: OrgRole, theirs: OrgRole, allowed: bool) -> None:
    assert outranks(mine, theirs) is allowed


def test_some_actions_are_never_done_to_ones_own_account() -> None:
    assert refused_on_own_account(not_self=True, actor_id=1, target_id=1)
    assert not refused_on_own_account(not_self=True, actor_id=1, target_id=2)
    assert not refused_on_own_account(not_self=False, actor_id=1, target_id=1)
