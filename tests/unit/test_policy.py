"""Who must have two-step verification and what a sign-in does about it: the pure decisions in ``core.policy``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nidan.core.models import Method, OrgRole
from nidan.core.policy import (
    MAX_GRACE_DAYS,
    Enrolment,
    EnrolmentDecision,
    OrgPolicy,
    Requirement,
    TwoFactorPolicy,
    checked_policy,
    combined,
    enrolment,
    requires_two_factor,
    tolerance_in_force,
    two_factor_required,
)
from nidan.errors import InvalidInput, ToleranceAboveInstance

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
DAY = timedelta(days=1)

OPTIONAL = TwoFactorPolicy.OPTIONAL
ADMINS = TwoFactorPolicy.REQUIRED_FOR_ADMINS
ALL = TwoFactorPolicy.REQUIRED_FOR_ALL
OWNER, ADMIN, USER_ADMIN, MEMBER = OrgRole.OWNER, OrgRole.ADMIN, OrgRole.USER_ADMIN, OrgRole.MEMBER
NO_RECOVERY = frozenset({Method.TOTP})


# --- who is required ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "role", "required"),
    [
        (OPTIONAL, OWNER, False),
        (OPTIONAL, ADMIN, False),
        (OPTIONAL, USER_ADMIN, False),
        (OPTIONAL, MEMBER, False),
        # The roles that can create users or change who may sign in; not plain members.
        (ADMINS, OWNER, True),
        (ADMINS, ADMIN, True),
        (ADMINS, USER_ADMIN, True),
        (ADMINS, MEMBER, False),
        (ALL, OWNER, True),
        (ALL, ADMIN, True),
        (ALL, USER_ADMIN, True),
        (ALL, MEMBER, True),
    ],
)
def test_requires_two_factor_by_policy_and_role(policy: TwoFactorPolicy, role: OrgRole, required: bool) -> None:
    assert requires_two_factor(policy, role) is required
    assert two_factor_required([(policy, role)]) is required


def test_any_organisation_requiring_it_is_enough() -> None:
    assert two_factor_required([(OPTIONAL, OWNER), (ADMINS, MEMBER), (ALL, MEMBER)])
    assert not two_factor_required([(OPTIONAL, OWNER), (ADMINS, MEMBER)])
    assert not two_factor_required([])


# --- several organisations together ---------------------------------------------------------------------------


def test_no_organisation_asks_nothing() -> None:
    assert combined([]) == Requirement(False, 0, frozenset(Method), None)


def test_the_strictest_requirement_wins() -> None:
    together = combined([(OrgPolicy(OPTIONAL), OWNER), (OrgPolicy(ALL, grace_period_days=5), MEMBER)])
    assert together.required and together.grace_period_days == 5


def test_the_shortest_grace_among_the_organisations_that_require_it() -> None:
    together = combined(
        [
            (OrgPolicy(ALL, grace_period_days=30), MEMBER),
            (OrgPolicy(ADMINS, grace_period_days=3), USER_ADMIN),
            # Neither of these requires 2FA of this user: their (shorter) grace periods do not count.
            (OrgPolicy(OPTIONAL, grace_period_days=0), OWNER),
            (OrgPolicy(ADMINS, grace_period_days=1), MEMBER),
        ]
    )
    assert together.required and together.grace_period_days == 3


def test_a_requiring_organisation_without_grace_ends_every_grace() -> None:
    together = combined([(OrgPolicy(ALL, grace_period_days=30), MEMBER), (OrgPolicy(ADMINS), OWNER)])
    assert together.required and together.grace_period_days == 0


def test_allowed_methods_intersect_and_totp_always_stays() -> None:
    together = combined([(OrgPolicy(OPTIONAL), MEMBER), (OrgPolicy(OPTIONAL, allowed_methods=NO_RECOVERY), MEMBER)])
    assert together.allowed_methods == NO_RECOVERY
    # Even a malformed stored policy with nothing allowed cannot take the authenticator app away.
    assert combined([(OrgPolicy(OPTIONAL, allowed_methods=frozenset()), MEMBER)]).allowed_methods == NO_RECOVERY


def test_the_lowest_tolerated_failures_wins_and_unset_means_the_instance_setting() -> None:
    assert combined([(OrgPolicy(), MEMBER)]).tolerated_failures is None
    policies = [
        (OrgPolicy(tolerated_failures=5), MEMBER),
        (OrgPolicy(), MEMBER),
        (OrgPolicy(tolerated_failures=0), MEMBER),
    ]
    assert combined(policies).tolerated_failures == 0
    # The tolerance applies to every member, whatever the organisation's 2FA policy and the user's role.
    assert combined([(OrgPolicy(OPTIONAL, tolerated_failures=2), MEMBER)]).tolerated_failures == 2


# --- checking a policy before it is stored --------------------------------------------------------------------


def test_a_valid_policy() -> None:
    policy = checked_policy(ALL, 14, [Method.TOTP, Method.TOTP], 3, instance_tolerated=3)
    assert policy == OrgPolicy(ALL, 14, NO_RECOVERY, 3)


@pytest.mark.parametrize(
    ("grace", "methods", "tolerated"),
    [
        (0, [Method.RECOVERY_CODE], None),  # the authenticator app cannot be forbidden: no lock-out
        (0, [], None),
        (-1, list(Method), None),
        (MAX_GRACE_DAYS + 1, list(Method), None),
        (0, list(Method), -1),
        (0, list(Method), 1001),
    ],
)
def test_invalid_policies_are_refused(grace: int, methods: list[Method], tolerated: int | None) -> None:
    with pytest.raises(InvalidInput):
        checked_policy(ALL, grace, methods, tolerated, instance_tolerated=1000)


def test_the_bounds_themselves_are_accepted() -> None:
    assert (
        checked_policy(OPTIONAL, MAX_GRACE_DAYS, [Method.TOTP], 0, instance_tolerated=0).grace_period_days
        == MAX_GRACE_DAYS
    )
    assert checked_policy(OPTIONAL, 0, list(Method), 1000, instance_tolerated=1000).tolerated_failures == 1000


@pytest.mark.parametrize("instance", [0, 1, 20])
def test_an_organisation_may_be_stricter_than_the_instance_never_laxer(instance: int) -> None:
    assert (
        checked_policy(OPTIONAL, 0, list(Method), instance, instance_tolerated=instance).tolerated_failures == instance
    )
    assert checked_policy(OPTIONAL, 0, list(Method), None, instance_tolerated=instance).tolerated_failures is None
    with pytest.raises(ToleranceAboveInstance, match=rf"as the instance does \({instance}\)"):
        checked_policy(OPTIONAL, 0, list(Method), instance + 1, instance_tolerated=instance)


def test_the_tolerance_in_force_is_never_laxer_than_the_instance() -> None:
    assert tolerance_in_force(None, 3) == 3
    assert tolerance_in_force(1, 3) == 1
    assert tolerance_in_force(466, 3) == 3  # stored before the instance was made stricter


# --- what a sign-in does -------------------------------------------------------------------------------------

REQUIRED_NOW = Requirement(required=True, grace_period_days=0)
REQUIRED_IN_A_WEEK = Requirement(required=True, grace_period_days=7)
NOT_REQUIRED = Requirement(required=False)


def decide(
    requirement: Requirement,
    *,
    has_two_factor: bool = False,
    registration_required: bool = False,
    grace_started_at: datetime | None = None,
    now: datetime = NOW,
) -> EnrolmentDecision:
    return enrolment(
        requirement,
        has_two_factor=has_two_factor,
        registration_required=registration_required,
        grace_started_at=grace_started_at,
        now=now,
    )


@pytest.mark.parametrize("requirement", [NOT_REQUIRED, REQUIRED_NOW, REQUIRED_IN_A_WEEK])
def test_with_two_factor_nothing_is_asked(requirement: Requirement) -> None:
    assert decide(requirement, has_two_factor=True) == EnrolmentDecision(Enrolment.NONE)
    assert decide(requirement, has_two_factor=True, grace_started_at=NOW - 30 * DAY).action is Enrolment.NONE


def test_not_required_and_without_two_factor_nothing_is_asked_and_no_grace_starts() -> None:
    assert decide(NOT_REQUIRED) == EnrolmentDecision(Enrolment.NONE)


@pytest.mark.parametrize("requirement", [NOT_REQUIRED, REQUIRED_NOW, REQUIRED_IN_A_WEEK])
@pytest.mark.parametrize("has_two_factor", [False, True])
def test_an_administrator_asking_for_registration_means_setup_whatever_the_policy(
    requirement: Requirement, has_two_factor: bool
) -> None:
    decision = decide(requirement, has_two_factor=has_two_factor, registration_required=True)
    assert decision.action is Enrolment.SETUP
    assert decision.grace_ends_at is None


def test_required_without_grace_means_setup_at_the_first_sign_in() -> None:
    assert decide(REQUIRED_NOW) == EnrolmentDecision(Enrolment.SETUP, grace_starts=True)


def test_the_grace_period_starts_at_the_first_sign_in_where_it_is_required() -> None:
    assert decide(REQUIRED_IN_A_WEEK) == EnrolmentDecision(Enrolment.REMIND, NOW + 7 * DAY, grace_starts=True)


def test_during_the_grace_period_the_end_stays_where_it_started() -> None:
    started = NOW - 2 * DAY
    decision = decide(REQUIRED_IN_A_WEEK, grace_started_at=started)
    assert decision == EnrolmentDecision(Enrolment.REMIND, started + 7 * DAY, grace_starts=False)


def test_the_grace_period_ends_exactly_at_its_end() -> None:
    started = NOW - 7 * DAY
    just_before = decide(REQUIRED_IN_A_WEEK, grace_started_at=started, now=NOW - timedelta(seconds=1))
    assert just_before.action is Enrolment.REMIND
    assert decide(REQUIRED_IN_A_WEEK, grace_started_at=started) == EnrolmentDecision(Enrolment.SETUP)
    assert decide(REQUIRED_IN_A_WEEK, grace_started_at=started - 300 * DAY).action is Enrolment.SETUP


def test_a_grace_period_shortened_later_counts_from_the_same_start() -> None:
    started = NOW - 2 * DAY
    assert decide(Requirement(True, 1), grace_started_at=started) == EnrolmentDecision(Enrolment.SETUP)
    assert decide(Requirement(True, 3), grace_started_at=started).grace_ends_at == started + 3 * DAY
