"""``lock_for_second_step``: the user, their active authenticator and their second step's backoff in one query, as
the three separate reads give them (on every back end)."""

from __future__ import annotations

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.core.models import ClientInfo, ThrottleScope
from nidan.core.ports import SecondStep
from nidan.services import enrollment, throttling
from tests.helpers import code_at, make_user

CLIENT = ClientInfo()


def read(runtime: Runtime, key: str | None, unknown_key: str = "~nobody") -> SecondStep:
    with runtime.services.uow() as uow:
        return uow.users.lock_for_second_step(key, unknown_key)


def separately(runtime: Runtime, key: str) -> tuple[object, object, object]:
    ctx = runtime.services
    with ctx.uow() as uow:
        user = uow.users.get_by_username_key(key)
        assert user is not None
        subject = throttling.second_factor(ctx, user.id)
        return user, uow.totp.get_active(user.id), uow.throttles.get(subject.scope, subject.key)


def test_nobody_by_that_name_is_none_with_the_names_own_backoff(runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    with ctx.uow() as uow:
        throttling.count_under_lock(ctx, uow, throttling.Subject(ThrottleScope.SECOND_FACTOR, "~nobody", ctx.backoff))
        throttling.count_under_lock(ctx, uow, throttling.second_factor(ctx, alice.id))
        uow.commit()
    assert read(runtime, "nobody", "~someone") == SecondStep(None, None, None)
    found = read(runtime, "nobody", "~nobody")
    assert (found.user, found.authenticator) == (None, None)
    assert found.backoff is not None and found.backoff.failures == 1
    # A name that cannot be a username (no key) finds nobody either, and still the name's counter.
    assert read(runtime, None, "~nobody").backoff == found.backoff


def test_a_user_without_an_authenticator_or_counter(runtime: Runtime) -> None:
    ctx = runtime.services
    user = make_user(ctx, "alice")
    enrollment.start_totp(ctx, user)  # pending, not active: not the user's authenticator yet
    found = read(runtime, "alice")
    # Read as they are: the stand-in values the statement carries for a missing row never replace a real NULL.
    assert user.last_sign_in_at is None
    assert (found.user, found.authenticator, found.backoff) == (user, None, None)


def test_the_active_authenticator_and_the_backoff_are_those_read_apart(runtime: Runtime) -> None:
    ctx = runtime.services
    other = make_user(ctx, "bob")
    user = make_user(ctx, "alice")
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT)
    ctx.clock.advance(totp.PERIOD)  # type: ignore[attr-defined]
    # Failures for alice's second step, and a counter of another scope with her id as its key: not hers.
    with ctx.uow() as uow:
        throttling.count_under_lock(ctx, uow, throttling.second_factor(ctx, user.id))
        throttling.count_under_lock(ctx, uow, throttling.second_factor(ctx, user.id))
        throttling.count_under_lock(ctx, uow, throttling.second_factor(ctx, other.id))
        throttling.count_under_lock(ctx, uow, throttling.password_subjects(ctx, str(user.id), None)[1])
        uow.commit()
    found = read(runtime, "alice")
    expected_user, authenticator, backoff = separately(runtime, "alice")
    assert found.user == expected_user
    assert found.authenticator == authenticator and authenticator is not None
    assert found.backoff == backoff and backoff is not None and backoff.failures == 2
    assert backoff.blocked_until is not None and backoff.blocked_until.tzinfo is not None
