"""The gate, the verify API and tokens under concurrency (threads on one engine pool), on both back ends."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from nidan.bootstrap import Runtime
from nidan.config import RateLimitSettings, Settings
from nidan.core.access_tokens import MAX_LIVE_TOKENS, Scope, TokenKind
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, Method
from nidan.errors import (
    ApplicationExists,
    BasicAuthDenied,
    RateLimited,
    TokenLimitReached,
    TokenNotFound,
)
from nidan.services import applications, audit, enrollment, gate, tokens, verify
from nidan.services.context import ServiceContext
from tests import helpers
from tests.helpers import code_at, make_user

RACERS = 20
ATTACKER = ClientInfo(ip="203.0.113.66")
EXPECTED = (ApplicationExists, BasicAuthDenied, RateLimited, TokenLimitReached, TokenNotFound)


def fire(attempt: Callable[[int], object]) -> Counter[str]:
    """``RACERS`` attempts released at once; tally of outcomes by class name."""
    return Counter(type(r).__name__ for r in helpers.race(RACERS, attempt, EXPECTED))


def refusals(ctx: ServiceContext) -> int:
    return len(audit.all_events(ctx, event_type=EventType.BASIC_AUTH_FAILED, limit=200))


# --- the gate's backoff: exactly tolerated + 1 evaluated ---------------------------------------------------------


def test_twenty_wrong_passwords_at_once_evaluate_tolerated_plus_one(runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    tolerated = runtime.settings.rate_limit.tolerated_failures
    outcomes = fire(
        lambda _: gate.check(ctx, username="alice", secret="wrong", scope=Scope.READ_REPOSITORY, client=ATTACKER)
    )
    assert outcomes == Counter({"BasicAuthDenied": tolerated + 1, "RateLimited": RACERS - tolerated - 1})
    # Each evaluated attempt is in the log once; the refused ones were never evaluated, so never logged.
    assert refusals(ctx) == tolerated + 1


def test_twenty_wrong_tokens_at_once_evaluate_tolerated_plus_one(runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    tolerated = runtime.settings.rate_limit.tolerated_failures
    outcomes = fire(
        lambda i: gate.check(
            ctx, username="alice", secret=f"nidan_pat_{i:043d}", scope=Scope.READ_REPOSITORY, client=ATTACKER
        )
    )
    assert outcomes == Counter({"BasicAuthDenied": tolerated + 1, "RateLimited": RACERS - tolerated - 1})
    assert refusals(ctx) == tolerated + 1


def test_twenty_wrong_totp_codes_at_the_verify_api_evaluate_tolerated_plus_one(runtime: Runtime) -> None:
    """The verify API checks a TOTP code in one transaction under the user's row lock, not by a reservation: it
    must be just as exact — the first tolerated + 1 are evaluated and counted, the rest refused unevaluated."""
    ctx = runtime.services
    user = make_user(ctx)
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=ATTACKER)
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    app = applications.add(ctx, name="wiki", actor=None, client=ATTACKER).application
    tolerated = runtime.settings.rate_limit.tolerated_failures
    outcomes = fire(
        lambda i: verify.verify(
            ctx, application=app, username="alice", code=f"{i:06d}", method=Method.TOTP, client=ATTACKER
        )
    )
    assert outcomes == Counter({"VerifyResult": tolerated + 1, "RateLimited": RACERS - tolerated - 1})
    assert len(audit.all_events(ctx, event_type=EventType.VERIFY_FAILED, limit=200)) == tolerated + 1
    # Now blocked: even the right code is refused unevaluated, and nothing was spent.
    with pytest.raises(RateLimited):
        verify.verify(
            ctx, application=app, username="alice", code=code_at(started.secret, ctx), method=None, client=ATTACKER
        )


def test_one_valid_token_used_twenty_times_at_once_always_passes(runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    made = tokens.create(
        ctx, alice, kind=TokenKind.PERSONAL, name="ci", scopes=["read_repository"], expires_on=None, client=ATTACKER
    )
    results = helpers.race(
        RACERS,
        lambda _: gate.check(ctx, username="ci", secret=made.secret, scope=Scope.READ_REPOSITORY, client=ATTACKER),
        EXPECTED,
    )
    assert all(isinstance(r, gate.Admitted) and r.user.username == "alice" for r in results), results
    (listed,) = tokens.list_tokens(ctx, alice)
    assert listed.last_used_at == ctx.clock.now()


# --- single use and limits, with the backoff out of the way ----------------------------------------------------------


class TestWithoutBackoff:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        """Every racer is evaluated: these tests are about single use and limits, not throttling."""
        return settings.model_copy(update={"rate_limit": RateLimitSettings(tolerated_failures=1000)})

    def totp_user(self, ctx: ServiceContext) -> tuple[str, list[str]]:
        user = make_user(ctx)
        started = enrollment.start_totp(ctx, user)
        codes = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=ATTACKER).recovery_codes
        ctx.clock.advance(60)  # type: ignore[attr-defined]
        return started.secret, codes

    def verify_all(self, ctx: ServiceContext, code: str, method: Method | None) -> list[verify.VerifyResult]:
        app = applications.add(ctx, name="wiki", actor=None, client=ATTACKER).application
        results = helpers.race(
            RACERS,
            lambda _: verify.verify(ctx, application=app, username="alice", code=code, method=method, client=ATTACKER),
            EXPECTED,
        )
        assert all(isinstance(r, verify.VerifyResult) for r in results), results
        return [r for r in results if isinstance(r, verify.VerifyResult)]

    def test_one_totp_code_sent_twenty_times_at_once_is_accepted_once(self, runtime: Runtime) -> None:
        ctx = runtime.services
        secret, _ = self.totp_user(ctx)
        results = self.verify_all(ctx, code_at(secret, ctx), None)
        assert sum(r.ok for r in results) == 1, results
        assert all(r.error is not None and r.error.code == "invalid_code" for r in results if not r.ok)
        assert len(audit.all_events(ctx, event_type=EventType.VERIFY_SUCCEEDED)) == 1
        assert len(audit.all_events(ctx, event_type=EventType.VERIFY_FAILED, limit=200)) == RACERS - 1

    def test_one_recovery_code_sent_twenty_times_at_once_is_accepted_once(self, runtime: Runtime) -> None:
        ctx = runtime.services
        _, codes = self.totp_user(ctx)
        results = self.verify_all(ctx, codes[0], Method.RECOVERY_CODE)
        assert sum(r.ok for r in results) == 1, results
        assert enrollment.security_state(ctx, 1).recovery_codes_remaining == len(codes) - 1

    def test_one_token_revoked_twenty_times_at_once_is_revoked_once(self, runtime: Runtime) -> None:
        ctx = runtime.services
        alice = make_user(ctx)
        made = tokens.create(
            ctx, alice, kind=TokenKind.PERSONAL, name="ci", scopes=["api"], expires_on=None, client=ATTACKER
        )
        outcomes = fire(lambda _: tokens.revoke(ctx, alice, made.token.id, client=ATTACKER))
        assert outcomes == Counter({"AccessToken": 1, "TokenNotFound": RACERS - 1})
        assert len(audit.all_events(ctx, event_type=EventType.TOKEN_REVOKED)) == 1

    def test_one_application_name_registered_twenty_times_at_once_exists_once(self, runtime: Runtime) -> None:
        ctx = runtime.services
        outcomes = fire(lambda i: applications.add(ctx, name="Wiki" if i % 2 else "wiki", actor=None, client=ATTACKER))
        assert outcomes == Counter({"RegisteredApplication": 1, "ApplicationExists": RACERS - 1})
        assert len(applications.list_all(ctx)) == 1
        assert len(audit.all_events(ctx, event_type=EventType.APPLICATION_ADDED)) == 1

    def test_the_last_free_token_slot_is_taken_once(self, runtime: Runtime) -> None:
        ctx = runtime.services
        alice = make_user(ctx)
        now = ctx.clock.now()
        with ctx.uow() as uow:
            for index in range(MAX_LIVE_TOKENS - 1):
                token_hash = ctx.hash_token(f"seed-{index}", "seed")
                uow.access_tokens.add(alice.id, TokenKind.PERSONAL, f"seed {index}", token_hash, [Scope.API], now, None)
            uow.commit()
        outcomes = fire(
            lambda _: tokens.create(
                ctx, alice, kind=TokenKind.PERSONAL, name="ci", scopes=["api"], expires_on=None, client=ATTACKER
            )
        )
        with ctx.uow() as uow:
            live = uow.access_tokens.count_live(alice.id, ctx.clock.now())
        assert live == MAX_LIVE_TOKENS, outcomes
        assert outcomes == Counter({"CreatedToken": 1, "TokenLimitReached": RACERS - 1})
