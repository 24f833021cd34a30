"""Remembered browsers: "don't ask for the second step again on this browser", for as many days as policy allows.

``remember`` and ``admit`` run inside the sign-in's own transaction (the caller holds the user's row lock and
commits); listing and forgetting are use cases of their own. Every browser of a user is forgotten, in the same
transaction, when their second factors change or go, when 2FA is turned off and when an administrator resets 2FA,
asks for it to be registered again or sets their password (``forget_all``): whoever made such a change must not
find a browser that skips the new second step.

The rotating token, its replay detection and the fixed expiry are described in ``nidan.core.devices``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nidan.core import user_agents
from nidan.core.audit import Detail, EventType
from nidan.core.devices import (
    DEVICE_TOKEN_PREFIX,
    DEVICE_TOKEN_PURPOSE,
    RememberedDeviceRecord,
    is_usable,
    usable_until,
)
from nidan.core.models import ClientInfo, User
from nidan.core.policy import remember_days_in_force
from nidan.core.ports import UnitOfWork
from nidan.core.tokens import looks_like_token, new_token
from nidan.errors import DeviceNotFound
from nidan.services import audit
from nidan.services.context import ServiceContext
from nidan.texts import Text

#: The detail the events of the changes that forget every browser carry (only when some were forgotten).
FORGOTTEN_DETAIL = "remembered_devices_forgotten"


@dataclass(frozen=True, slots=True)
class RememberedDevice:
    """A browser just remembered: its first token goes to the browser (a cookie) and is never shown again."""

    device_id: int
    token: str = field(repr=False)
    #: The token works until then at the latest (the cookie's expiry); using it never moves this.
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Admitted:
    """A remembered browser skipped the second step. The token it sent stopped working: ``next_token`` replaces
    it (the caller sets it in the browser, with ``expires_at``)."""

    next_token: str = field(repr=False)
    device_id: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceView:
    """A remembered browser as its owner sees it in their list."""

    id: int
    #: The browser and system in words (``Chrome on Windows``), from the User-Agent it was remembered with.
    browser: str
    first_used_at: datetime
    last_used_at: datetime | None
    first_ip: str | None
    last_ip: str | None
    #: When it stops skipping the second step (the user's policy now may make that earlier than it was).
    expires_at: datetime
    #: ``browser`` for a page, in the reader's language (``| said``).
    label: Text


def remember_days(ctx: ServiceContext, uow: UnitOfWork, user_id: int) -> int:
    """Days a browser of the user may be remembered now (0: not at all): the smallest of their organisations'
    settings, an organisation without one counting as the instance's; the instance's for a user in none."""
    policies = uow.organisations.policies_of(user_id)
    return remember_days_in_force((policy.remember_device_days for policy, _ in policies), ctx.remember_device_days)


def _hash(ctx: ServiceContext, token: str) -> bytes:
    return ctx.hash_token(token, DEVICE_TOKEN_PURPOSE)


def remember(ctx: ServiceContext, uow: UnitOfWork, user: User, client: ClientInfo) -> RememberedDevice | None:
    """Remember the browser ``client`` describes for ``user``, who just passed the second step, in the caller's
    transaction (the caller commits). ``None`` when the user's policy does not allow it (0 days). Audited as
    ``remembered_device.added``."""
    days = remember_days(ctx, uow, user.id)
    if days <= 0:
        return None
    now = ctx.clock.now()
    token = new_token(ctx.random_bytes, prefix=DEVICE_TOKEN_PREFIX)
    # What no longer admits anyone goes now, so that a user's rows stay about as many as their browsers.
    uow.remembered_devices.delete_dead(user.id, now)
    device = uow.remembered_devices.add(
        user.id, _hash(ctx, token), now, now + timedelta(days=days), client.ip, client.user_agent
    )
    details: dict[str, Detail] = {
        "device_id": device.id,
        "days": days,
        "browser": user_agents.describe(client.user_agent),
    }
    audit.record(ctx, uow, EventType.REMEMBERED_DEVICE_ADDED, client=client, actor=user, subject=user, details=details)
    return RememberedDevice(device.id, token, device.expires_at)


def admit(ctx: ServiceContext, uow: UnitOfWork, user_id: int, token: str, client: ClientInfo) -> Admitted | None:
    """Whether the browser that sent ``token`` may skip the user's second step, in the caller's transaction (the
    caller holds the user's row lock and commits). A current token of one of the user's remembered browsers, not
    revoked, not expired and within the user's policy now, is rotated: the answer carries its successor. A token
    rotated before was copied: its browser is forgotten (``remembered_device.replayed``). Anything else, malformed
    input included, is ``None`` alike: the caller asks for the second step and tells nobody why."""
    if not isinstance(token, str) or not looks_like_token(token, prefix=DEVICE_TOKEN_PREFIX):
        return None
    days = remember_days(ctx, uow, user_id)
    now = ctx.clock.now()
    presented = _hash(ctx, token)
    device = None
    if days > 0:
        oldest = now - timedelta(days=days)
        device = uow.remembered_devices.rotate(presented, user_id=user_id, now=now, created_after=oldest)
    if device is None:
        _forget_if_replayed(ctx, uow, user_id, presented, client)
        return None
    successor = new_token(ctx.random_bytes, prefix=DEVICE_TOKEN_PREFIX)
    uow.remembered_devices.issue(device.id, _hash(ctx, successor), now, client.ip)
    return Admitted(successor, device.id, usable_until(device, days))


def _forget_if_replayed(
    ctx: ServiceContext, uow: UnitOfWork, user_id: int, presented: bytes, client: ClientInfo
) -> None:
    """A rotated token of one of the user's browsers came back: the browser moved on to its successor, so this
    one is a copy (or one of two requests sent at once lost the race, which cannot be told apart). The browser is
    revoked, and the sign-in goes on to the second step."""
    found = uow.remembered_devices.find_token(presented)
    if found is None or found.rotated_at is None:
        return
    device = found.device
    if device.user_id != user_id or device.revoked_at is not None:
        return  # another user's, or forgotten already: nothing of this user's is at stake
    now = ctx.clock.now()
    uow.remembered_devices.revoke(device.id, now)
    details: dict[str, Detail] = {
        "device_id": device.id,
        "rotated_at": found.rotated_at.isoformat(),
        "browser": user_agents.describe(device.user_agent),
    }
    subject = uow.users.get(user_id)
    audit.record(
        ctx, uow, EventType.REMEMBERED_DEVICE_REPLAYED, client=client, actor=None, subject=subject, details=details
    )


def forget_all(ctx: ServiceContext, uow: UnitOfWork, user_id: int) -> int:
    """Revoke every remembered browser of the user in the caller's transaction; how many still worked."""
    return uow.remembered_devices.revoke_all(user_id, ctx.clock.now())


def forgotten_details(count: int) -> dict[str, Detail]:
    """The detail a change that forgot ``count`` browsers adds to its own event (nothing when none were)."""
    return {FORGOTTEN_DETAIL: count} if count else {}


def _view(device: RememberedDeviceRecord, days: int) -> DeviceView:
    return DeviceView(
        id=device.id,
        browser=user_agents.describe(device.user_agent),
        first_used_at=device.created_at,
        last_used_at=device.last_used_at,
        first_ip=device.first_ip,
        last_ip=device.last_ip,
        expires_at=usable_until(device, days),
        label=user_agents.label(device.user_agent),
    )


def devices_of(ctx: ServiceContext, user_id: int) -> list[DeviceView]:
    """The user's browsers that skip the second step now, last used first."""
    now = ctx.clock.now()
    with ctx.uow() as uow:
        days = remember_days(ctx, uow, user_id)
        found = uow.remembered_devices.list_live(user_id, now)
    return [_view(device, days) for device in found if is_usable(device, days, now)]


def forget(ctx: ServiceContext, user: User, device_id: int, *, client: ClientInfo) -> None:
    """The user forgets one of their own remembered browsers: it asks for the second step again. Another user's
    browser is "not found", like one that never existed. Audited as ``remembered_device.forgotten``."""
    with ctx.uow() as uow:
        if not uow.remembered_devices.revoke(device_id, ctx.clock.now(), user_id=user.id):
            raise DeviceNotFound()
        details: dict[str, Detail] = {"device_id": device_id}
        audit.record(
            ctx, uow, EventType.REMEMBERED_DEVICE_FORGOTTEN, client=client, actor=user, subject=user, details=details
        )
        uow.commit()
