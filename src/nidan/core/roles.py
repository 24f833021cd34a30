"""Who may do what, by role: the pure decisions behind ``services.authority`` and behind every action a face offers.

A face asks these functions what to offer (which roles a select lists, whether a member's row has a form, whether the
policy form is shown); the services ask the same functions before they act. So the page never offers what the
service would refuse, nor hides what it would permit. Storage stays out: callers pass in where people stand.

Instance administrators act on everything. Within an organisation, its owners, admins and user_admins manage its
members within their own rank (an owner on owners too) and never decide that the organisation *manages* an
account. Only owners and admins change its settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from nidan.core.models import InstanceRole, OrgRole, User
from nidan.core.policy import ADMIN_ROLES, SETTINGS_ROLES
from nidan.errors import NotPermitted
from nidan.texts import _

#: Higher acts on lower or equal, never the other way.
RANK: Mapping[OrgRole, int] = MappingProxyType(
    {OrgRole.MEMBER: 0, OrgRole.USER_ADMIN: 1, OrgRole.ADMIN: 2, OrgRole.OWNER: 3}
)

ABOVE_OWN_ROLE = _("You cannot give or change a role above your own in this organisation.")
MANAGED_IS_INSTANCE_DECISION = _(
    "Only an instance administrator can make an account managed by an organisation (its managers may then "
    "reset its two-step verification). Add the person as an outside collaborator instead."
)


def is_instance_admin(user: User) -> bool:
    return user.role is InstanceRole.ADMIN


@dataclass(frozen=True, slots=True)
class Standing:
    """Where someone stands towards one organisation."""

    instance_admin: bool
    #: Their role in it (``None``: not a member).
    role: OrgRole | None


def manages_members(actor: Standing) -> bool:
    """May see the organisation, its members and a policy's preview, and manage its members (as far as
    ``membership_refusal`` lets them)."""
    return actor.instance_admin or actor.role in ADMIN_ROLES


def may_change_settings(actor: Standing) -> bool:
    """May change the organisation's settings (its two-step policy): a user_admin manages members only."""
    return actor.instance_admin or actor.role in SETTINGS_ROLES


def grantable_roles(actor: Standing) -> tuple[OrgRole, ...]:
    """The roles ``actor`` may give (in ``OrgRole``'s order): every one for an instance administrator, else their own
    and below; none for someone who does not manage the organisation."""
    if actor.instance_admin:
        return tuple(OrgRole)
    if actor.role is None or not manages_members(actor):
        return ()
    mine = RANK[actor.role]
    return tuple(role for role in OrgRole if RANK[role] <= mine)


def may_make_managed(actor: Standing) -> bool:
    """Whether the organisation manages an account (so its managers may reset that account's 2FA) is an instance
    administrator's decision, never the organisation's own: else it could claim anyone's account."""
    return actor.instance_admin


def membership_refusal(
    actor: Standing,
    *,
    before: OrgRole | None,
    after: OrgRole | None,
    managed_before: bool,
    managed_after: bool,
) -> NotPermitted | None:
    """Why ``actor`` may not add (``before`` is ``None``), change, or remove (``after`` is ``None``) a membership;
    ``None`` when they may. Returned rather than raised so that a face can ask what to offer without catching.

    A member who is an instance administrator is treated by their role in the organisation, like anyone: their
    membership does not carry their instance rights, and an owner may take it away (an instance administrator's
    *account* is out of the organisation's reach: ``outranks`` is never asked for them)."""
    if actor.instance_admin:
        return None
    if not manages_members(actor) or actor.role is None:
        return NotPermitted()
    if any(role is not None and role not in grantable_roles(actor) for role in (before, after)):
        return NotPermitted(ABOVE_OWN_ROLE)
    if managed_after and not managed_before and not may_make_managed(actor):
        return NotPermitted(MANAGED_IS_INSTANCE_DECISION)
    return None


def may_edit_member(actor: Standing, *, role: OrgRole) -> bool:
    """Whether a member's row offers changing their role and removing them: exactly when removing them is permitted
    (``membership_refusal``); the roles it offers are then ``grantable_roles``, each of which is permitted too."""
    return membership_refusal(actor, before=role, after=None, managed_before=False, managed_after=False) is None


def outranks(mine: OrgRole, theirs: OrgRole) -> bool:
    """Acting on someone's account (resetting their 2FA): only on a lower role — owners on owners too, since
    someone must be able to help an owner — so two user_admins cannot reset each other."""
    return RANK[theirs] < RANK[mine] or mine is OrgRole.OWNER


def refused_on_own_account(*, not_self: bool, actor_id: int, target_id: int) -> bool:
    """Some actions (resetting 2FA, requiring it again) are never done to one's own account: another administrator
    does them, so an administrator's own second step cannot be waved through by themselves."""
    return not_self and actor_id == target_id
