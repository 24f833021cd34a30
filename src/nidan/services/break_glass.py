"""Break-glass: the last administrator lost their second factor. Local access to the server is the proof.

``nidan admin recover USERNAME`` (run on the server, where only operators can) removes that administrator's second
factors and blocks, and prints a one-time link. Opening it starts a sign-in that may only set up 2FA; nothing else
opens without it. The web sign-in itself never has a way around 2FA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, InstanceRole, User
from nidan.core.tokens import looks_like_token, new_token
from nidan.errors import InvalidInput, RecoveryLinkInvalid
from nidan.services import accounts, audit, signin, throttling, user_admin
from nidan.services.context import ServiceContext

LINK_LIFETIME = timedelta(hours=1)
LINK_PURPOSE = "recovery_link"


@dataclass(frozen=True, slots=True)
class Recovery:
    user: User
    #: The one-time link's token: printed once on the server's terminal, never stored.
    token: str = field(repr=False)
    sessions_ended: int


def recover_admin(ctx: ServiceContext, *, username: str, client: ClientInfo) -> Recovery:
    """Reset an instance administrator's 2FA and blocks and make a one-time link into setting it up again."""
    user = accounts.find_user(ctx, username)
    if user.role is not InstanceRole.ADMIN:
        # English on purpose (a plain str): only ``nidan admin recover`` on the server's terminal gets here.
        raise InvalidInput(
            f"{user.username} is not an instance administrator. For other users, an administrator resets 2FA "
            f"(`nidan user reset-2fa {user.username}`)."
        )
    token = new_token(ctx.random_bytes)
    now = ctx.clock.now()
    with ctx.uow() as uow:
        uow.users.lock(user.id)
        removed = user_admin.remove_factors(ctx, uow, user)
        uow.users.require_registration(user.id, now)
        cleared = throttling.reset_all(ctx, uow, user)
        uow.recovery_links.add(user.id, ctx.hash_token(token, LINK_PURPOSE), now, now + LINK_LIFETIME)
        details: dict[str, Detail] = {**removed.details(), "counters_cleared": cleared}
        audit.record(ctx, uow, EventType.ADMIN_RECOVERED, client=client, actor=None, subject=user, details=details)
        uow.commit()
    return Recovery(user, token, removed.sessions_ended)


def check_link(ctx: ServiceContext, token: str) -> None:
    if not looks_like_token(token):
        raise RecoveryLinkInvalid()
    with ctx.uow() as uow:
        if not uow.recovery_links.is_valid(ctx.hash_token(token, LINK_PURPOSE), ctx.clock.now()):
            raise RecoveryLinkInvalid()


def redeem(ctx: ServiceContext, *, token: str, client: ClientInfo) -> signin.SetupRequired:
    """Spend the link (once) and start a sign-in that may only set up 2FA."""
    if not looks_like_token(token):
        raise RecoveryLinkInvalid()
    with ctx.uow() as uow:
        user_id = uow.recovery_links.consume(ctx.hash_token(token, LINK_PURPOSE), ctx.clock.now())
        user = uow.users.get(user_id) if user_id is not None else None
        if user is None:
            raise RecoveryLinkInvalid()
        audit.record(ctx, uow, EventType.RECOVERY_LINK_USED, client=client, actor=user, subject=user)
        required = signin.open_enrolment(ctx, uow, user, client, "administrator", via="recovery_link")
        uow.commit()
    return required
