"""Remembered browsers on both back ends: remember, admit and rotate, a copied token, two uses at once, expiry, the
policy (the strictest organisation, the instance's for everyone else), listing and forgetting."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.devices import DEVICE_TOKEN_PREFIX
from nidan.core.models import InstanceRole, OrgRole
from nidan.core.tokens import looks_like_token
from nidan.db import tables as t
from nidan.errors import DeviceNotFound, InvalidInput, NotPermitted
from nidan.services import devices, organisations, user_admin
from nidan.services.context import ServiceContext
from tests import helpers
from tests.helpers import make_user
from tests.integration.devices_support import (
    BROWSER,
    CLI,
    DAY,
    ELSEWHERE,
    admit,
    advance,
    events,
    remember,
    remember_days,
    remembered,
    remembering,
    set_remember_days,
)


@pytest.fixture
def ctx(runtime: Runtime) -> ServiceContext:
    """Services whose instance remembers browsers for 30 days."""
    return remembering(runtime, 30).services


def device_rows(runtime: Runtime) -> list[tuple[int, bool]]:
    """(id, revoked) of every stored device."""
    d = t.remembered_devices.c
    with runtime.engine.connect() as connection:
        rows = connection.execute(select(d.id, d.revoked_at).order_by(d.id)).all()
    return [(row.id, row.revoked_at is not None) for row in rows]


# --- remember, admit, rotate -----------------------------------------------------------------------------------


def test_a_remembered_browser_gets_a_token_shown_once_and_stored_as_a_keyed_hash(
    ctx: ServiceContext, runtime: Runtime
) -> None:
    alice = make_user(ctx)
    device = remembered(ctx, alice)
    assert looks_like_token(device.token, prefix=DEVICE_TOKEN_PREFIX)  # 256 random bits
    assert device.expires_at == ctx.clock.now() + timedelta(days=30)
    assert device.token not in repr(device)
    with runtime.engine.connect() as connection:
        stored = connection.execute(select(t.remembered_device_tokens.c.token_hash)).scalars().all()
    assert stored == [ctx.hash_token(device.token, "remembered_device")]
    (added,) = events(ctx, EventType.REMEMBERED_DEVICE_ADDED)
    assert added.subject_username == "alice" and added.actor_username == "alice"
    assert added.details["device_id"] == device.device_id and added.details["days"] == 30
    assert added.details["browser"] == "Chrome on Windows"


def test_each_use_rotates_the_token_and_never_moves_the_expiry(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    device = remembered(ctx, alice)
    token = device.token
    for _ in range(3):
        advance(ctx, DAY)
        admitted = admit(ctx, alice.id, token, ELSEWHERE)
        assert admitted is not None and admitted.device_id == device.device_id
        assert admitted.next_token != token and looks_like_token(admitted.next_token, prefix=DEVICE_TOKEN_PREFIX)
        assert admitted.expires_at == device.expires_at
        token = admitted.next_token
    (view,) = devices.devices_of(ctx, alice.id)
    assert view.last_used_at == ctx.clock.now() and view.last_ip == ELSEWHERE.ip
    assert view.first_ip == BROWSER.ip and view.first_used_at == device.expires_at - timedelta(days=30)
    assert events(ctx, EventType.REMEMBERED_DEVICE_REPLAYED) == []


def test_a_rotated_token_presented_again_is_a_copy_the_browser_is_forgotten(
    ctx: ServiceContext, runtime: Runtime
) -> None:
    alice = make_user(ctx)
    device = remembered(ctx, alice)
    admitted = admit(ctx, alice.id, device.token)
    assert admitted is not None
    assert admit(ctx, alice.id, device.token, ELSEWHERE) is None  # the copy: sign-in goes on to the second step
    (replayed,) = events(ctx, EventType.REMEMBERED_DEVICE_REPLAYED)
    assert replayed.subject_username == "alice" and replayed.actor_user_id is None
    assert replayed.details["device_id"] == device.device_id and replayed.client_ip == ELSEWHERE.ip
    # The whole device is revoked: the successor the real browser holds stops working too.
    assert admit(ctx, alice.id, admitted.next_token) is None
    assert device_rows(runtime) == [(device.device_id, True)]
    assert devices.devices_of(ctx, alice.id) == []
    assert admit(ctx, alice.id, device.token) is None
    assert len(events(ctx, EventType.REMEMBERED_DEVICE_REPLAYED)) == 1  # once: it was forgotten already


@pytest.mark.parametrize(
    "token",
    ["", "nidan_d_", "nidan_d_short", "garbage", "nidan_s_" + "A" * 43, " nidan_d_" + "A" * 43, "nidan_d_" + "A" * 43],
)
def test_anything_but_a_current_token_is_simply_not_admitted(ctx: ServiceContext, token: str) -> None:
    alice = make_user(ctx)
    remembered(ctx, alice)
    assert admit(ctx, alice.id, token) is None
    assert events(ctx, EventType.REMEMBERED_DEVICE_REPLAYED) == []


def test_another_users_token_admits_nobody_and_stays_theirs(ctx: ServiceContext, runtime: Runtime) -> None:
    alice, mallory = make_user(ctx), make_user(ctx, "mallory")
    device = remembered(ctx, alice)
    assert admit(ctx, mallory.id, device.token) is None
    assert admit(ctx, alice.id, device.token) is not None  # not rotated, not revoked
    assert events(ctx, EventType.REMEMBERED_DEVICE_REPLAYED) == []
    # A rotated token of alice's, presented for mallory, touches nothing of alice's either.
    assert admit(ctx, mallory.id, device.token) is None
    assert device_rows(runtime) == [(device.device_id, False)]


def test_two_uses_of_one_token_at_once_admit_exactly_one(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    device = remembered(ctx, alice)
    outcomes = helpers.race(2, lambda _: admit(ctx, alice.id, device.token), ())
    admitted = [o for o in outcomes if isinstance(o, devices.Admitted)]
    assert len(admitted) == 1 and outcomes.count(None) == 1
    # The loser cannot be told from a copy: the device is forgotten.
    assert len(events(ctx, EventType.REMEMBERED_DEVICE_REPLAYED)) == 1
    assert admit(ctx, alice.id, admitted[0].next_token) is None


def test_many_uses_of_one_token_at_once_without_the_row_lock_still_rotate_it_once(ctx: ServiceContext) -> None:
    """The conditional UPDATE alone decides, whatever the caller locks."""
    alice = make_user(ctx)
    device = remembered(ctx, alice)

    def attempt(_: int) -> devices.Admitted | None:
        with ctx.uow() as uow:
            found = devices.admit(ctx, uow, alice.id, device.token, BROWSER)
            uow.commit()
        return found

    outcomes = helpers.race(6, attempt, ())
    assert len([o for o in outcomes if isinstance(o, devices.Admitted)]) == 1


def test_the_expiry_is_fixed_when_remembered(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    device = remembered(ctx, alice)
    advance(ctx, 29 * DAY)
    admitted = admit(ctx, alice.id, device.token)
    assert admitted is not None
    advance(ctx, DAY)  # 30 days after it was remembered, the day after its last use
    assert admit(ctx, alice.id, admitted.next_token) is None
    assert devices.devices_of(ctx, alice.id) == []
    assert events(ctx, EventType.REMEMBERED_DEVICE_REPLAYED) == []


# --- the policy ------------------------------------------------------------------------------------------------


def test_with_the_policy_off_nothing_is_remembered(runtime: Runtime) -> None:
    ctx = runtime.services  # the instance's default: 0 days
    alice = make_user(ctx)
    assert remember_days(ctx, alice.id) == 0
    assert remember(ctx, alice) is None
    assert events(ctx, EventType.REMEMBERED_DEVICE_ADDED) == []


def test_turning_the_policy_off_later_stops_remembered_browsers(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    device = remembered(ctx, alice)
    set_remember_days(ctx, "default", 0)
    assert admit(ctx, alice.id, device.token) is None
    assert devices.devices_of(ctx, alice.id) == []
    set_remember_days(ctx, "default", None)  # back to the instance's 30: nothing was spent meanwhile
    assert admit(ctx, alice.id, device.token) is not None


def test_a_policy_made_shorter_applies_to_browsers_remembered_before(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    device = remembered(ctx, alice)
    advance(ctx, 8 * DAY)
    set_remember_days(ctx, "default", 7)
    assert admit(ctx, alice.id, device.token) is None
    set_remember_days(ctx, "default", 10)
    (view,) = devices.devices_of(ctx, alice.id)
    assert view.expires_at == device.expires_at - timedelta(days=20)  # shown as it now applies
    admitted = admit(ctx, alice.id, device.token)
    assert admitted is not None and admitted.expires_at == view.expires_at


def test_the_strictest_organisation_wins(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    for slug, days in (("lax", 60), ("careful", 7), ("unset", None)):
        organisations.create(ctx, slug=slug, name=slug, actor=None, client=CLI)
        set_remember_days(ctx, slug, days)
        organisations.add_member(ctx, slug, username="alice", role=OrgRole.MEMBER, managed=True, actor=None, client=CLI)
    assert remember_days(ctx, alice.id) == 7
    device = remembered(ctx, alice)
    assert device.expires_at == ctx.clock.now() + timedelta(days=7)
    set_remember_days(ctx, "careful", 0)  # one organisation turns it off: off for its members
    assert remember_days(ctx, alice.id) == 0
    assert remember(ctx, alice) is None
    organisations.remove_member(ctx, "careful", username="alice", actor=None, client=CLI)
    assert remember_days(ctx, alice.id) == 30  # "unset" and "default" follow the instance: 30 < 60


def test_a_user_in_no_organisation_gets_the_instances_setting(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    set_remember_days(ctx, "default", 3)
    assert remember_days(ctx, alice.id) == 3
    organisations.remove_member(ctx, "default", username="alice", actor=None, client=CLI)
    assert remember_days(ctx, alice.id) == 30


@pytest.mark.parametrize("days", [-1, 91, 365])
def test_an_organisation_may_remember_for_0_to_90_days(ctx: ServiceContext, days: int) -> None:
    with pytest.raises(InvalidInput, match="0 to 90 days"):
        set_remember_days(ctx, "default", days)
    set_remember_days(ctx, "default", 90)
    set_remember_days(ctx, "default", 0)
    assert organisations.show(ctx, "default", actor=None).organisation.policy.remember_device_days == 0
    changed = events(ctx, EventType.ORGANISATION_POLICY_CHANGED)[-1]
    assert changed.details["remember_device_days"] == 0


# --- listing and forgetting ------------------------------------------------------------------------------------


def test_people_see_their_browsers_in_words_and_forget_one(ctx: ServiceContext) -> None:
    alice = make_user(ctx)
    first = remembered(ctx, alice)
    advance(ctx, 60)
    second = remembered(ctx, alice, ELSEWHERE)
    listed = devices.devices_of(ctx, alice.id)
    assert [(v.id, v.browser) for v in listed] == [
        (second.device_id, "Firefox on Linux"),
        (first.device_id, "Chrome on Windows"),
    ]
    devices.forget(ctx, alice, first.device_id, client=BROWSER)
    assert [v.id for v in devices.devices_of(ctx, alice.id)] == [second.device_id]
    assert admit(ctx, alice.id, first.token) is None
    (forgotten,) = events(ctx, EventType.REMEMBERED_DEVICE_FORGOTTEN)
    assert forgotten.actor_username == "alice" and forgotten.details["device_id"] == first.device_id
    with pytest.raises(DeviceNotFound):
        devices.forget(ctx, alice, first.device_id, client=BROWSER)  # forgotten already


def test_nobody_forgets_someone_elses_browser(ctx: ServiceContext) -> None:
    alice, mallory = make_user(ctx), make_user(ctx, "mallory")
    device = remembered(ctx, alice)
    with pytest.raises(DeviceNotFound):
        devices.forget(ctx, mallory, device.device_id, client=BROWSER)
    assert devices.devices_of(ctx, mallory.id) == []
    assert admit(ctx, alice.id, device.token) is not None


def test_remembering_again_clears_out_what_no_longer_admits_anyone(ctx: ServiceContext, runtime: Runtime) -> None:
    alice = make_user(ctx)
    old = remembered(ctx, alice)
    gone = remembered(ctx, alice)
    devices.forget(ctx, alice, gone.device_id, client=BROWSER)
    advance(ctx, 31 * DAY)
    new = remembered(ctx, alice)
    assert device_rows(runtime) == [(new.device_id, False)]
    assert old.device_id < new.device_id


def test_an_administrator_forgets_all_of_a_users_browsers_with_a_reason(ctx: ServiceContext) -> None:
    root = make_user(ctx, "root", role=InstanceRole.ADMIN)
    alice = make_user(ctx)
    tokens = [remembered(ctx, alice).token, remembered(ctx, alice, ELSEWHERE).token]
    user, forgotten = user_admin.forget_devices(
        ctx, username="ALICE", actor=root, client=BROWSER, reason="  lost laptop,\tticket 7 "
    )
    assert (user.id, forgotten) == (alice.id, 2)
    assert all(admit(ctx, alice.id, token) is None for token in tokens)
    (event,) = events(ctx, EventType.REMEMBERED_DEVICES_FORGOTTEN)
    assert event.actor_username == "root" and event.subject_username == "alice"
    assert event.details["count"] == 2 and event.details["reason"] == "lost laptop, ticket 7"
    assert user_admin.forget_devices(ctx, username="alice", actor=None, client=CLI, reason=None)[1] == 0


def test_only_those_who_manage_a_user_forget_their_browsers(ctx: ServiceContext) -> None:
    alice, bob = make_user(ctx), make_user(ctx, "bob")
    device = remembered(ctx, alice)
    with pytest.raises(NotPermitted):
        user_admin.forget_devices(ctx, username="alice", actor=bob, client=BROWSER, reason="nope")
    with pytest.raises(NotPermitted):  # an unknown name looks the same to them
        user_admin.forget_devices(ctx, username="nobody", actor=bob, client=BROWSER, reason="nope")
    with pytest.raises(InvalidInput):
        user_admin.forget_devices(ctx, username="alice", actor=None, client=CLI, reason="x" * 201)
    assert admit(ctx, alice.id, device.token) is not None
    assert events(ctx, EventType.REMEMBERED_DEVICES_FORGOTTEN) == []
