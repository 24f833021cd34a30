"""What a signed-in person does to their own account: see and end their sessions, change their password.

A lost laptop is signed out from another device without an administrator; a password change ends every other
session and forgets every remembered browser, because whoever knew the old password may hold one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from nidan.core import user_agents
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo
from nidan.errors import InvalidCredentials, SessionNotFound, WeakPassword
from nidan.services import accounts, audit, devices, signin, throttling
from nidan.services.context import ServiceContext
from nidan.texts import Text, _


@dataclass(frozen=True, slots=True)
class SessionView:
    id: int
    #: The browser and system in words (``Chrome on Windows``), to render in the reader's language.
    device: Text
    ip: str | None
    signed_in_at: datetime
    last_seen_at: datetime | None
    expires_at: datetime
    #: The session asking.
    current: bool


def sessions_of(ctx: ServiceContext, session: signin.CurrentSession) -> list[SessionView]:
    """The person's live sessions, newest first, theirs marked."""
    with ctx.uow() as uow:
        live = uow.sessions.list_live(session.user.id, ctx.clock.now())
    return [
        SessionView(
            id=record.id,
            device=user_agents.device(record.user_agent),
            ip=record.client_ip,
            signed_in_at=record.created_at,
            last_seen_at=record.last_seen_at,
            expires_at=record.expires_at,
            current=record.id == session.session_id,
        )
        for record in live
    ]


def end_session(ctx: ServiceContext, session: signin.CurrentSession, session_id: int, client: ClientInfo) -> None:
    """End one of the person's own sessions (this one too: that is signing out); another's is not found."""
    user = session.user
    with ctx.uow() as uow:
        if not uow.sessions.revoke_of_user(user.id, session_id, ctx.clock.now()):
            raise SessionNotFound()
        details: dict[str, Detail] = {"session_id": session_id, "current": session_id == session.session_id}
        audit.record(ctx, uow, EventType.SESSION_REVOKED, client=client, actor=user, subject=user, details=details)
        uow.commit()


def end_other_sessions(ctx: ServiceContext, session: signin.CurrentSession, client: ClientInfo) -> int:
    """End every session of the person but this one; how many ended."""
    user = session.user
    with ctx.uow() as uow:
        ended = uow.sessions.revoke_others(user.id, session.session_id, ctx.clock.now())
        details: dict[str, Detail] = {"sessions": ended, "reason": "signed_out_elsewhere"}
        audit.record(ctx, uow, EventType.SESSIONS_REVOKED_ALL, client=client, actor=user, subject=user, details=details)
        uow.commit()
    return ended


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    sessions_ended: int
    browsers_forgotten: int


def change_password(
    ctx: ServiceContext, session: signin.CurrentSession, *, current: str, new: str, client: ClientInfo
) -> PasswordChanged:
    """Replace the person's password (the caller asked for a recent verification). The current password is checked
    under the backoff of their second step (a session left open is no free guessing of it); both argon2ids run
    with no transaction open. Every other session ends and every remembered browser is forgotten; audited."""
    user = session.user
    accounts.checked_password(new, username=user.username)
    if new == current:
        raise WeakPassword(_("Choose a new password that is not your current one."))
    with ctx.uow() as uow:
        subject = throttling.second_factor_of(ctx, uow, user.id)
    turn = throttling.take_turn_now(ctx, [subject])
    settled = False
    try:
        matched = ctx.passwords.verify(user.password_hash, current)
        new_hash = ctx.passwords.hash(new) if matched else None
        with ctx.uow() as uow:
            if new_hash is None:
                throttling.record_escalations(ctx, uow, turn, client, user)
                failed: dict[str, Detail] = {"reason": "current_password_wrong"}
                event = EventType.PASSWORD_CHANGE_FAILED
                audit.record(ctx, uow, event, client=client, actor=user, subject=user, details=failed)
                uow.commit()
                settled = True
                raise InvalidCredentials(
                    _("Your current password is not correct. Enter the password you sign in with.")
                )
            throttling.settle_success(ctx, uow, turn)
            uow.users.set_password_hash(user.id, new_hash)
            ended = uow.sessions.revoke_others(user.id, session.session_id, ctx.clock.now())
            forgotten = devices.forget_all(ctx, uow, user.id)
            details: dict[str, Detail] = {"sessions_ended": ended, **devices.forgotten_details(forgotten)}
            audit.record(ctx, uow, EventType.PASSWORD_CHANGED, client=client, actor=user, subject=user, details=details)
            uow.commit()
            settled = True
    except BaseException:
        if not settled:
            throttling.abandon(ctx, turn)
        raise
    return PasswordChanged(ended, forgotten)
