"""First start: a one-time setup link creates the first instance administrator (never a default password)."""

from __future__ import annotations

from datetime import timedelta

from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, User
from nidan.core.tokens import looks_like_token, new_token
from nidan.errors import SetupAlreadyDone, SetupTokenInvalid
from nidan.services import accounts, audit
from nidan.services.context import ServiceContext

SETUP_TOKEN_LIFETIME = timedelta(hours=24)
PURPOSE = "setup"


def needs_setup(ctx: ServiceContext) -> bool:
    with ctx.uow() as uow:
        return uow.users.count_with_role(InstanceRole.ADMIN) == 0


def issue_setup_token(ctx: ServiceContext) -> str | None:
    """A fresh setup token while no administrator exists (earlier ones stop working); ``None`` afterwards."""
    token = new_token(ctx.random_bytes)
    now = ctx.clock.now()
    with ctx.uow() as uow:
        if uow.users.count_with_role(InstanceRole.ADMIN) > 0:
            return None
        uow.setup_tokens.replace(ctx.hash_token(token, PURPOSE), now, now + SETUP_TOKEN_LIFETIME)
        uow.commit()
    return token


def check_setup_token(ctx: ServiceContext, token: str) -> None:
    """Raise unless ``token`` is a live setup token and no administrator exists yet."""
    if not needs_setup(ctx):
        raise SetupAlreadyDone()
    if not looks_like_token(token):
        raise SetupTokenInvalid()
    with ctx.uow() as uow:
        if not uow.setup_tokens.is_valid(ctx.hash_token(token, PURPOSE), ctx.clock.now()):
            raise SetupTokenInvalid()


def complete_setup(
    ctx: ServiceContext, *, token: str, username: str, email: str, password: str, client: ClientInfo | None = None
) -> User:
    """Spend the setup token and create the first administrator; audited as ``user.created`` and
    ``setup.completed`` (the new administrator is the actor of the latter: they held the link)."""
    check_setup_token(ctx, token)
    new_user = accounts.prepare_user(ctx, username=username, email=email, password=password, role=InstanceRole.ADMIN)
    with ctx.uow() as uow:
        if not uow.setup_tokens.consume(ctx.hash_token(token, PURPOSE), ctx.clock.now()):
            raise SetupTokenInvalid()
        user = accounts.add_prepared_user(ctx, uow, new_user, actor=None, client=client)
        audit.record(ctx, uow, EventType.SETUP_COMPLETED, client=client, actor=user, subject=user)
        uow.commit()
    return user
