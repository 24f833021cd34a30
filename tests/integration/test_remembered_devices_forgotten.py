"""Every change to how a user proves the second step forgets their remembered browsers, in the same transaction:
a new or replaced authenticator, 2FA turned off, new recovery codes, an administrator's reset or request to
register again, and a password an administrator set. Someone else's browsers stay remembered."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import InstanceRole, User
from nidan.services import accounts, devices, enrollment, user_admin
from nidan.services.context import ServiceContext
from tests.helpers import code_at, make_user
from tests.integration.devices_support import CLI, admit, events, remembered, remembering, with_totp

Change = Callable[[ServiceContext, User, str], object]


def replace_the_authenticator(ctx: ServiceContext, user: User, _secret: str) -> object:
    started = enrollment.start_totp(ctx, user)
    return enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLI)


def turn_off_two_factor(ctx: ServiceContext, user: User, _secret: str) -> object:
    enrollment.disable_totp(ctx, user, client=CLI)
    return None


def new_recovery_codes(ctx: ServiceContext, user: User, _secret: str) -> object:
    return enrollment.regenerate_recovery_codes(ctx, user, client=CLI)


def administrator_resets_two_factor(ctx: ServiceContext, user: User, _secret: str) -> object:
    return user_admin.reset_two_factor(ctx, username=user.username, actor=None, client=CLI, reason="lost phone")


def administrator_requires_registration(ctx: ServiceContext, user: User, _secret: str) -> object:
    return user_admin.require_registration(ctx, username=user.username, actor=None, client=CLI, reason="new phone")


def administrator_sets_the_password(ctx: ServiceContext, user: User, _secret: str) -> object:
    return accounts.set_password(ctx, username=user.username, password="a brand new passphrase", client=CLI)


CHANGES: dict[str, tuple[Change, EventType]] = {
    "authenticator replaced": (replace_the_authenticator, EventType.TOTP_CHANGED),
    "2FA turned off": (turn_off_two_factor, EventType.TOTP_REMOVED),
    "recovery codes renewed": (new_recovery_codes, EventType.RECOVERY_CODES_REGENERATED),
    "2FA reset by an administrator": (administrator_resets_two_factor, EventType.TWO_FACTOR_RESET),
    "registration required": (administrator_requires_registration, EventType.REGISTRATION_REQUIRED),
    "password set by an administrator": (administrator_sets_the_password, EventType.USER_PASSWORD_SET),
}


@pytest.fixture
def ctx(runtime: Runtime) -> ServiceContext:
    return remembering(runtime, 30).services


@pytest.mark.parametrize("name", list(CHANGES))
def test_a_change_to_the_second_step_forgets_every_browser_of_the_user(ctx: ServiceContext, name: str) -> None:
    change, event_type = CHANGES[name]
    alice, bob = make_user(ctx), make_user(ctx, "bob")
    secret = with_totp(ctx, alice)
    with_totp(ctx, bob)
    alices = [remembered(ctx, alice).token, remembered(ctx, alice).token]
    bobs = remembered(ctx, bob).token

    change(ctx, alice, secret)

    assert all(admit(ctx, alice.id, token) is None for token in alices)
    assert devices.devices_of(ctx, alice.id) == []
    # The change's own event says how many browsers it forgot.
    event = next(e for e in reversed(events(ctx, event_type)) if e.subject_username == "alice")
    assert event.details[devices.FORGOTTEN_DETAIL] == 2
    assert admit(ctx, bob.id, bobs) is not None


def test_a_change_with_nothing_to_forget_adds_nothing_to_its_event(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    with_totp(ctx, alice)
    enrollment.regenerate_recovery_codes(ctx, alice, client=CLI)
    (event,) = events(ctx, EventType.RECOVERY_CODES_REGENERATED)
    assert devices.FORGOTTEN_DETAIL not in event.details


def test_an_administrators_reset_of_their_own_users_forgets_only_that_users_browsers(ctx: ServiceContext) -> None:
    root = make_user(ctx, "root", role=InstanceRole.ADMIN)
    alice = make_user(ctx)
    with_totp(ctx, root)
    with_totp(ctx, alice)
    roots = remembered(ctx, root).token
    user_admin.reset_two_factor(ctx, username="alice", actor=root, client=CLI, reason="lost phone")
    assert admit(ctx, root.id, roots) is not None
