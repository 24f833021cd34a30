"""Administrators helping a user: reset their 2FA, ask them to register again, forget their remembered browsers,
see how they stand.

Every action here is called by an administrator who passed step-up (the faces check that), is allowed over the user
(``authority``), and is audited with the reason. The command line on the server (``actor=None``) may do all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, User
from nidan.core.organisations import Membership
from nidan.core.ports import UnitOfWork
from nidan.core.second_step import Purpose
from nidan.errors import InvalidCode, NoEnrollment, NotPermitted, UserNotFound
from nidan.services import accounts, audit, authority, devices, enrollment, second_step, throttling
from nidan.services.context import ServiceContext
from nidan.services.signin import CurrentSession
from nidan.texts import _


@dataclass(frozen=True, slots=True)
class RemovedFactors:
    #: The user had an authenticator app that is now gone.
    had_two_factor: bool
    sessions_ended: int
    #: Remembered browsers that would have skipped the second step, now forgotten.
    devices_forgotten: int

    def details(self) -> dict[str, Detail]:
        """For the audit event of the action that removed them."""
        return {
            "had_two_factor": self.had_two_factor,
            "sessions_ended": self.sessions_ended,
            **devices.forgotten_details(self.devices_forgotten),
        }


@dataclass(frozen=True, slots=True)
class ResetResult:
    user: User
    #: The user had an authenticator app (or a pending one) that is now gone.
    had_two_factor: bool
    sessions_ended: int


def _find_for(ctx: ServiceContext, actor: User | None, username: str) -> User:
    """The user; to an organisation's manager an unknown name looks like one they may not touch (no enumeration)."""
    try:
        return accounts.find_user(ctx, username)
    except UserNotFound:
        if actor is not None and not authority.is_instance_admin(actor):
            raise NotPermitted() from None
        raise


def remove_factors(ctx: ServiceContext, uow: UnitOfWork, user: User) -> RemovedFactors:
    """Every second factor and recovery code of the user, every session (signed out everywhere) and every
    remembered browser (none may skip the second step they will set up next)."""
    now = ctx.clock.now()
    had = uow.totp.get_active(user.id) is not None
    uow.totp.delete_all(user.id)
    uow.recovery_codes.revoke_all(user.id, now)
    ended = uow.sessions.revoke_all_for_user(user.id, now)
    return RemovedFactors(had, ended, devices.forget_all(ctx, uow, user.id))


