"""Who may act on whom, decided in one place and called in plain sight by every administrative use case.

Instance administrators act on everyone. Within an organisation, owners, admins and user_admins act on the members
that organisation manages (GitLab's enterprise users), never on outside collaborators, only on lower roles (owners
on owners too), and never on an instance administrator. Only owners and admins change its settings.
"""

from __future__ import annotations

from nidan.core.models import InstanceRole, OrgRole, User
from nidan.core.organisations import Organisation
from nidan.core.policy import ADMIN_ROLES, SETTINGS_ROLES
from nidan.core.ports import UnitOfWork
from nidan.errors import CannotActOnSelf, NotPermitted

#: Higher acts on lower or equal, never the other way.
RANK = {OrgRole.MEMBER: 0, OrgRole.USER_ADMIN: 1, OrgRole.ADMIN: 2, OrgRole.OWNER: 3}


def is_instance_admin(user: User) -> bool:
    return user.role is InstanceRole.ADMIN


def can_manage_user(uow: UnitOfWork, actor: User, target: User) -> bool:
    if is_instance_admin(actor):
        return True
    if is_instance_admin(target):
        return False
    mine = {m.organisation.id: m.role for m in uow.organisations.memberships_of(actor.id) if m.role in ADMIN_ROLES}
    return any(
        theirs.managed and theirs.organisation.id in mine and outranks(mine[theirs.organisation.id], theirs.role)
        for theirs in uow.organisations.memberships_of(target.id)
    )


def outranks(mine: OrgRole, theirs: OrgRole) -> bool:
    """Acting on someone's account (resetting their 2FA): only on a lower role — owners on owners too, since
    someone must be able to help an owner — so two user_admins cannot reset each other."""
    return RANK[theirs] < RANK[mine] or mine is OrgRole.OWNER


def require_user_manager(uow: UnitOfWork, actor: User | None, target: User, *, not_self: bool = False) -> None:
    """Raise unless ``actor`` may act on ``target`` (``None``: the command line on the server, which may)."""
    if actor is None:
        return
    if not_self and actor.id == target.id:
        raise CannotActOnSelf()
    if not can_manage_user(uow, actor, target):
        raise NotPermitted()


def org_role(uow: UnitOfWork, user: User, organisation: Organisation) -> OrgRole | None:
    return next(
        (m.role for m in uow.organisations.memberships_of(user.id) if m.organisation.id == organisation.id), None
    )


def require_org_manager(uow: UnitOfWork, actor: User | None, organisation: Organisation, *, settings: bool) -> None:
    """Raise unless ``actor`` may manage the organisation's members (``settings``: also change its settings)."""
    if actor is None or is_instance_admin(actor):
        return
    roles = SETTINGS_ROLES if settings else ADMIN_ROLES
    if org_role(uow, actor, organisation) not in roles:
        raise NotPermitted()


def manages_anything(uow: UnitOfWork, actor: User) -> bool:
    """Whether ``actor`` holds any administrative role (for showing the admin console at all)."""
    return is_instance_admin(actor) or any(m.role in ADMIN_ROLES for m in uow.organisations.memberships_of(actor.id))


def require_membership_change(
    uow: UnitOfWork,
    actor: User | None,
    organisation: Organisation,
    target: User,
    *,
    roles: tuple[OrgRole | None, ...],
    managed_before: bool,
    managed_after: bool,
) -> None:
    """May ``actor`` add, change or remove ``target``'s membership? An organisation's managers act within their own
    rank (``roles``: the target's role before and after); whether the
    organisation *manages* an account — which lets its managers reset that account's 2FA — is an instance
    administrator's decision, never the organisation's own (else it could claim anyone's account)."""
    if actor is None or is_instance_admin(actor):
        return
    mine = org_role(uow, actor, organisation)
    if mine not in ADMIN_ROLES:
        raise NotPermitted()
    if any(role is not None and RANK[role] > RANK[mine] for role in roles):
        raise NotPermitted("You cannot give or change a role above your own in this organisation.")
    if managed_after and not managed_before:
        raise NotPermitted(
            "Only an instance administrator can make an account managed by an organisation (its managers may then "
            "reset its two-step verification). Add the person as an outside collaborator instead."
        )
