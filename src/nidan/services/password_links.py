"""Accounts an administrator creates, and the one-time link with which their owner sets the password.

nidan never lets an administrator choose someone's password. Creating an account stores it with a password nobody
knows (random, hashed like any other) and makes a one-time link, valid ``LINK_LIFETIME``, that the administrator
sees once and passes on. Opening the link changes nothing; setting a password there spends it (one conditional
UPDATE, in the transaction that sets the password), and the person goes on to sign in and set up two-step
verification. An administrator may make a new link for an account (the earlier one stops working): when the first
one expired, or when someone lost their password.

The links are those of break-glass recovery (``services.break_glass``): the same table, tokens and single-use
spending, kept apart by their purpose (``LinkPurpose.PASSWORD``, and a keyed hash of their own). Only instance
administrators (and the command line on the server) create accounts: an organisation's managers act on the members
it manages, and whether an organisation manages an account is an instance administrator's decision
(``core.roles.may_make_managed``), so an account an organisation's admin made would be one they could not manage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, InstanceRole, LinkPurpose, User
from nidan.core.passwords import password_problem
from nidan.core.ports import UnitOfWork
from nidan.core.tokens import looks_like_token, new_token
from nidan.errors import (
    AccountDisabled,
    AdminRequired,
    PasswordLinkExpired,
    PasswordLinkInvalid,
    PasswordLinkUsed,
    WeakPassword,
)
from nidan.services import accounts, audit, authority, devices
from nidan.services.context import ServiceContext

LINK_LIFETIME = timedelta(hours=72)
#: Separates these tokens' keyed hashes from every other kind's (a recovery link's token is no password link's).
HASH_PURPOSE = "password_link"


@dataclass(frozen=True, slots=True)
class PasswordLink:
    user: User
    #: The one-time link's token: shown once to the administrator, never stored.
    token: str = field(repr=False)
    expires_at: datetime


def _require_instance_admin(actor: User | None) -> None:
    if actor is not None and not authority.is_instance_admin(actor):
        raise AdminRequired()


def _add_link(ctx: ServiceContext, uow: UnitOfWork, user: User, token: str) -> datetime:
    now = ctx.clock.now()
    expires_at = now + LINK_LIFETIME
    uow.recovery_links.add(user.id, ctx.hash_token(token, HASH_PURPOSE), now, expires_at, purpose=LinkPurpose.PASSWORD)
    return expires_at


def _link_details() -> dict[str, Detail]:
    return {"link_valid_hours": int(LINK_LIFETIME.total_seconds() // 3600)}


def create_user(
    ctx: ServiceContext,
    *,
    username: str,
    email: str,
    role: InstanceRole,
    actor: User | None,
    client: ClientInfo | None,
) -> PasswordLink:
    """Create an account (the username PRECIS-normalised, ``username_taken`` when its key exists) and its first
    set-password link; audited as ``user.created`` with the role and ``via: password_link``."""
    _require_instance_admin(actor)
    token = new_token(ctx.random_bytes)
    # Nobody ever learns this password: it only fills the column until the owner sets theirs with the link. Hashed
    # here, before the transaction opens (a bad field has spent nothing).
    unknown = new_token(ctx.random_bytes)
    new_user = accounts.prepare_user(ctx, username=username, email=email, password=unknown, role=role)
    with ctx.uow() as uow:
        details: dict[str, Detail] = {"via": "password_link", **_link_details()}
        user = accounts.add_prepared_user(ctx, uow, new_user, actor=actor, client=client, details=details)
        expires_at = _add_link(ctx, uow, user, token)
        uow.commit()
    return PasswordLink(user, token, expires_at)


def issue_link(ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo) -> PasswordLink:
    """A new set-password link for an account (its earlier unused one stops working); audited as
    ``password_link.issued``. Not for one's own account: one's own password is changed on one's own page."""
    _require_instance_admin(actor)
    found = accounts.find_user(ctx, username)
    token = new_token(ctx.random_bytes)
    with ctx.uow() as uow:
        authority.require_user_manager(uow, actor, found, not_self=True)
        expires_at = _add_link(ctx, uow, found, token)
        event = EventType.PASSWORD_LINK_ISSUED
        audit.record(ctx, uow, event, client=client, actor=actor, subject=found, details=_link_details())
        uow.commit()
    return PasswordLink(found, token, expires_at)


def _why_not(ctx: ServiceContext, uow: UnitOfWork, token: str) -> User:
    """The user of a live link; else why it does not work (the link's holder may know: it is their link)."""
    if not looks_like_token(token):
        raise PasswordLinkInvalid()
    found = uow.recovery_links.find(ctx.hash_token(token, HASH_PURPOSE), purpose=LinkPurpose.PASSWORD)
    if found is None:
        raise PasswordLinkInvalid()
    if found.used_at is not None:
        raise PasswordLinkUsed()
    if found.expires_at <= ctx.clock.now():
        raise PasswordLinkExpired()
    user = uow.users.get(found.user_id)
    if user is None:  # the account was deleted (and its links with it): not reached, kept for the type
        raise PasswordLinkInvalid()
    if user.disabled:
        raise AccountDisabled()
    return user


def check_link(ctx: ServiceContext, token: str) -> User:
    """Whose live link ``token`` is; raises ``password_link_invalid``, ``_used`` or ``_expired`` (or
    ``account_disabled``) otherwise. Changes nothing."""
    with ctx.uow() as uow:
        return _why_not(ctx, uow, token)


def set_password(ctx: ServiceContext, *, token: str, password: str, client: ClientInfo) -> User:
    """Spend the link and set the password it was made for; audited as ``password_link.used``. Sessions of the
    account end and its remembered browsers are forgotten (none, for a new account; a new link for someone who lost
    their password signs everyone else out). A weak password spends nothing."""
    owner = check_link(ctx, token)  # why it does not work, before the person's password is looked at
    problem = password_problem(password, username=owner.username)
    if problem is not None:
        raise WeakPassword(problem)
    password_hash = ctx.passwords.hash(password)
    with ctx.uow() as uow:
        now = ctx.clock.now()
        user_id = uow.recovery_links.consume(ctx.hash_token(token, HASH_PURPOSE), now, purpose=LinkPurpose.PASSWORD)
        if user_id is None:  # spent or expired meanwhile
            _why_not(ctx, uow, token)
            raise PasswordLinkInvalid()
        user = uow.users.get(user_id)
        if user is None:
            raise PasswordLinkInvalid()
        if user.disabled:  # the transaction is not committed: the link stays unspent
            raise AccountDisabled()
        uow.users.set_password_hash(user.id, password_hash)
        ended = uow.sessions.revoke_all_for_user(user.id, now)
        forgotten = devices.forget_all(ctx, uow, user.id)
        details: dict[str, Detail] = {"sessions_ended": ended, **devices.forgotten_details(forgotten)}
        audit.record(ctx, uow, EventType.PASSWORD_LINK_USED, client=client, actor=user, subject=user, details=details)
        uow.commit()
    return user
