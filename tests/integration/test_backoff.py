"""Backoff through the services, on both back ends: exact counts under concurrency, scopes, the hard limit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from nidan.bootstrap import Runtime
from nidan.config import RateLimitSettings, Settings
from nidan.core.models import ClientInfo, Method
from nidan.errors import InvalidCode, InvalidCredentials, RateLimited, VerificationLocked
from nidan.services import enrollment, signin, throttling
from tests import helpers
from tests.helpers import PASSWORD, code_at, make_user

ATTACKER = ClientInfo(ip="203.0.113.66")
VICTIM = ClientInfo(ip="198.51.100.7")


def fire(count: int, attempt: Callable[[int], object]) -> Counter[str]:
    """``count`` attempts released at once; tally of outcomes by exception class name ("ok" for a success)."""
    expected = (InvalidCode, InvalidCredentials, RateLimited, VerificationLocked)
    results = helpers.race(count, attempt, expected)
    return Counter(type(r).__name__ if isinstance(r, Exception) else "ok" for r in results)


def totp_user(runtime: Runtime, username: str = "alice") -> str:
    ctx = runtime.services
    user = make_user(ctx, username)
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=VICTIM)
    return started.secret


def mfa_tokens(runtime: Runtime, count: int, client: ClientInfo = VICTIM) -> list[str]:
    tokens = []
    for _ in range(count):
        result = signin.login(runtime.services, username="alice", password=PASSWORD, client=client)
        assert isinstance(result, signin.MfaRequired)
        tokens.append(result.mfa_token)
    return tokens


def wrong_code(runtime: Runtime, token: str) -> None:
    signin.complete_mfa(runtime.services, mfa_token=token, method=Method.TOTP, code="000000", client=VICTIM)


def test_fifty_wrong_codes_at_once_evaluate_exactly_tolerated_plus_one(runtime: Runtime) -> None:
    totp_user(runtime)
    tokens = mfa_tokens(runtime, 50)
    outcomes = fire(50, lambda i: wrong_code(runtime, tokens[i]))
    assert outcomes == Counter({"InvalidCode": 2, "RateLimited": 48})


def test_fifty_wrong_passwords_at_once_evaluate_exactly_tolerated_plus_one(runtime: Runtime) -> None:
    make_user(runtime.services)
    outcomes = fire(
        50, lambda _: signin.login(runtime.services, username="alice", password="wrong password", client=ATTACKER)
    )
    assert outcomes == Counter({"InvalidCredentials": 2, "RateLimited": 48})


class TestWithThreeTolerated:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"rate_limit": RateLimitSettings(tolerated_failures=3)})

    def test_the_setting_is_honoured_under_concurrency(self, runtime: Runtime) -> None:
        totp_user(runtime)
        tokens = mfa_tokens(runtime, 50)
        outcomes = fire(50, lambda i: wrong_code(runtime, tokens[i]))
        assert outcomes == Counter({"InvalidCode": 4, "RateLimited": 46})


def test_a_block_is_answered_before_evaluation_and_does_not_grow(runtime: Runtime) -> None:
    secret = totp_user(runtime)
    ctx = runtime.services
    clock = ctx.clock
    clock.advance(60)  # type: ignore[attr-defined]
    token_one, token_two, token_three = mfa_tokens(runtime, 3)
    for token in (token_one, token_two):
        with pytest.raises(InvalidCode):
            wrong_code(runtime, token)
    # Blocked for 1 s: even the right code is not evaluated, and the block does not double.
    for _ in range(3):
        with pytest.raises(RateLimited) as blocked:
            signin.complete_mfa(
                ctx, mfa_token=token_three, method=Method.TOTP, code=code_at(secret, ctx), client=VICTIM
            )
        assert blocked.value.retry_after_seconds == 1
    clock.advance(1)  # type: ignore[attr-defined]
    with pytest.raises(InvalidCode):
        wrong_code(runtime, token_three)
    with pytest.raises(RateLimited) as blocked:
        wrong_code(runtime, token_three)
    assert blocked.value.retry_after_seconds == 2
    clock.advance(2)  # type: ignore[attr-defined]
    signin.complete_mfa(ctx, mfa_token=token_three, method=Method.TOTP, code=code_at(secret, ctx), client=VICTIM)
    # A correct code reset the count: the next block starts again at 1 s, after one tolerated failure.
    for token in mfa_tokens(runtime, 2)[:1]:
        with pytest.raises(InvalidCode):
            wrong_code(runtime, token)
    with pytest.raises(InvalidCode):
        wrong_code(runtime, mfa_tokens(runtime, 1)[0])
    with pytest.raises(RateLimited) as blocked:
        wrong_code(runtime, mfa_tokens(runtime, 1)[0])
    assert blocked.value.retry_after_seconds == 1


def test_a_stranger_spraying_passwords_does_not_lock_the_victim_out(runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    for _ in range(2):
        with pytest.raises(InvalidCredentials):
            signin.login(ctx, username="alice", password="guess", client=ATTACKER)
    with pytest.raises(RateLimited):
        signin.login(ctx, username="alice", password="guess", client=ATTACKER)
    # The victim, from their own address, is not blocked, and signs in.
    assert isinstance(signin.login(ctx, username="alice", password=PASSWORD, client=VICTIM), signin.Authenticated)


def test_credential_stuffing_from_one_address_slows_down_across_usernames(runtime: Runtime) -> None:
    """Per address the tolerance is higher (offices share addresses), but many usernames still hit it."""
    ctx = runtime.services
    tolerated = runtime.settings.rate_limit.ip_tolerated_failures
    for index in range(tolerated + 1):
        with pytest.raises(InvalidCredentials):
            signin.login(ctx, username=f"user{index}", password="Summer2026!", client=ATTACKER)
    with pytest.raises(RateLimited):
        signin.login(ctx, username="someone-else", password="Summer2026!", client=ATTACKER)
    with pytest.raises(InvalidCredentials):  # another address is unaffected
        signin.login(ctx, username="someone-else", password="Summer2026!", client=VICTIM)


def test_a_sprayer_cannot_clear_the_address_by_signing_in_to_their_own_account(runtime: Runtime) -> None:
    """A success forgives the address only the failures of the one who succeeded: an attacker's own account, signed
    in between guesses, takes nothing off the count their guesses at other names built."""
    ctx = runtime.services
    make_user(ctx, "mallory")
    tolerated = runtime.settings.rate_limit.ip_tolerated_failures
    for index in range(tolerated):
        with pytest.raises(InvalidCredentials):
            signin.login(ctx, username=f"user{index}", password="Summer2026!", client=ATTACKER)
    assert isinstance(signin.login(ctx, username="mallory", password=PASSWORD, client=ATTACKER), signin.Authenticated)
    with pytest.raises(InvalidCredentials):  # the one more the address tolerates ... and it blocks
        signin.login(ctx, username="user-next", password="Summer2026!", client=ATTACKER)
    with pytest.raises(RateLimited):
        signin.login(ctx, username="user-after", password="Summer2026!", client=ATTACKER)


def test_a_person_who_gets_in_at_last_takes_their_own_failures_off_the_address(runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    tolerated = runtime.settings.rate_limit.ip_tolerated_failures
    for index in range(tolerated - 1):  # colleagues behind the same address, each mistyping once
        with pytest.raises(InvalidCredentials):
            signin.login(ctx, username=f"colleague{index}", password="typo", client=VICTIM)
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="alice", password="typo", client=VICTIM)
    assert isinstance(signin.login(ctx, username="alice", password=PASSWORD, client=VICTIM), signin.Authenticated)
    # alice's typo is forgiven, the colleagues' are not: the address tolerates exactly one more failure.
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="colleague-x", password="typo", client=VICTIM)
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="colleague-y", password="typo", client=VICTIM)
    with pytest.raises(RateLimited):
        signin.login(ctx, username="colleague-z", password="typo", client=VICTIM)


def test_hard_limit_refuses_until_an_admin_clears_it(runtime: Runtime) -> None:
    ctx = runtime.services
    secret = totp_user(runtime)
    clock = ctx.clock
    hard_limit = runtime.settings.rate_limit.hard_limit
    for _ in range(hard_limit):
        token = mfa_tokens(runtime, 1)[0]
        with pytest.raises(InvalidCode):
            wrong_code(runtime, token)
        clock.advance(3601)  # type: ignore[attr-defined]
    token = mfa_tokens(runtime, 1)[0]
    with pytest.raises(VerificationLocked) as locked:
        signin.complete_mfa(ctx, mfa_token=token, method=Method.TOTP, code=code_at(secret, ctx), client=VICTIM)
    assert "administrator" in locked.value.message
    clock.advance(7 * 24 * 3600)  # type: ignore[attr-defined]  # time alone does not lift it
    token = mfa_tokens(runtime, 1)[0]
    with pytest.raises(VerificationLocked):
        signin.complete_mfa(ctx, mfa_token=token, method=Method.TOTP, code=code_at(secret, ctx), client=VICTIM)
    state = throttling.status(ctx, "alice")
    assert state.second_factor.locked_at is not None and state.second_factor.failures == hard_limit
    assert throttling.clear(ctx, username="ALICE", actor=None, client=VICTIM, reason="called from her desk") == 1
    assert throttling.status(ctx, "alice").second_factor.failures == 0
    signin.complete_mfa(ctx, mfa_token=token, method=Method.TOTP, code=code_at(secret, ctx), client=VICTIM)
