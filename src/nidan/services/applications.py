"""Relying applications: registered by an administrator, each with an API key for the verify API (shown once)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from nidan.core.access_tokens import APP_KEY_PREFIX, APP_KEY_PURPOSE, Application
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, User
from nidan.core.ports import UnitOfWork
from nidan.core.tokens import looks_like_token, new_token
from nidan.core.usernames import application_name_key
from nidan.errors import AppKeyInvalid, ApplicationNotFound, InvalidInput
from nidan.services import audit
from nidan.services.context import ServiceContext
from nidan.texts import _

#: An application's "last used" is written at most this often: it may verify many codes a second.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class RegisteredApplication:
    application: Application
    #: The API key itself: shown this once, never stored.
    api_key: str = field(repr=False)


def _name_key(name: str) -> str:
    key = application_name_key(name)
    if key is None:
        raise InvalidInput(
            _(
                "An application name is 1 to 64 characters: letters a-z, digits, '.', '_' or '-', starting and "
                "ending with a letter or digit (e.g. 'wiki' or 'vpn-gateway')."
            )
        )
    return key


def add(ctx: ServiceContext, *, name: str, actor: User | None, client: ClientInfo) -> RegisteredApplication:
    """Register an application (``actor``: the administrator; ``None``: the command line); audited."""
    key = _name_key(name)
    api_key = new_token(ctx.random_bytes, prefix=APP_KEY_PREFIX)
    with ctx.uow() as uow:
        key_hash = ctx.hash_token(api_key, APP_KEY_PURPOSE)
        by = actor.username if actor else None
        application = uow.applications.add(name.strip(), key, key_hash, ctx.clock.now(), by)
        details: dict[str, Detail] = {"app": application.name}
        audit.record(ctx, uow, EventType.APPLICATION_ADDED, client=client, actor=actor, subject=None, details=details)
        uow.commit()
    return RegisteredApplication(application, api_key)


def list_all(ctx: ServiceContext) -> Sequence[Application]:
    with ctx.uow() as uow:
        return uow.applications.list_all()


def remove(ctx: ServiceContext, *, name: str, actor: User | None, client: ClientInfo) -> Application:
    """Remove an application: its key stops working at once; audited."""
    with ctx.uow() as uow:
        application = uow.applications.remove(_name_key(name))
        if application is None:
            raise ApplicationNotFound(_("No application named %(name)s is registered.", name=repr(name.strip())))
        details: dict[str, Detail] = {"app": application.name}
        audit.record(ctx, uow, EventType.APPLICATION_REMOVED, client=client, actor=actor, subject=None, details=details)
        uow.commit()
    return application


def has_key_shape(api_key: str | None) -> bool:
    """Whether ``api_key`` looks like an application key (no query)."""
    return api_key is not None and looks_like_token(api_key, prefix=APP_KEY_PREFIX)


def require_key_shape(api_key: str | None) -> str:
    """``api_key`` when it looks like an application key (no query), else ``AppKeyInvalid``."""
    if api_key is None or not has_key_shape(api_key):
        raise AppKeyInvalid()
    return api_key


def authenticate(ctx: ServiceContext, api_key: str | None) -> Application:
    """The application holding ``api_key``, or ``AppKeyInvalid`` (a shape check first: garbage costs no query)."""
    api_key = require_key_shape(api_key)
    with ctx.uow() as uow:
        application = authenticate_in(ctx, uow, api_key)
        uow.commit()
    return application


def authenticate_in(ctx: ServiceContext, uow: UnitOfWork, api_key: str) -> Application:
    """``authenticate`` inside the caller's transaction (the caller commits): one query, no transaction of its own
    (the verify API's hot path). ``last used`` is written at most once a minute."""
    now = ctx.clock.now()
    application = uow.applications.find_by_key(ctx.hash_token(require_key_shape(api_key), APP_KEY_PURPOSE))
    if application is None:
        raise AppKeyInvalid()
    if application.last_used_at is None or application.last_used_at < now - LAST_USED_PRECISION:
        uow.applications.touch(application.id, now, not_since=now - LAST_USED_PRECISION)
    return application
