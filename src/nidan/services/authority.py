"""Who may act on whom, asked of storage and decided by ``core.roles``, called in plain sight by every
administrative use case.

Instance administrators act on everyone. Within an organisation, owners, admins and user_admins act on the members
that organisation manages (GitLab's enterprise users), never on outside collaborators, only on lower roles (owners
on owners too), and never on an instance administrator. Only owners and admins change its settings. The rules
themselves are pure functions in ``core.roles``, which the faces ask too when they decide what to offer.
"""

from __future__ import annotations

from nidan.core import roles
from nidan.core.models import OrgRole, User
from nidan.core.organisations import Organisation
from nidan.core.policy import ADMIN_ROLES
from nidan.core.ports import UnitOfWork
from nidan.core.roles import is_instance_admin as is_instance_admin
from nidan.errors import CannotActOnSelf, NotPermitted


def can_manage_user(uow: UnitOfWork, actor: User, target: User) -> bool:
    if is_instance_admin(actor):
        return True
    if is_instance_admin(target):
        return False
    mine = {m.organisation.id: m.role for m in uow.organisations.memberships_of(actor.id) if m.role in ADMIN_ROLES}
    return any(
        theirs.managed and theirs.organisation.id in mine and roles.outranks(mine[theirs.organisation.id], theirs.role)
        for theirs in uow.organisations.memberships_of(target.id)
    )


def require_user_manager(uow: UnitOfWork, actor: User | None, target: User, *, not_self: bool = False) -> None:
    """Raise unless ``actor`` may act on ``target`` (``None``: the command line on the server, which may)."""
    if actor is None:
        return
    if roles.refused_on_own_account(not_self=not_self, actor_id=actor.id, target_id=target.id):
        raise CannotActOnSelf()
    if not can_manage_user(uow, actor, target):
        raise NotPermitted()


def org_role(uow: UnitOfWork, user: User, organisation: Organisation) -> OrgRole | None:
    return next(
        (m.role for m in uow.organisations.memberships_of(user.id) if m.organisation.id == organisation.id), None
    )


def standing(uow: UnitOfWork, user: User, organisation: Organisation) -> roles.Standing:
    """Where ``user`` stands towards ``organisation``, for ``core.roles`` to decide on."""
    return roles.Standing(is_instance_admin(user), org_role(uow, user, organisation))


def require_org_manager(uow: UnitOfWork, actor: User | None, organisation: Organisation, *, settings: bool) -> None:
    """Raise unless ``actor`` may manage the organisation's members (``settings``: also change its settings)."""
    if actor is None:
        return
    where = standing(uow, actor, organisation)
    allowed = roles.may_change_settings(where) if settings else roles.manages_members(where)
    if not allowed:
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
    before: OrgRole | None,
    after: OrgRole | None,
    managed_before: bool,
    managed_after: bool,
) -> None:
    """Raise unless ``actor`` may add (``before`` is ``None``), change, or remove (``after`` is ``None``) ``target``'s
    membership (``core.roles.membership_refusal``: within their own rank, and never making an account managed)."""
    if actor is None:
        return
    refusal = roles.membership_refusal(
        standing(uow, actor, organisation),
        before=before,
        after=after,
        managed_before=managed_before,
        managed_after=managed_after,
    )
    if refusal is not None:
        raise refusal
