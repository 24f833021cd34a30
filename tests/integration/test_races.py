"""Single-use things stay single-use when many requests race for them (threads on one engine pool).

Across processes on PostgreSQL is the scale-out issue's test; here each back end's own atomicity is shown.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nidan.bootstrap import Runtime
from nidan.config import RateLimitSettings, Settings
from nidan.core.models import ClientInfo, Method
from nidan.errors import InvalidCode, MfaTokenInvalid
from nidan.services import enrollment, signin
from tests import helpers
from tests.helpers import PASSWORD, code_at, make_user

RACERS = 16


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Backoff out of the way, so every racer is evaluated: these tests are about single use, not throttling."""
    return settings.model_copy(update={"rate_limit": RateLimitSettings(tolerated_failures=1000)})


def race(attempt: Callable[[int], object]) -> list[object]:
    return helpers.race(RACERS, attempt, (InvalidCode, MfaTokenInvalid))


def totp_user(runtime: Runtime) -> tuple[str, list[str]]:
    ctx = runtime.services
    user = make_user(ctx)
    started = enrollment.start_totp(ctx, user)
    codes = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=ClientInfo()).recovery_codes
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    return started.secret, codes


def mfa_tokens(runtime: Runtime, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        result = signin.login(runtime.services, username="alice", password=PASSWORD, client=ClientInfo())
        assert isinstance(result, signin.MfaRequired)
        tokens.append(result.mfa_token)
    return tokens


def successes(results: list[object]) -> int:
    return sum(isinstance(r, signin.Authenticated) for r in results)


def test_one_recovery_code_fired_at_once_succeeds_once(runtime: Runtime) -> None:
    _, codes = totp_user(runtime)
    tokens = mfa_tokens(runtime, RACERS)
    results = race(
        lambda i: signin.complete_mfa(
            runtime.services, mfa_token=tokens[i], method=Method.RECOVERY_CODE, code=codes[0], client=ClientInfo()
        )
    )
    assert successes(results) == 1, results
    assert all(isinstance(r, InvalidCode) for r in results if not isinstance(r, signin.Authenticated))


def test_one_totp_code_fired_at_once_succeeds_once(runtime: Runtime) -> None:
    secret, _ = totp_user(runtime)
    tokens = mfa_tokens(runtime, RACERS)
    code = code_at(secret, runtime.services)
    results = race(
        lambda i: signin.complete_mfa(
            runtime.services, mfa_token=tokens[i], method=Method.TOTP, code=code, client=ClientInfo()
        )
    )
    assert successes(results) == 1, results


def test_one_mfa_token_is_spent_once(runtime: Runtime) -> None:
    _, codes = totp_user(runtime)
    (token,) = mfa_tokens(runtime, 1)
    results = race(
        lambda i: signin.complete_mfa(
            runtime.services, mfa_token=token, method=Method.RECOVERY_CODE, code=codes[i], client=ClientInfo()
        )
    )
    assert successes(results) == 1, results
    # The losers' recovery codes were not spent: the whole transaction of a loser rolled back.
    assert enrollment.security_state(runtime.services, 1).recovery_codes_remaining == 15
