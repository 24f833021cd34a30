"""The second-step engine, one suite for every method and every purpose (sign-in, step-up, the verify API), on
SQLite and PostgreSQL: a pass, a wrong code, a replay, a block, a hard lock, a method policy forbids, and attempts
made together. A new method extends ``second_step_support.METHODS``, not this module."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nidan.bootstrap import Runtime
from nidan.core.policy import REQUIRED_METHODS
from nidan.errors import InvalidCode, MethodNotAllowed, RateLimited, VerificationLocked
from nidan.services import audit, organisations
from nidan.services.context import ServiceContext
from tests.helpers import race
from tests.integration.enforcement_support import CLIENT, advance, join, new_org, new_user
from tests.integration.second_step_support import METHODS, PURPOSES, MethodCase, PurposeCase, set_up

by_method = pytest.mark.parametrize("case", METHODS, ids=[m.method.value for m in METHODS])
by_purpose = pytest.mark.parametrize("purpose", PURPOSES, ids=[p.name for p in PURPOSES])
#: Long enough for any block these tests earn to end.
AN_HOUR = 3600


@pytest.fixture
def ctx(runtime: Runtime) -> ServiceContext:
    """One wrong code tolerated (the default), the hard lock at the fourth."""
    services = runtime.services
    return replace(services, backoff=replace(services.backoff, hard_limit=4))


def events(ctx: ServiceContext, username: str, purpose: PurposeCase) -> tuple[list[dict[str, object]], int]:
    """The details of the purpose's failures, and how many passes it recorded."""
    failed = [dict(r.event.details) for r in audit.all_events(ctx, username=username, event_type=purpose.failed)]
    passed = len(audit.all_events(ctx, username=username, event_type=purpose.succeeded))
    return failed, passed


@by_purpose
@by_method
def test_a_right_code_passes_and_is_recorded(ctx: ServiceContext, case: MethodCase, purpose: PurposeCase) -> None:
    user = new_user(ctx)
    creds = set_up(ctx, user)
    before = events(ctx, user.username, purpose)[1]
    assert purpose.begin(ctx, user)(case.method, case.good(ctx, creds)) is not None
    failed, passed = events(ctx, user.username, purpose)
    assert passed == before + 1 and failed == []


@by_purpose
@by_method
def test_a_wrong_code_is_refused_counted_and_recorded(
    ctx: ServiceContext, case: MethodCase, purpose: PurposeCase
) -> None:
    user = new_user(ctx)
    creds = set_up(ctx, user)
    with pytest.raises(InvalidCode) as refused:
        purpose.begin(ctx, user)(case.method, case.wrong(ctx, creds))
    (failure,) = events(ctx, user.username, purpose)[0]
    assert failure["method"] == case.method.value and failure["replayed"] is False
    if purpose.name != "verify":  # the person is warned before the block starts; an application is not a person
        assert refused.value.next_failure_blocks and "One more wrong code" in refused.value.message
    # The person who got it wrong once is not stuck: the right code still passes.
    assert purpose.begin(ctx, user)(case.method, case.good(ctx, creds)) is not None


@by_purpose
@by_method
def test_a_code_used_once_is_refused_the_second_time(
    ctx: ServiceContext, case: MethodCase, purpose: PurposeCase
) -> None:
    user = new_user(ctx)
    creds = set_up(ctx, user)
    code = case.good(ctx, creds)
    purpose.begin(ctx, user)(case.method, code)
    with pytest.raises(InvalidCode):
        purpose.begin(ctx, user)(case.method, code)
    (failure,) = events(ctx, user.username, purpose)[0]
    assert failure["replayed"] is case.tells_replay


@by_purpose
@by_method
def test_while_blocked_even_a_right_code_waits(ctx: ServiceContext, case: MethodCase, purpose: PurposeCase) -> None:
    user = new_user(ctx)
    creds = set_up(ctx, user)
    for _ in range(2):  # the first is tolerated, the second blocks
        with pytest.raises(InvalidCode) as wrong:
            purpose.begin(ctx, user)(case.method, case.wrong(ctx, creds))
    if purpose.name != "verify":
        assert wrong.value.blocked_seconds >= 1 and "wait" in wrong.value.message
    with pytest.raises(RateLimited) as blocked:
        purpose.begin(ctx, user)(case.method, case.good(ctx, creds))
    assert blocked.value.retry_after_seconds >= 1
    advance(ctx, AN_HOUR)
    assert purpose.begin(ctx, user)(case.method, case.good(ctx, creds)) is not None


@by_purpose
@by_method
def test_a_hard_locked_user_is_refused_whatever_the_code(
    ctx: ServiceContext, case: MethodCase, purpose: PurposeCase
) -> None:
    user = new_user(ctx)
    creds = set_up(ctx, user)
    for _ in range(4):
        with pytest.raises(InvalidCode):
            purpose.begin(ctx, user)(case.method, case.wrong(ctx, creds))
        advance(ctx, AN_HOUR)
    with pytest.raises(VerificationLocked):
        purpose.begin(ctx, user)(case.method, case.good(ctx, creds))


FORBIDDABLE = [case for case in METHODS if case.method not in REQUIRED_METHODS]


@by_purpose
@pytest.mark.parametrize("case", FORBIDDABLE, ids=[m.method.value for m in FORBIDDABLE])
def test_a_method_the_organisation_forbids_is_refused_and_nothing_is_spent(
    ctx: ServiceContext, case: MethodCase, purpose: PurposeCase
) -> None:
    user = new_user(ctx)
    creds = set_up(ctx, user)
    slug = new_org(ctx, allowed_methods=[m.method for m in METHODS if m is not case])
    join(ctx, slug, user)
    code = case.good(ctx, creds)
    # Said as it is to the person; to an application, the answer of a wrong code (who has what is not its business).
    with pytest.raises(MethodNotAllowed if purpose.tells_what_is_set_up else InvalidCode):
        purpose.begin(ctx, user)(case.method, code)
    other = next(m for m in METHODS if m is not case)
    assert purpose.begin(ctx, user)(other.method, other.good(ctx, creds)) is not None
    # The forbidden code was not spent: out of that organisation, the same code works.
    organisations.remove_member(ctx, slug, username=user.username, actor=None, client=CLIENT)
    assert purpose.begin(ctx, user)(case.method, code) is not None


@by_purpose
@by_method
def test_one_code_sent_together_passes_exactly_once(
    ctx: ServiceContext, case: MethodCase, purpose: PurposeCase
) -> None:
    user = new_user(ctx)
    creds = set_up(ctx, user)
    code = case.good(ctx, creds)
    tries = [purpose.begin(ctx, user) for _ in range(6)]
    outcomes = race(6, lambda i: tries[i](case.method, code), (InvalidCode, RateLimited))
    passed = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(passed) == 1, outcomes
    assert events(ctx, user.username, purpose)[1] == 1


SEVERAL = [case for case in METHODS if case.distinct is not None]


@by_purpose
@pytest.mark.parametrize("case", SEVERAL, ids=[m.method.value for m in SEVERAL])
def test_right_codes_sent_together_all_pass(ctx: ServiceContext, case: MethodCase, purpose: PurposeCase) -> None:
    """A failure is not counted before it happens: four right codes at once are four passes, not one pass and
    three refusals for a block the others would have earned."""
    user = new_user(ctx)
    creds = set_up(ctx, user)
    assert case.distinct is not None
    codes = case.distinct(creds, 4)
    tries = [purpose.begin(ctx, user) for _ in range(4)]
    outcomes = race(4, lambda i: tries[i](case.method, codes[i]), (InvalidCode, RateLimited))
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