def reset_two_factor(
    ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None
) -> ResetResult:
    """A lost phone: remove the user's authenticator app and recovery codes, sign them out everywhere, and lead
    them into setting 2FA up again at their next sign-in (whatever the policy). Audited with the reason."""
    reason = audit.checked_reason(reason)
    user = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        uow.users.lock(user.id)
        authority.require_user_manager(uow, actor, user, not_self=True)
        removed = remove_factors(ctx, uow, user)
        uow.users.require_registration(user.id, ctx.clock.now())
        details: dict[str, Detail] = {**removed.details(), "reason": reason}
        audit.record(ctx, uow, EventType.TWO_FACTOR_RESET, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return ResetResult(user, removed.had_two_factor, removed.sessions_ended)


def require_registration(
    ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None
) -> User:
    """Azure's "require re-register MFA": at the next sign-in (after their current second factor, if any) the user
    sets up their authenticator app again. Only their remembered browsers are forgotten now (each would skip the
    second step that leads into that setup). Audited with the reason."""
    reason = audit.checked_reason(reason)
    user = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        authority.require_user_manager(uow, actor, user, not_self=True)
        uow.users.require_registration(user.id, ctx.clock.now())
        forgotten = devices.forget_all(ctx, uow, user.id)
        details: dict[str, Detail] = {"reason": reason, **devices.forgotten_details(forgotten)}
        event = EventType.REGISTRATION_REQUIRED
        audit.record(ctx, uow, event, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return user


def forget_devices(
    ctx: ServiceContext, *, username: str, actor: User | None, client: ClientInfo, reason: str | None
) -> tuple[User, int]:
    """A lost or shared computer: every browser the user asked to be remembered asks for the second step again.
    Nothing else changes (their sessions and factors stay). Audited as ``remembered_devices.forgotten`` with the
    count and the reason. Returns the user and how many browsers were forgotten."""
    reason = audit.checked_reason(reason)
    user = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        authority.require_user_manager(uow, actor, user)
        forgotten = devices.forget_all(ctx, uow, user.id)
        details: dict[str, Detail] = {"count": forgotten, "reason": reason}
        event = EventType.REMEMBERED_DEVICES_FORGOTTEN
        audit.record(ctx, uow, event, client=client, actor=actor, subject=user, details=details)
        uow.commit()
    return user, forgotten


def unenroll(ctx: ServiceContext, *, admin: CurrentSession, username: str, totp_code: str, client: ClientInfo) -> User:
    """Atlassian's unenroll contract: an instance administrator with TOTP confirms with their own current code
    (which is the step-up for this one call; a wrong one counts towards their backoff), then the user's second
    factors are removed. Refusals in this order: wrong code (401), unknown user (404), themselves (403), no
    enrolment (400). At the next sign-in the user sets 2FA up again if a policy requires it."""
    _confirm_own_code(ctx, admin.user, totp_code, client)
    user = accounts.find_user(ctx, username)
    with ctx.uow() as uow:
        uow.users.lock(user.id)
        authority.require_user_manager(uow, admin.user, user, not_self=True)
        if uow.totp.get_active(user.id) is None and uow.totp.get_pending(user.id) is None:
            raise NoEnrollment()
        removed = remove_factors(ctx, uow, user)
        details: dict[str, Detail] = {**removed.details(), "via": "unenroll"}
        audit.record(
            ctx, uow, EventType.TWO_FACTOR_UNENROLLED, client=client, actor=admin.user, subject=user, details=details
        )
        uow.commit()
    return user


def _confirm_own_code(ctx: ServiceContext, admin: User, code: str, client: ClientInfo) -> None:
    """The administrator's own authenticator code, proved through the second-step engine as a step-up is
    (replay-safe, counted by their backoff)."""
    with ctx.uow() as uow:
        has_totp = uow.totp.get_active(admin.id) is not None
    if not has_totp:
        raise InvalidCode(_("Set up your own authenticator app first: this action is confirmed with its code."))
    attempt = second_step.Attempt(Purpose.STEP_UP, client)
    step = second_step.Recorded(ctx, EventType.STEP_UP_SUCCEEDED, client)
    outcome = second_step.prove(ctx, attempt, user_id=admin.id, method=Method.TOTP, code=code, step=step)
    if isinstance(outcome, second_step.Refused):
        raise outcome.error


@dataclass(frozen=True, slots=True)
class UserOverview:
    user: User
    security: enrollment.SecurityState
    memberships: Sequence[Membership]
    live_tokens: int
    block: throttling.BlockStatus
    registration_required_at: datetime | None


def overview(ctx: ServiceContext, *, username: str, actor: User | None) -> UserOverview:
    """What an administrator needs to help: 2FA state, clock drift seen, organisations, tokens, blocks."""
    user = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        authority.require_user_manager(uow, actor, user)
        memberships = uow.organisations.memberships_of(user.id)
        live_tokens = uow.access_tokens.count_live(user.id, ctx.clock.now())
    return UserOverview(
        user=user,
        security=enrollment.security_state(ctx, user.id),
        memberships=memberships,
        live_tokens=live_tokens,
        block=throttling.status(ctx, username),
        registration_required_at=user.registration_required_at,
    )


def managed_users(ctx: ServiceContext, *, actor: User | None) -> list[User]:
    """The users ``actor`` may help (everyone for an instance administrator or the command line)."""
    return [managed.user for managed in managed_user_states(ctx, actor=actor)]


@dataclass(frozen=True, slots=True)
class ManagedUser:
    user: User
    #: An authenticator app is active.
    two_factor: bool


def managed_user_states(ctx: ServiceContext, *, actor: User | None) -> list[ManagedUser]:
    """``managed_users`` with whether each has 2FA on, read in one transaction (the admin console's list)."""
    with ctx.uow() as uow:
        everyone = uow.users.list_all()
        if actor is not None and not authority.is_instance_admin(actor):
            everyone = [u for u in everyone if authority.can_manage_user(uow, actor, u)]
        return [ManagedUser(u, uow.totp.get_active(u.id) is not None) for u in everyone]


def is_manager(ctx: ServiceContext, user: User) -> bool:
    """Whether ``user`` holds any administrative role: an instance administrator, or an organisation's owner,
    admin or user_admin (who may then open the admin console; what they may do there is decided per action)."""
    if authority.is_instance_admin(user):
        return True
    with ctx.uow() as uow:
        return authority.manages_anything(uow, user)


def require_manager_of(ctx: ServiceContext, *, username: str, actor: User | None, not_self: bool = False) -> User:
    """The user, if ``actor`` may act on them (for actions whose service has no say, like reading the log, and for
    asking before an action whether it would be refused: ``not_self`` as the action's service passes it)."""
    user = _find_for(ctx, actor, username)
    with ctx.uow() as uow:
        authority.require_user_manager(uow, actor, user, not_self=not_self)
    return user
