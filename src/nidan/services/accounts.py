"""Accounts: create users, list them, change passwords."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, InstanceRole, NewUser, OrgRole, User
from nidan.core.passwords import password_problem
from nidan.core.ports import UnitOfWork
from nidan.core.usernames import normalised_username, username_key, username_problem
from nidan.core.zones import known_time_zone
from nidan.errors import InvalidInput, UserNotFound, WeakPassword
from nidan.services import audit, devices
from nidan.services.context import ServiceContext
from nidan.texts import LOCALES, _

#: What an email address must look like (a local part, "@", a domain with a dot): the API's document states it.
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s]{2,63}$"
_EMAIL = re.compile(EMAIL_PATTERN)


def _checked_username(username: str) -> tuple[str, str]:
    display = normalised_username(username)
    key = username_key(display)
    if key is None:
        raise InvalidInput(username_problem(display))
    return display, key


def _checked_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email):
        raise InvalidInput(_("Enter an email address such as name@example.com."))
    return email


def checked_password(password: str, *, username: str) -> str:
    """``password`` if its owner ``username`` may choose it; ``WeakPassword`` (``weak_password``) saying why not.
    Every password someone sets passes here first: a new account, the first administrator, a password an
    administrator sets, one chosen through a set-password link, one's own change."""
    problem = password_problem(password, username=normalised_username(username))
    if problem is not None:
        raise WeakPassword(problem)
    return password


def prepare_user(
    ctx: ServiceContext, *, username: str, email: str, password: str, role: InstanceRole = InstanceRole.MEMBER
) -> NewUser:
    """Validate and hash outside any transaction, so a bad field spends nothing (a setup link, for one)."""
    display, key = _checked_username(username)
    return NewUser(
        username=display,
        username_key=key,
        email=_checked_email(email),
        role=role,
        password_hash=ctx.passwords.hash(checked_password(password, username=display)),
        created_at=ctx.clock.now(),
    )


def add_prepared_user(
    ctx: ServiceContext,
    uow: UnitOfWork,
    new_user: NewUser,
    *,
    actor: User | None,
    client: ClientInfo | None,
    details: Mapping[str, Detail] | None = None,
) -> User:
    """Store the user and make them a member of the default organisation (owner, for administrators); audited as
    ``user.created`` with the role (and ``details``)."""
    user = uow.users.add(new_user)
    org_role = OrgRole.OWNER if new_user.role is InstanceRole.ADMIN else OrgRole.MEMBER
    uow.organisations.add_member(uow.organisations.default_id(), user.id, org_role, new_user.created_at)
    said: dict[str, Detail] = {"role": user.role.value, **(details or {})}
    audit.record(ctx, uow, EventType.USER_CREATED, client=client, actor=actor, subject=user, details=said)
    return user


def create_user(
    ctx: ServiceContext,
    *,
    username: str,
    email: str,
    password: str,
    role: InstanceRole = InstanceRole.MEMBER,
    actor: User | None = None,
    client: ClientInfo | None = None,
) -> User:
    """Create a user; ``actor`` is the administrator who did it (``None``: the command line)."""
    new_user = prepare_user(ctx, username=username, email=email, password=password, role=role)
    with ctx.uow() as uow:
        user = add_prepared_user(ctx, uow, new_user, actor=actor, client=client)
        uow.commit()
    return user


def list_users(ctx: ServiceContext) -> Sequence[User]:
    with ctx.uow() as uow:
        return uow.users.list_all()


def find_user(ctx: ServiceContext, username: str) -> User:
    key = username_key(username)
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key) if key else None
    if user is None:
        raise UserNotFound(_("No user named %(name)s exists.", name=repr(username)))
    return user


def set_password(
    ctx: ServiceContext,
    *,
    username: str,
    password: str,
    actor: User | None = None,
    client: ClientInfo | None = None,
) -> int:
    """Set a new password, end every session of the user and forget their remembered browsers; returns how many
    sessions ended. Audited, with ``actor`` the administrator who did it (``None``: the command line)."""
    password_hash = ctx.passwords.hash(checked_password(password, username=username))
    key = username_key(username)
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key) if key else None
        if user is None:
            raise UserNotFound(_("No user named %(name)s exists.", name=repr(username)))
        uow.users.set_password_hash(user.id, password_hash)
        ended = uow.sessions.revoke_all_for_user(user.id, ctx.clock.now())
        # Someone else chose this password: no browser remembered before may skip the second step after it.
        forgotten = devices.forgotten_details(devices.forget_all(ctx, uow, user.id))
        audit.record(ctx, uow, EventType.USER_PASSWORD_SET, client=client, actor=actor, subject=user, details=forgotten)
        if ended:
            details: dict[str, Detail] = {"sessions": ended, "reason": "password_set"}
            event = EventType.SESSIONS_REVOKED_ALL
            audit.record(ctx, uow, event, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return ended


def set_preferences(
    ctx: ServiceContext, user: User, *, locale: str | None, time_zone: str | None, client: ClientInfo
) -> User:
    """The person's language and time zone (``None``: not chosen, the browser's are used); audited."""
    if locale is not None and locale not in LOCALES:
        raise InvalidInput(_("Choose one of the languages nidan speaks: %(choices)s.", choices=", ".join(LOCALES)))
    if time_zone is not None and not known_time_zone(time_zone):
        raise InvalidInput(
            _("That is not a time zone nidan knows (%(zone)s). Choose one such as Asia/Tokyo.", zone=time_zone)
        )
    with ctx.uow() as uow:
        uow.users.set_preferences(user.id, locale, time_zone)
        chosen: dict[str, Detail] = {"locale": locale, "time_zone": time_zone}
        event = EventType.PREFERENCES_CHANGED
        audit.record(ctx, uow, event, client=client, actor=user, subject=user, details=chosen)
        uow.commit()
    return replace(user, locale=locale, time_zone=time_zone)
