"""Administrators disabling an account, enabling it again, and deleting it.

A disabled account is shut, not removed: it cannot sign in (after a correct password it is told ``account_disabled``;
a wrong one stays ``invalid_credentials``, so the flag tells nothing to someone without the password), and
everything it held stops working in the transaction that disables it: its sessions end, its access tokens and app
passwords are revoked and its remembered browsers are forgotten. While it is disabled, sign-in, the session check,
the Basic gate and the verify API refuse it as well (``signin``, ``gate``, ``verify``), so nothing made or missed
meanwhile works either. Enabling it again gives back the sign-in only: tokens stay revoked, browsers forgotten.

Deleting removes the account and everything it held (its second factors, sessions, access tokens and app
passwords, remembered browsers, memberships, links: the database's ON DELETE CASCADE), in one transaction. The
audit log keeps every event about it, by id and username, and its chain is not touched: ``user.deleted`` is
appended before the row goes. Ids are never handed out again, so nobody new inherits the old account's log.

Who may: the rule for managing a user (``authority.require_user_manager``), never on one's own account, and never
the last instance administrator who is not disabled (``last_administrator``), nor an organisation's last owner
(``last_owner``). All three are audited with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, InstanceRole, OrgRole, User
from nidan.core.ports import UnitOfWork
from nidan.errors import InvalidInput, LastAdministrator, LastOwner, NotPermitted, UserNotFound
from nidan.services import accounts, audit, authority, devices, throttling
from nidan.services.context import ServiceContext
from nidan.texts import _


@dataclass(frozen=True, slots=True)
class Disabled:
    user: User
    #: The account was disabled already: nothing changed (and nothing was audited).
    already: bool
    sessions_ended: int
    tokens_revoked: int
    devices_forgotten: int


def _reason(reason: str | None) -> str:
    checked = audit.checked_reason(reason)
    if checked is None:  # the faces ask for 3 to 200 characters; the service asks for one at least
        raise InvalidInput(_("Give a reason of at least 3 characters (e.g. a ticket number): it goes into the log."))
    return checked


def _find_for(ctx: ServiceContext, actor: User | None, username: str) -> User:
    """The user; to an organisation's manager an unknown name looks like one they may not touch (no enumeration)."""
    try:
        return accounts.find_user(ctx, username)
    except UserNotFound:
        if actor is not None and not authority.is_instance_admin(actor):
            raise NotPermitted() from None
        raise


def _locked(uow: UnitOfWork, actor: User | None, found: User) -> User:
    """``found`` checked against ``actor``'s rights, locked, and read again as it is once locked."""
    uow.users.lock(found.id)
    authority.require_user_manager(uow, actor, found, not_self=True)
    user = uow.users.get(found.id)
    if user is None:  # deleted meanwhile
        raise UserNotFound()
    return user


def disable(
    ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None
) -> Disabled:
    """Disable the account and end everything it holds, in one transaction; audited as ``user.disabled``."""
    reason = _reason(reason)
    found = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        user = _locked(uow, actor, found)
        if user.disabled:
            return Disabled(user, True, 0, 0, 0)
        if user.role is InstanceRole.ADMIN and uow.users.lock_enabled_with_role(InstanceRole.ADMIN) <= 1:
            raise LastAdministrator()
        now = ctx.clock.now()
        uow.users.set_disabled(user.id, now, reason)
        ended = uow.sessions.revoke_all_for_user(user.id, now)
        revoked = uow.access_tokens.revoke_all(user.id, now)
        forgotten = devices.forget_all(ctx, uow, user.id)
        details: dict[str, Detail] = {
            "reason": reason,
            "sessions_ended": ended,
            "tokens_revoked": revoked,
            **devices.forgotten_details(forgotten),
        }
        audit.record(ctx, uow, EventType.USER_DISABLED, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return Disabled(user, False, ended, revoked, forgotten)


def enable(ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None) -> User:
    """Let the account sign in again (its tokens stay revoked, its browsers forgotten); audited as
    ``user.enabled``. Enabling an account that is not disabled changes nothing."""
    reason = _reason(reason)
    found = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        user = _locked(uow, actor, found)
        if not user.disabled:
            return user
        uow.users.set_disabled(user.id, None, None)
        details: dict[str, Detail] = {"reason": reason}
        audit.record(ctx, uow, EventType.USER_ENABLED, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return user


@dataclass(frozen=True, slots=True)
class Deleted:
    #: The account as it was just before it was deleted.
    user: User
    sessions_ended: int
    tokens_revoked: int
    devices_forgotten: int
    memberships_removed: int


def _keep_owners(uow: UnitOfWork, user: User) -> int:
    """Refuse to leave an organisation without an owner (``last_owner``, as removing the member would); the
    organisations are locked, so two owners deleted at once cannot both pass. Returns the user's memberships."""
    memberships = uow.organisations.memberships_of(user.id)
    for membership in memberships:
        if membership.role is not OrgRole.OWNER:
            continue
        uow.organisations.lock(membership.organisation.id)
        owners = [m for m in uow.organisations.members(membership.organisation.id) if m.role is OrgRole.OWNER]
        if all(m.user.id == user.id for m in owners):
            raise LastOwner(
                _(
                    "The account %(user)s is the last owner of the organisation %(organisation)s: make someone else an "
                    "owner there first, so nobody is locked out of its settings.",
                    user=user.username,
                    organisation=membership.organisation.name,
                )
            )
    return len(memberships)


def delete(
    ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None
) -> Deleted:
    """Delete the account and everything it holds, in one transaction; audited as ``user.deleted`` with the
    reason and what stopped working (the log keeps the events about the account)."""
    reason = _reason(reason)
    found = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        user = _locked(uow, actor, found)
        if (
            user.role is InstanceRole.ADMIN
            and not user.disabled
            and uow.users.lock_enabled_with_role(InstanceRole.ADMIN) <= 1
        ):
            raise LastAdministrator()
        memberships = _keep_owners(uow, user)
        now = ctx.clock.now()
        # Counted for the log and the answer; the rows themselves go with the account.
        ended = uow.sessions.revoke_all_for_user(user.id, now)
        revoked = uow.access_tokens.revoke_all(user.id, now)
        forgotten = devices.forget_all(ctx, uow, user.id)
        # A new account of the same name starts with no failures counted against it.
        throttling.reset_all(ctx, uow, user)
        details: dict[str, Detail] = {
            "reason": reason,
            "role": user.role.value,
            "sessions_ended": ended,
            "tokens_revoked": revoked,
            "memberships_removed": memberships,
            **devices.forgotten_details(forgotten),
        }
        audit.record(ctx, uow, EventType.USER_DELETED, client=client, actor=actor, subject=user, details=details)
        if not uow.users.delete(user.id):
            raise UserNotFound()
        uow.commit()
    return Deleted(user, ended, revoked, forgotten, memberships)
