"""Enforcing two-step verification without locking anyone out, at the service level, on every configured database.

The table: each organisation policy (and the user's role there) x with or without a grace period x each state a
user can be in -> what their next sign-in does. Then the grace period's clock, several organisations together,
turning 2FA off while required, the preview, enable-2FA-first, an administrator's reset and Atlassian's unenroll.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import InstanceRole, Method, OrgRole, User
from nidan.core.policy import OrgPolicy, TwoFactorPolicy
from nidan.errors import (
    AuthenticationRequired,
    CannotActOnSelf,
    EnableTwoFactorFirst,
    InvalidCode,
    InvalidInput,
    MethodNotAllowed,
    MethodNotAvailable,
    MfaSetupRequired,
    MfaTokenInvalid,
    NoEnrollment,
    NotPermitted,
    OrganisationNotFound,
    RateLimited,
    TwoFactorRequiredByPolicy,
    UserNotFound,
)
from nidan.services import audit, enrollment, organisations, signin, stepup, user_admin
from nidan.services.context import ServiceContext
from nidan.services.organisations import PreviewOutcome
from nidan.web.problems import status_for
from tests.conftest import BACKENDS, PostgresDatabases
from tests.helpers import PASSWORD, code_at
from tests.integration.enforcement_support import (
    CLIENT,
    advance,
    finish_setup,
    join,
    new_org,
    new_user,
    second_step,
    set_policy,
    shared_runtime,
    sign_in,
    sign_in_fully,
    turn_on_totp,
)

DAY = timedelta(days=1)
OPTIONAL = TwoFactorPolicy.OPTIONAL
ADMINS = TwoFactorPolicy.REQUIRED_FOR_ADMINS
ALL = TwoFactorPolicy.REQUIRED_FOR_ALL
OWNER, ADMIN, USER_ADMIN, MEMBER = OrgRole.OWNER, OrgRole.ADMIN, OrgRole.USER_ADMIN, OrgRole.MEMBER


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[Runtime]:
    yield from shared_runtime(request.param, tmp_path_factory, sqlite_template, postgres)


@pytest.fixture
def ctx(shared: Runtime) -> ServiceContext:
    return shared.services


# --- the table: policy x grace period x user state -> the next sign-in ------------------------------------------


@dataclass(frozen=True)
class PolicyCase:
    two_factor: TwoFactorPolicy
    role: OrgRole
    #: Written out, not computed: whether this policy requires 2FA of someone in this role.
    required: bool

    def __str__(self) -> str:
        return f"{self.two_factor.value}-as-{self.role.value}"


POLICY_CASES = [
    PolicyCase(OPTIONAL, OWNER, required=False),
    PolicyCase(ADMINS, MEMBER, required=False),
    PolicyCase(ADMINS, OWNER, required=True),
    PolicyCase(ADMINS, ADMIN, required=True),
    PolicyCase(ADMINS, USER_ADMIN, required=True),
    PolicyCase(ALL, MEMBER, required=True),
]
GRACE_DAYS = 7

NEVER_HAD = "no_2fa"
ON = "2fa_on"
ONCE_HAD = "once_had_2fa"  # set it up, turned it off while optional, then meets enforcement (the SaaS trap)
IN_GRACE = "in_grace"  # signed in once since enforcement (grace started), back a day later
GRACE_OVER = "grace_over"  # signed in once since enforcement, back 8 days later
ASKED = "asked_to_register"  # 2FA on; an administrator asked for it to be registered again
ASKED_WITHOUT = "asked_to_register_no_2fa"
STATES = [NEVER_HAD, ON, ONCE_HAD, IN_GRACE, GRACE_OVER, ASKED, ASKED_WITHOUT]

# Outcomes: "session" a full session; "reminded" a full session with two_factor_due (first required sign-in + grace);
# "setup:<reason>" an enrolment-only setup_token; "mfa>" the password was followed by the second factor first.
SESSION, REMINDED = "session", "reminded"
SETUP_POLICY, SETUP_ADMIN = "setup:policy", "setup:administrator"
MFA_SESSION, MFA_SETUP_ADMIN = "mfa>session", "mfa>setup:administrator"

EXPECTED: dict[str, dict[str, str]] = {
    "not required": {
        NEVER_HAD: SESSION,
        ON: MFA_SESSION,
        ONCE_HAD: SESSION,
        IN_GRACE: SESSION,
        GRACE_OVER: SESSION,
        ASKED: MFA_SETUP_ADMIN,
        ASKED_WITHOUT: SETUP_ADMIN,
    },
    "required, no grace period": {
        NEVER_HAD: SETUP_POLICY,
        ON: MFA_SESSION,
        ONCE_HAD: SETUP_POLICY,
        IN_GRACE: SETUP_POLICY,
        GRACE_OVER: SETUP_POLICY,
        ASKED: MFA_SETUP_ADMIN,
        ASKED_WITHOUT: SETUP_ADMIN,
    },
    "required, 7-day grace period": {
        NEVER_HAD: REMINDED,
        ON: MFA_SESSION,
        ONCE_HAD: REMINDED,
        IN_GRACE: REMINDED,
        GRACE_OVER: SETUP_POLICY,
        ASKED: MFA_SETUP_ADMIN,
        ASKED_WITHOUT: SETUP_ADMIN,
    },
}


def expected_outcome(case: PolicyCase, grace: int, state: str) -> str:
    if not case.required:
        return EXPECTED["not required"][state]
    return EXPECTED["required, 7-day grace period" if grace else "required, no grace period"][state]


def outcome_of(ctx: ServiceContext, user: User, secret: str | None) -> tuple[str, datetime | None]:
    """Sign in (with the second factor when asked) and name what happened; checks what each token may do."""
    first = sign_in(ctx, user)
    prefix = ""
    if isinstance(first, signin.MfaRequired):
        assert secret is not None, "asked for a second factor the user does not have"
        assert Method.TOTP in first.methods
        result = second_step(ctx, first.mfa_token, code_at(secret, ctx))
        prefix = "mfa>"
    else:
        result = first
    if isinstance(result, signin.SetupRequired):
        assert result.setup_token.startswith(signin.ENROLMENT_PREFIX)
        assert signin.current_session(ctx, result.setup_token).enrolment_only
        with pytest.raises(MfaSetupRequired):
            signin.full_session(ctx, result.setup_token)
        return f"{prefix}setup:{result.reason}", None
    session = signin.full_session(ctx, result.session_token)
    assert not session.enrolment_only and session.user.id == user.id
    if result.two_factor_due is not None:
        return f"{prefix}{REMINDED}", result.two_factor_due
    return f"{prefix}{SESSION}", None


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("grace", [0, GRACE_DAYS], ids=["no-grace", "grace-7d"])
@pytest.mark.parametrize("case", POLICY_CASES, ids=str)
def test_sign_in_outcome(ctx: ServiceContext, case: PolicyCase, grace: int, state: str) -> None:
    user = new_user(ctx)
    secret = None
    if state in (ON, ASKED, ONCE_HAD):
        secret, _ = turn_on_totp(ctx, user)
    if state == ONCE_HAD:
        enrollment.disable_totp(ctx, user, client=CLIENT)  # allowed: nothing requires it yet
        secret = None
    slug = new_org(ctx, case.two_factor, grace)
    join(ctx, slug, user, case.role)  # enforcement meets the user
    if state in (ASKED, ASKED_WITHOUT):
        user_admin.require_registration(ctx, username=user.username, actor=None, client=CLIENT, reason="new phone")
    first_required_sign_in = ctx.clock.now()
    if state in (IN_GRACE, GRACE_OVER):
        sign_in(ctx, user)
        advance(ctx, (1 if state == IN_GRACE else GRACE_DAYS + 1) * DAY.total_seconds())

    outcome, due = outcome_of(ctx, user, secret)

    assert outcome == expected_outcome(case, grace, state)
    if outcome == REMINDED:
        # Counted from the first sign-in at which it was required and missing, not from this one.
        assert due == first_required_sign_in + grace * DAY
        assert enrollment.security_state(ctx, user.id).two_factor_due == due
    if not case.required and state in (NEVER_HAD, ONCE_HAD, IN_GRACE, GRACE_OVER):
        assert enrollment.security_state(ctx, user.id).two_factor_due is None


# --- after the setup the sign-in is an ordinary two-step one -----------------------------------------------------


def test_setup_required_by_policy_ends_in_a_full_session_and_two_steps_from_then_on(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    join(ctx, new_org(ctx, ALL), user)
    setup = sign_in(ctx, user)
    assert isinstance(setup, signin.SetupRequired) and setup.reason == "policy"
    asked = audit.all_events(ctx, event_type=EventType.SIGN_IN_SETUP_REQUIRED, username=user.username, limit=1)
    assert dict(asked[0].event.details) == {"reason": "policy", "method": "password"}
    secret, full = finish_setup(ctx, setup)
    assert not signin.full_session(ctx, full.session_token).enrolment_only
    with pytest.raises(AuthenticationRequired):  # the enrolment session ended with the setup
        signin.current_session(ctx, setup.setup_token)
    state = enrollment.security_state(ctx, user.id)
    assert state.totp_enabled and state.recovery_codes_remaining == 16 and state.two_factor_due is None
    again = sign_in(ctx, user)
    assert isinstance(again, signin.MfaRequired)
    assert isinstance(second_step(ctx, again.mfa_token, code_at(secret, ctx)), signin.Authenticated)


def test_asked_to_register_again_replaces_the_app_and_then_signs_in_normally(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    old_secret, _ = turn_on_totp(ctx, user)
    user_admin.require_registration(ctx, username=user.username, actor=None, client=CLIENT, reason="new phone")
    setup = sign_in_fully(ctx, user, old_secret)
    assert isinstance(setup, signin.SetupRequired) and setup.reason == "administrator"
    new_secret, _ = finish_setup(ctx, setup)
    assert not enrollment.security_state(ctx, user.id).registration_required
    again = sign_in(ctx, user)
    assert isinstance(again, signin.MfaRequired)
    with pytest.raises(InvalidCode):  # the old app is gone
        second_step(ctx, again.mfa_token, code_at(old_secret, ctx))
    advance(ctx, 5)
    assert isinstance(second_step(ctx, again.mfa_token, code_at(new_secret, ctx)), signin.Authenticated)


def test_an_abandoned_setup_is_asked_again_at_the_next_sign_in(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    join(ctx, new_org(ctx, ALL), user)
    first = sign_in(ctx, user)
    assert isinstance(first, signin.SetupRequired)
    signin.logout(ctx, first.setup_token, CLIENT)
    advance(ctx, 3600)
    assert isinstance(sign_in(ctx, user), signin.SetupRequired)


# --- the grace period's clock --------------------------------------------------------------------------------


def test_the_grace_period_counts_from_the_first_sign_in_not_from_the_policy_change(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    join(ctx, new_org(ctx, ALL, GRACE_DAYS), user)
    advance(ctx, 30 * DAY.total_seconds())  # away for a month after enforcement began
    first_sign_in = ctx.clock.now()
    reminded = sign_in(ctx, user)
    assert isinstance(reminded, signin.Authenticated)
    assert reminded.two_factor_due == first_sign_in + GRACE_DAYS * DAY
    advance(ctx, (GRACE_DAYS * DAY - timedelta(seconds=1)).total_seconds())
    last_day = sign_in(ctx, user)
    assert isinstance(last_day, signin.Authenticated) and last_day.two_factor_due == reminded.two_factor_due
    advance(ctx, 1)  # exactly at the end
    over = sign_in(ctx, user)
    assert isinstance(over, signin.SetupRequired) and over.reason == "policy"


def test_sign_ins_while_not_required_do_not_start_the_grace_period(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    slug = new_org(ctx, OPTIONAL)
    join(ctx, slug, user)
    for _ in range(3):
        assert isinstance(sign_in(ctx, user), signin.Authenticated)
        advance(ctx, 10 * DAY.total_seconds())
    set_policy(ctx, slug, ALL, GRACE_DAYS)
    started = ctx.clock.now()
    reminded = sign_in(ctx, user)
    assert isinstance(reminded, signin.Authenticated) and reminded.two_factor_due == started + GRACE_DAYS * DAY


def test_setting_up_during_the_grace_period_ends_it(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    join(ctx, new_org(ctx, ALL, GRACE_DAYS), user)
    reminded = sign_in(ctx, user)
    assert isinstance(reminded, signin.Authenticated) and reminded.two_factor_due is not None
    secret, _ = turn_on_totp(ctx, user)
    state = enrollment.security_state(ctx, user.id)
    assert state.two_factor_required and state.two_factor_due is None
    advance(ctx, 30 * DAY.total_seconds())
    assert isinstance(sign_in_fully(ctx, user, secret), signin.Authenticated)


def test_a_shortened_grace_period_applies_from_the_same_start(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    slug = new_org(ctx, ALL, 30)
    join(ctx, slug, user)
    assert isinstance(sign_in(ctx, user), signin.Authenticated)
    advance(ctx, 3 * DAY.total_seconds())
    set_policy(ctx, slug, ALL, 2)
    result = sign_in(ctx, user)
    assert isinstance(result, signin.SetupRequired) and result.reason == "policy"


# --- several organisations --------------------------------------------------------------------------------------


def test_the_strictest_requirement_wins(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    join(ctx, new_org(ctx, OPTIONAL), user, OWNER)
    join(ctx, new_org(ctx, ADMINS), user, MEMBER)
    assert isinstance(sign_in(ctx, user), signin.Authenticated)
    join(ctx, new_org(ctx, ALL), user, MEMBER)
    result = sign_in(ctx, user)
    assert isinstance(result, signin.SetupRequired) and result.reason == "policy"


def test_the_shortest_grace_among_the_organisations_that_require_it(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    join(ctx, new_org(ctx, ALL, 30), user)
    join(ctx, new_org(ctx, ADMINS, 3), user, USER_ADMIN)
    join(ctx, new_org(ctx, OPTIONAL, 0), user)  # requires nothing: its grace period does not count
    join(ctx, new_org(ctx, ADMINS, 0), user, MEMBER)  # requires nothing of a member
    now = ctx.clock.now()
    result = sign_in(ctx, user)
    assert isinstance(result, signin.Authenticated) and result.two_factor_due == now + 3 * DAY


def test_an_organisation_without_recovery_codes_takes_them_out_of_sign_in(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    secret, codes = turn_on_totp(ctx, user)
    slug = new_org(ctx, OPTIONAL, allowed_methods=[Method.TOTP])
    join(ctx, new_org(ctx, OPTIONAL), user)  # allows everything: the intersection still has no recovery codes
    join(ctx, slug, user)
    challenge = sign_in(ctx, user)
    assert isinstance(challenge, signin.MfaRequired) and challenge.methods == [Method.TOTP]
    with pytest.raises(MethodNotAllowed):  # refused before anything counts: the token keeps its tries
        second_step(ctx, challenge.mfa_token, codes[0], Method.RECOVERY_CODE)
    assert enrollment.security_state(ctx, user.id).recovery_codes_remaining == 16  # nothing was spent
    signed_in = second_step(ctx, challenge.mfa_token, code_at(secret, ctx))
    assert isinstance(signed_in, signin.Authenticated)
    # Step-up follows the same rule.
    with pytest.raises(MethodNotAllowed):
        stepup.reauthenticate(
            ctx, session_token=signed_in.session_token, method=Method.RECOVERY_CODE, secret=codes[0], client=CLIENT
        )
    # Leaving that organisation brings them back.
    organisations.remove_member(ctx, slug, username=user.username, actor=None, client=CLIENT)
    advance(ctx, 60)
    again = sign_in(ctx, user)
    assert isinstance(again, signin.MfaRequired) and again.methods == [Method.TOTP, Method.RECOVERY_CODE]
    assert isinstance(second_step(ctx, again.mfa_token, codes[0], Method.RECOVERY_CODE), signin.Authenticated)


@pytest.mark.parametrize("methods", [[Method.RECOVERY_CODE], []])
def test_the_authenticator_app_can_never_be_disallowed(ctx: ServiceContext, methods: list[Method]) -> None:
    slug = new_org(ctx, ALL)
    with pytest.raises(InvalidInput) as refused:
        set_policy(ctx, slug, ALL, allowed_methods=methods)
    assert status_for(refused.value) == 422
    assert organisations.show(ctx, slug, actor=None).organisation.policy.allowed_methods == frozenset(Method)


def test_an_organisations_tolerated_failures_apply_to_sign_in_codes(ctx: ServiceContext) -> None:
    strict, lenient = new_user(ctx), new_user(ctx)
    strict_secret, _ = turn_on_totp(ctx, strict)
    lenient_secret, _ = turn_on_totp(ctx, lenient)
    join(ctx, new_org(ctx, OPTIONAL, tolerated_failures=0), strict)
    join(ctx, new_org(ctx, OPTIONAL, tolerated_failures=1), strict)  # the lowest of them counts
    join(ctx, new_org(ctx, OPTIONAL), lenient)  # the instance's tolerance: one wrong code
    for user, secret in ((strict, strict_secret), (lenient, lenient_secret)):
        challenge = sign_in(ctx, user)
        assert isinstance(challenge, signin.MfaRequired)
        with pytest.raises(InvalidCode):
            second_step(ctx, challenge.mfa_token, "000000" if code_at(secret, ctx) != "000000" else "111111")
        if user is strict:
            with pytest.raises(RateLimited):  # no failure tolerated: blocked straight away
                second_step(ctx, challenge.mfa_token, code_at(secret, ctx))
            advance(ctx, 2)
        assert isinstance(second_step(ctx, challenge.mfa_token, code_at(secret, ctx)), signin.Authenticated)
        advance(ctx, 30)


# --- turning 2FA off -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("two_factor", "role", "allowed"),
    [(OPTIONAL, OWNER, True), (ADMINS, MEMBER, True), (ADMINS, USER_ADMIN, False), (ALL, MEMBER, False)],
)
def test_turning_two_factor_off_is_refused_while_required(
    ctx: ServiceContext, two_factor: TwoFactorPolicy, role: OrgRole, allowed: bool
) -> None:
    user = new_user(ctx)
    secret, _ = turn_on_totp(ctx, user)
    join(ctx, new_org(ctx, two_factor), user, role)
    if allowed:
        enrollment.disable_totp(ctx, user, client=CLIENT)
        assert not enrollment.security_state(ctx, user.id).totp_enabled
        return
    with pytest.raises(TwoFactorRequiredByPolicy) as refused:
        enrollment.disable_totp(ctx, user, client=CLIENT)
    assert status_for(refused.value) == 409
    assert enrollment.security_state(ctx, user.id).totp_enabled
    assert isinstance(sign_in_fully(ctx, user, secret), signin.Authenticated)


# --- the preview --------------------------------------------------------------------------------------------------


@dataclass
class Staff:
    slug: str
    owner: User  # has 2FA
    admin: User
    user_admin: User
    member: User
    member_with_2fa: User
    collaborator: User  # an outside collaborator: policies still apply to them


def staffed_org(ctx: ServiceContext) -> Staff:
    owner = new_user(ctx, "owner")
    turn_on_totp(ctx, owner)
    slug = new_org(ctx, OPTIONAL, owner=owner)
    staff = Staff(slug, owner, *(new_user(ctx, p) for p in ("admin", "uadmin", "member", "member2fa", "collab")))
    join(ctx, slug, staff.admin, ADMIN)
    join(ctx, slug, staff.user_admin, USER_ADMIN)
    join(ctx, slug, staff.member, MEMBER)
    join(ctx, slug, staff.member_with_2fa, MEMBER)
    turn_on_totp(ctx, staff.member_with_2fa)
    join(ctx, slug, staff.collaborator, MEMBER, managed=False)
    return staff


def asked(entries: list[organisations.PreviewEntry]) -> dict[str, tuple[str, datetime | None]]:
    return {e.user.username: (e.outcome, e.until) for e in entries}


def test_preview_lists_exactly_who_would_be_asked_and_changes_nothing(ctx: ServiceContext) -> None:
    staff = staffed_org(ctx)
    last_event = audit.all_events(ctx, limit=1)[0].seq
    setup = PreviewOutcome.SETUP_AT_NEXT_SIGN_IN

    admins = organisations.preview(ctx, staff.slug, OrgPolicy(ADMINS), actor=staff.owner)
    assert asked(admins) == {staff.admin.username: (setup, None), staff.user_admin.username: (setup, None)}
    assert {e.role for e in admins} == {ADMIN, USER_ADMIN}

    everyone = organisations.preview(ctx, staff.slug, OrgPolicy(ALL), actor=staff.user_admin)
    assert asked(everyone) == {
        u.username: (setup, None) for u in (staff.admin, staff.user_admin, staff.member, staff.collaborator)
    }

    now = ctx.clock.now()
    reminded = organisations.preview(ctx, staff.slug, OrgPolicy(ALL, grace_period_days=14), actor=None)
    until = now + 14 * DAY
    assert asked(reminded) == {
        u.username: (PreviewOutcome.REMINDED_UNTIL, until)
        for u in (staff.admin, staff.user_admin, staff.member, staff.collaborator)
    }
    assert organisations.preview(ctx, staff.slug, OrgPolicy(OPTIONAL), actor=None) == []

    # Nothing changed: the policy, the log, and everyone's next sign-in.
    assert organisations.show(ctx, staff.slug, actor=None).organisation.policy.two_factor is OPTIONAL
    assert audit.all_events(ctx, limit=1)[0].seq == last_event
    for user in (staff.admin, staff.member):
        result = sign_in(ctx, user)
        assert isinstance(result, signin.Authenticated) and result.two_factor_due is None


def test_preview_reminds_until_the_end_of_a_grace_period_already_running(ctx: ServiceContext) -> None:
    staff = staffed_org(ctx)
    # The member's grace period started elsewhere five days ago, in an organisation with a long one.
    join(ctx, new_org(ctx, ALL, 30), staff.member)
    started = ctx.clock.now()
    assert isinstance(sign_in(ctx, staff.member), signin.Authenticated)
    advance(ctx, 5 * DAY.total_seconds())
    entries = asked(organisations.preview(ctx, staff.slug, OrgPolicy(ALL, grace_period_days=7), actor=None))
    assert entries[staff.member.username] == (PreviewOutcome.REMINDED_UNTIL, started + 7 * DAY)
    # With 3 days, that member's grace is already over: set up at the next sign-in.
    entries = asked(organisations.preview(ctx, staff.slug, OrgPolicy(ALL, grace_period_days=3), actor=None))
    assert entries[staff.member.username] == (PreviewOutcome.SETUP_AT_NEXT_SIGN_IN, None)
    assert entries[staff.admin.username] == (PreviewOutcome.REMINDED_UNTIL, ctx.clock.now() + 3 * DAY)


def test_preview_includes_someone_asked_to_register_again(ctx: ServiceContext) -> None:
    staff = staffed_org(ctx)
    user_admin.require_registration(
        ctx, username=staff.member_with_2fa.username, actor=None, client=CLIENT, reason="new phone"
    )
    entries = asked(organisations.preview(ctx, staff.slug, OrgPolicy(ALL), actor=None))
    assert entries[staff.member_with_2fa.username] == (PreviewOutcome.SETUP_AT_NEXT_SIGN_IN, None)


def test_preview_is_for_the_organisations_managers(ctx: ServiceContext) -> None:
    staff = staffed_org(ctx)
    for outsider in (staff.member, staff.collaborator, new_user(ctx)):
        with pytest.raises(NotPermitted):
            organisations.preview(ctx, staff.slug, OrgPolicy(ALL), actor=outsider)
    with pytest.raises(OrganisationNotFound):
        organisations.preview(ctx, "no-such-org", OrgPolicy(ALL), actor=None)


# --- an administrator without 2FA cannot require it of themselves -------------------------------------------------


@pytest.mark.parametrize(
    ("role", "policy", "refused"),
    [
        (OWNER, ALL, True),
        (OWNER, ADMINS, True),
        (ADMIN, ALL, True),
        (ADMIN, ADMINS, True),
        (OWNER, OPTIONAL, False),
    ],
)
def test_an_actor_without_two_factor_is_told_to_enable_it_first(
    ctx: ServiceContext, role: OrgRole, policy: TwoFactorPolicy, refused: bool
) -> None:
    actor = new_user(ctx)
    slug = new_org(ctx, OPTIONAL)
    join(ctx, slug, actor, role)
    if refused:
        with pytest.raises(EnableTwoFactorFirst) as error:
            set_policy(ctx, slug, policy, 7, actor=actor)
        assert status_for(error.value) == 409
        assert organisations.show(ctx, slug, actor=None).organisation.policy.two_factor is OPTIONAL
        turn_on_totp(ctx, actor)
    set_policy(ctx, slug, policy, 7, actor=actor)
    assert organisations.show(ctx, slug, actor=None).organisation.policy == OrgPolicy(policy, 7)
    changed = audit.all_events(ctx, event_type=EventType.ORGANISATION_POLICY_CHANGED, limit=1)[0].event
    assert changed.actor_username == actor.username
    assert changed.details["organisation"] == slug and changed.details["to"] == policy.value


def test_the_command_line_and_outside_instance_admins_may_always_set_a_policy(ctx: ServiceContext) -> None:
    slug = new_org(ctx, OPTIONAL)
    join(ctx, slug, new_user(ctx), OWNER)  # an owner without 2FA: not asked about
    set_policy(ctx, slug, ALL, actor=None)
    instance_admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)  # no 2FA, not a member of that organisation
    set_policy(ctx, slug, ADMINS, actor=instance_admin)
    assert organisations.show(ctx, slug, actor=None).organisation.policy.two_factor is ADMINS


def test_a_user_admin_may_not_change_the_policy(ctx: ServiceContext) -> None:
    staff = staffed_org(ctx)
    turn_on_totp(ctx, staff.user_admin)
    with pytest.raises(NotPermitted):
        set_policy(ctx, staff.slug, ALL, actor=staff.user_admin)
    with pytest.raises(NotPermitted):
        set_policy(ctx, staff.slug, OPTIONAL, actor=staff.member_with_2fa)


# --- an administrator resets a user's 2FA -----------------------------------------------------------------------


def test_reset_removes_everything_signs_out_and_leads_into_setup(shared: Runtime, ctx: ServiceContext) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    user = new_user(ctx)
    secret, old_codes = turn_on_totp(ctx, user)
    sessions = [sign_in_fully(ctx, user, secret) for _ in range(2)]
    pending = sign_in(ctx, user)  # a sign-in half done when the reset happens
    assert isinstance(pending, signin.MfaRequired)

    result = user_admin.reset_two_factor(
        ctx, username=user.username, actor=admin, client=CLIENT, reason="lost phone, ticket 4711"
    )

    assert result.had_two_factor and result.sessions_ended == 2
    for session in sessions:
        assert isinstance(session, signin.Authenticated)
        with pytest.raises(AuthenticationRequired):
            signin.current_session(ctx, session.session_token)
    state = enrollment.security_state(ctx, user.id)
    assert not state.totp_enabled and state.recovery_codes_remaining == 0 and state.registration_required
    with pytest.raises((MethodNotAvailable, MfaTokenInvalid)):  # the half-done sign-in cannot finish with it
        second_step(ctx, pending.mfa_token, old_codes[0], Method.RECOVERY_CODE)

    # The next sign-in (the default organisation's policy is optional) leads into setup.
    setup = sign_in(ctx, user)
    assert isinstance(setup, signin.SetupRequired) and setup.reason == "administrator"
    new_secret, full = finish_setup(ctx, setup)
    state = enrollment.security_state(ctx, user.id)
    assert not state.registration_required and state.recovery_codes_remaining == 16
    challenge = sign_in(ctx, user)
    assert isinstance(challenge, signin.MfaRequired)
    with pytest.raises(InvalidCode):  # the old set's codes are refused
        second_step(ctx, challenge.mfa_token, old_codes[1], Method.RECOVERY_CODE)
    advance(ctx, 2)
    assert isinstance(second_step(ctx, challenge.mfa_token, code_at(new_secret, ctx)), signin.Authenticated)

    # Audited with the reason; no secret anywhere in the log.
    reset = audit.all_events(ctx, event_type=EventType.TWO_FACTOR_RESET, username=user.username, limit=1)[0].event
    assert reset.actor_username == admin.username and reset.subject_username == user.username
    assert reset.details["reason"] == "lost phone, ticket 4711"
    assert reset.details["had_two_factor"] is True and reset.details["sessions_ended"] == 2
    lines: list[str] = []
    audit.export(ctx, lines.append)
    exported = "\n".join(lines)
    tokens = [s.session_token for s in sessions if isinstance(s, signin.Authenticated)]
    for secret_value in [secret, new_secret, PASSWORD, pending.mfa_token, setup.setup_token, full.session_token]:
        assert secret_value not in exported
    for secret_value in [*old_codes, *tokens]:
        assert secret_value not in exported
    assert json.loads(lines[-1])  # the export is JSON lines


def test_reset_of_a_user_without_two_factor_still_asks_for_setup(ctx: ServiceContext) -> None:
    user = new_user(ctx)
    result = user_admin.reset_two_factor(ctx, username=user.username, actor=None, client=CLIENT, reason=None)
    assert not result.had_two_factor and result.sessions_ended == 0
    setup = sign_in(ctx, user)
    assert isinstance(setup, signin.SetupRequired) and setup.reason == "administrator"


def test_reset_and_registration_are_refused_for_unknown_users(ctx: ServiceContext) -> None:
    with pytest.raises(UserNotFound):
        user_admin.reset_two_factor(ctx, username="nobody-here", actor=None, client=CLIENT, reason=None)
    with pytest.raises(UserNotFound):
        user_admin.require_registration(ctx, username="nobody-here", actor=None, client=CLIENT, reason=None)


def test_require_registration_removes_nothing_and_is_audited(ctx: ServiceContext) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    user = new_user(ctx)
    secret, _ = turn_on_totp(ctx, user)
    session = sign_in_fully(ctx, user, secret)
    assert isinstance(session, signin.Authenticated)
    user_admin.require_registration(ctx, username=user.username, actor=admin, client=CLIENT, reason="new phone")
    signin.full_session(ctx, session.session_token)  # still signed in
    state = enrollment.security_state(ctx, user.id)
    assert state.totp_enabled and state.recovery_codes_remaining == 16 and state.registration_required
    event = audit.all_events(ctx, event_type=EventType.REGISTRATION_REQUIRED, username=user.username, limit=1)[0]
    assert event.event.actor_username == admin.username and event.event.details["reason"] == "new phone"


@pytest.mark.parametrize("action", ["reset", "require_registration", "unenroll"])
def test_nobody_acts_on_themselves(ctx: ServiceContext, action: str) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    secret, _ = turn_on_totp(ctx, admin)
    with pytest.raises(CannotActOnSelf):
        if action == "reset":
            user_admin.reset_two_factor(ctx, username=admin.username, actor=admin, client=CLIENT, reason=None)
        elif action == "require_registration":
            user_admin.require_registration(ctx, username=admin.username, actor=admin, client=CLIENT, reason=None)
        else:
            session = admin_session(ctx, admin, secret)
            user_admin.unenroll(
                ctx, admin=session, username=admin.username, totp_code=code_at(secret, ctx), client=CLIENT
            )
    assert enrollment.security_state(ctx, admin.id).totp_enabled


# --- Atlassian's unenroll -----------------------------------------------------------------------------------------


def admin_session(ctx: ServiceContext, admin: User, secret: str) -> signin.CurrentSession:
    result = sign_in_fully(ctx, admin, secret)
    assert isinstance(result, signin.Authenticated)
    return signin.current_session(ctx, result.session_token)


def test_unenroll_removes_the_factors_and_spends_the_admins_code(ctx: ServiceContext) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    admin_secret, _ = turn_on_totp(ctx, admin)
    session = admin_session(ctx, admin, admin_secret)
    bob, carol = new_user(ctx), new_user(ctx)
    bob_secret, _ = turn_on_totp(ctx, bob)
    turn_on_totp(ctx, carol)
    bob_session = sign_in_fully(ctx, bob, bob_secret)
    assert isinstance(bob_session, signin.Authenticated)

    code = code_at(admin_secret, ctx)
    user_admin.unenroll(ctx, admin=session, username=bob.username, totp_code=code, client=CLIENT)

    assert not enrollment.security_state(ctx, bob.id).totp_enabled
    with pytest.raises(AuthenticationRequired):
        signin.current_session(ctx, bob_session.session_token)
    # The same code again (same time step) is a replay: refused, and carol keeps her factors.
    with pytest.raises(InvalidCode):
        user_admin.unenroll(ctx, admin=session, username=carol.username, totp_code=code, client=CLIENT)
    assert enrollment.security_state(ctx, carol.id).totp_enabled
    failed = audit.all_events(ctx, event_type=EventType.STEP_UP_FAILED, username=admin.username, limit=1)[0]
    assert failed.event.details["replayed"] is True
    unenrolled = audit.all_events(ctx, event_type=EventType.TWO_FACTOR_UNENROLLED, username=bob.username, limit=1)
    assert unenrolled[0].event.actor_username == admin.username
    # Unlike a reset, nothing is asked at bob's next sign-in while nothing requires 2FA of him.
    assert isinstance(sign_in(ctx, bob), signin.Authenticated)


def test_after_unenroll_a_policy_leads_the_user_into_setup(ctx: ServiceContext) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    admin_secret, _ = turn_on_totp(ctx, admin)
    bob = new_user(ctx)
    turn_on_totp(ctx, bob)
    join(ctx, new_org(ctx, ALL), bob)
    session = admin_session(ctx, admin, admin_secret)
    user_admin.unenroll(ctx, admin=session, username=bob.username, totp_code=code_at(admin_secret, ctx), client=CLIENT)
    result = sign_in(ctx, bob)
    assert isinstance(result, signin.SetupRequired) and result.reason == "policy"


def test_wrong_admin_codes_count_towards_the_admins_backoff(ctx: ServiceContext) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    admin_secret, _ = turn_on_totp(ctx, admin)
    session = admin_session(ctx, admin, admin_secret)
    bob = new_user(ctx)
    turn_on_totp(ctx, bob)
    wrong = "000000" if code_at(admin_secret, ctx) != "000000" else "111111"
    for _ in range(2):  # the instance tolerates one; the second blocks for a second
        with pytest.raises(InvalidCode):
            user_admin.unenroll(ctx, admin=session, username=bob.username, totp_code=wrong, client=CLIENT)
    with pytest.raises(RateLimited):  # even the right code is refused while blocked, before it is looked at
        user_admin.unenroll(
            ctx, admin=session, username=bob.username, totp_code=code_at(admin_secret, ctx), client=CLIENT
        )
    # It is the admin's own second-step counter: their sign-in is blocked as well.
    challenge = sign_in(ctx, admin)
    assert isinstance(challenge, signin.MfaRequired)
    with pytest.raises(RateLimited):
        second_step(ctx, challenge.mfa_token, code_at(admin_secret, ctx))
    assert enrollment.security_state(ctx, bob.id).totp_enabled
    advance(ctx, 2)
    user_admin.unenroll(ctx, admin=session, username=bob.username, totp_code=code_at(admin_secret, ctx), client=CLIENT)
    assert not enrollment.security_state(ctx, bob.id).totp_enabled


def test_unenroll_refusals(ctx: ServiceContext) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    admin_secret, _ = turn_on_totp(ctx, admin)
    session = admin_session(ctx, admin, admin_secret)
    without = new_user(ctx)
    with pytest.raises(NoEnrollment) as none:
        user_admin.unenroll(
            ctx, admin=session, username=without.username, totp_code=code_at(admin_secret, ctx), client=CLIENT
        )
    assert status_for(none.value) == 400
    advance(ctx, 30)
    with pytest.raises(UserNotFound):
        user_admin.unenroll(
            ctx, admin=session, username="nobody-here", totp_code=code_at(admin_secret, ctx), client=CLIENT
        )
    # An administrator without an authenticator app of their own cannot confirm.
    other = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    signed_in = sign_in_fully(ctx, other)
    assert isinstance(signed_in, signin.Authenticated)
    other_session = signin.current_session(ctx, signed_in.session_token)
    with pytest.raises(InvalidCode):
        user_admin.unenroll(ctx, admin=other_session, username=admin.username, totp_code="123456", client=CLIENT)
    assert enrollment.security_state(ctx, admin.id).totp_enabled


def test_unenroll_removes_a_pending_setup_too(ctx: ServiceContext) -> None:
    admin = new_user(ctx, "iadmin", role=InstanceRole.ADMIN)
    admin_secret, _ = turn_on_totp(ctx, admin)
    session = admin_session(ctx, admin, admin_secret)
    bob = new_user(ctx)
    enrollment.start_totp(ctx, bob)
    user_admin.unenroll(ctx, admin=session, username=bob.username, totp_code=code_at(admin_secret, ctx), client=CLIENT)
    assert not enrollment.security_state(ctx, bob.id).totp_enrollment_pending
