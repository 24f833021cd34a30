"""Step-up at the service level, on every configured database: the new session, single use under races, the lock."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import RateLimitSettings, Settings
from nidan.core.models import ClientInfo, Method
from nidan.errors import (
    AuthenticationRequired,
    InvalidCode,
    MethodNotAvailable,
    ReauthenticationRequired,
    VerificationLocked,
)
from nidan.services import accounts, enrollment, signin, stepup
from nidan.services.context import ServiceContext
from tests import helpers
from tests.conftest import FixedClock
from tests.helpers import PASSWORD, code_at, make_user

RACERS = 16
STALE = 11 * 60
CLIENT = ClientInfo(ip="192.0.2.7", user_agent="pytest")


def totp_user(ctx: ServiceContext) -> tuple[str, list[str]]:
    user = make_user(ctx)
    started = enrollment.start_totp(ctx, user)
    codes = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT).recovery_codes
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    return started.secret, codes


def session_token(ctx: ServiceContext, secret: str | None) -> str:
    result = signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    if isinstance(result, signin.MfaRequired):
        assert secret is not None
        result = signin.complete_mfa(
            ctx, mfa_token=result.mfa_token, method=Method.TOTP, code=code_at(secret, ctx), client=CLIENT
        )
    return result.session_token


def runtime_with(settings: Settings, clock: FixedClock, limits: RateLimitSettings) -> Iterator[Runtime]:
    built = build_runtime(settings.model_copy(update={"rate_limit": limits}), clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def unthrottled(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    """Backoff out of the way (every racer's provisional failure is counted), so single use is what is tested."""
    yield from runtime_with(settings, clock, RateLimitSettings(tolerated_failures=1000, hard_limit=100_000))


@pytest.fixture
def locks_at_three(settings: Settings, clock: FixedClock) -> Iterator[Runtime]:
    """No blocks, and a hard limit of 3 consecutive failures."""
    yield from runtime_with(settings, clock, RateLimitSettings(tolerated_failures=1000, hard_limit=3))


def test_step_up_opens_a_new_verified_session_and_ends_the_old_one(runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    old = session_token(ctx, secret)
    ctx.clock.advance(STALE)  # type: ignore[attr-defined]
    with pytest.raises(ReauthenticationRequired):
        signin.require_recent_verification(ctx, signin.current_session(ctx, old))
    ctx.clock.advance(30)  # type: ignore[attr-defined]
    result = stepup.reauthenticate(
        ctx, session_token=old, method=Method.TOTP, secret=code_at(secret, ctx), client=CLIENT
    )
    assert result.user.username == "alice" and result.session_token != old
    with pytest.raises(AuthenticationRequired):
        signin.current_session(ctx, old)
    fresh = signin.current_session(ctx, result.session_token)
    assert fresh.verified_at == ctx.clock.now()
    signin.require_recent_verification(ctx, fresh)


def test_methods_are_the_second_factors_or_else_the_password(runtime: Runtime) -> None:
    ctx = runtime.services
    bob = make_user(ctx, "bob")
    assert stepup.methods(ctx, bob) == ["password"]
    totp_user(ctx)
    alice = accounts.find_user(ctx, "alice")
    assert stepup.methods(ctx, alice) == [Method.TOTP, Method.RECOVERY_CODE]


def test_a_password_never_steps_up_a_user_with_a_second_factor(runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    token = session_token(ctx, secret)
    with pytest.raises(MethodNotAvailable, match="two-step verification"):
        stepup.reauthenticate(ctx, session_token=token, method="password", secret=PASSWORD, client=CLIENT)
    signin.current_session(ctx, token)  # untouched


def race(attempt: Callable[[int], object]) -> list[object]:
    return helpers.race(RACERS, attempt, (InvalidCode, AuthenticationRequired))


def test_one_session_steps_up_once_under_a_race(unthrottled: Runtime) -> None:
    """Sixteen step-ups of one session with sixteen good recovery codes: one new session, one code spent."""
    ctx = unthrottled.services
    secret, codes = totp_user(ctx)
    token = session_token(ctx, secret)
    results = race(
        lambda i: stepup.reauthenticate(
            ctx, session_token=token, method=Method.RECOVERY_CODE, secret=codes[i], client=CLIENT
        )
    )
    winners = [r for r in results if isinstance(r, signin.Authenticated)]
    assert len(winners) == 1, results
    assert all(isinstance(r, AuthenticationRequired) for r in results if r not in winners), results
    # The losers' transactions rolled back: their codes are still unspent.
    assert enrollment.security_state(ctx, winners[0].user.id).recovery_codes_remaining == 15


def test_one_code_steps_up_once_under_a_race(unthrottled: Runtime) -> None:
    """Sixteen sessions race with the same TOTP code: exactly one of them steps up."""
    ctx = unthrottled.services
    secret, _ = totp_user(ctx)
    tokens = []
    for _ in range(RACERS):
        tokens.append(session_token(ctx, secret))
        ctx.clock.advance(30)  # type: ignore[attr-defined]
    code = code_at(secret, ctx)
    results = race(
        lambda i: stepup.reauthenticate(ctx, session_token=tokens[i], method=Method.TOTP, secret=code, client=CLIENT)
    )
    assert sum(isinstance(r, signin.Authenticated) for r in results) == 1, results


def test_the_hard_limit_locks_step_up(locks_at_three: Runtime) -> None:
    ctx = locks_at_three.services
    secret, _ = totp_user(ctx)
    token = session_token(ctx, secret)
    for _ in range(3):
        with pytest.raises(InvalidCode):
            stepup.reauthenticate(ctx, session_token=token, method=Method.TOTP, secret="000000x", client=CLIENT)
    with pytest.raises(VerificationLocked):
        stepup.reauthenticate(ctx, session_token=token, method=Method.TOTP, secret=code_at(secret, ctx), client=CLIENT)
