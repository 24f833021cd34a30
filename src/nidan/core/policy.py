"""Who must have two-step verification, and what a sign-in does about it: organisations' policies as pure decisions.

A user may belong to several organisations; the strictest requirement wins, and the shortest grace period among
the organisations that require it. The grace period is counted per user, from the first sign-in at which they were
required to have 2FA and had none (GitLab's rule), so turning enforcement on never locks anyone out at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from nidan.core.models import Method, OrgRole
from nidan.errors import InvalidInput, ToleranceAboveInstance
from nidan.texts import _


class TwoFactorPolicy(StrEnum):
    OPTIONAL = "optional"
    #: Owners, admins and user_admins: the roles that can create users or change who may sign in.
    REQUIRED_FOR_ADMINS = "required_for_admins"
    REQUIRED_FOR_ALL = "required_for_all"


ADMIN_ROLES = frozenset({OrgRole.OWNER, OrgRole.ADMIN, OrgRole.USER_ADMIN})
#: Roles that may change an organisation's settings (a user_admin manages members only).
SETTINGS_ROLES = frozenset({OrgRole.OWNER, OrgRole.ADMIN})
#: The authenticator app is the one method a person sets up: an organisation cannot forbid it (no lock-out).
REQUIRED_METHODS = frozenset({Method.TOTP})
MAX_GRACE_DAYS = 365
#: The largest count of wrong codes anything may tolerate before the backoff blocks (instance or organisation).
MAX_TOLERATED_FAILURES = 1000
#: The longest a browser may be remembered (the second step skipped there), in days: a lost laptop stays a risk no
#: longer than this.
MAX_REMEMBER_DEVICE_DAYS = 90


@dataclass(frozen=True, slots=True)
class OrgPolicy:
    two_factor: TwoFactorPolicy = TwoFactorPolicy.OPTIONAL
    grace_period_days: int = 0
    allowed_methods: frozenset[Method] = frozenset(Method)
    #: Consecutive wrong codes tolerated before the backoff blocks, for members; ``None``: the instance's setting.
    tolerated_failures: int | None = None
    #: Days a browser may skip the second step once a member ticked "remember this browser" (0: never);
    #: ``None``: the instance's setting.
    remember_device_days: int | None = None


def checked_policy(
    two_factor: TwoFactorPolicy,
    grace_period_days: int,
    allowed_methods: Iterable[Method],
    tolerated: int | None,
    *,
    instance_tolerated: int,
    remember_device_days: int | None = None,
) -> OrgPolicy:
    """The policy asked for, or ``InvalidInput`` naming what is wrong. ``instance_tolerated`` is the instance's
    ``rate_limit.tolerated_failures``: an organisation may be stricter than the instance, never laxer (a laxer count
    would be stored, shown, and silently not applied)."""
    allowed = frozenset(allowed_methods)
    if not allowed >= REQUIRED_METHODS:
        raise InvalidInput(_("The authenticator app (totp) must stay allowed: it is how people set up 2FA."))
    if not 0 <= grace_period_days <= MAX_GRACE_DAYS:
        raise InvalidInput(_("The grace period is 0 to %(days)d days.", days=MAX_GRACE_DAYS))
    if tolerated is not None and not 0 <= tolerated <= MAX_TOLERATED_FAILURES:
        raise InvalidInput(
            _(
                "Tolerated failures are 0 to %(max)d (or unset, for the instance's setting).",
                max=MAX_TOLERATED_FAILURES,
            )
        )
    if remember_device_days is not None and not 0 <= remember_device_days <= MAX_REMEMBER_DEVICE_DAYS:
        raise InvalidInput(
            _(
                "A browser may be remembered for 0 to %(days)d days (0: never; or leave it unset, for the "
                "instance's setting).",
                days=MAX_REMEMBER_DEVICE_DAYS,
            )
        )
    if tolerated is not None and tolerated > instance_tolerated:
        raise ToleranceAboveInstance(
            _(
                "An organisation may tolerate at most as many wrong codes as the instance does (%(n)d). Choose "
                "%(n)d or fewer, or leave it empty to use the instance's setting.",
                n=instance_tolerated,
            )
        )
    return OrgPolicy(two_factor, grace_period_days, allowed, tolerated, remember_device_days)


def tolerance_in_force(tolerated: int | None, instance_tolerated: int) -> int:
    """The wrong codes an organisation's members are tolerated: its own count when stricter than the instance's.
    A count stored before the instance was made stricter does not loosen it (``throttling.second_factor``)."""
    return instance_tolerated if tolerated is None else min(tolerated, instance_tolerated)


def remember_days_in_force(organisation_days: Iterable[int | None], instance_days: int) -> int:
    """How many days a user's browser may be remembered: the smallest of their organisations' settings (one that
    sets none has the instance's), or the instance's for a user in no organisation. The strictest wins, so that
    joining a careful organisation is never undone by a lax one."""
    days = [instance_days if value is None else value for value in organisation_days]
    return min(MAX_REMEMBER_DEVICE_DAYS, max(0, min(days, default=instance_days)))


def requires_two_factor(policy: TwoFactorPolicy, role: OrgRole) -> bool:
    if policy is TwoFactorPolicy.REQUIRED_FOR_ALL:
        return True
    return policy is TwoFactorPolicy.REQUIRED_FOR_ADMINS and role in ADMIN_ROLES


def two_factor_required(memberships: Iterable[tuple[TwoFactorPolicy, OrgRole]]) -> bool:
    """Whether any organisation the user belongs to requires 2FA of them in their role there."""
    return any(requires_two_factor(policy, role) for policy, role in memberships)


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a user's organisations ask of them, together."""

    required: bool = False
    #: The shortest grace period among the organisations that require 2FA of the user.
    grace_period_days: int = 0
    #: Methods every one of the user's organisations allows.
    allowed_methods: frozenset[Method] = frozenset(Method)
    #: The lowest tolerance any of them sets, if any does.
    tolerated_failures: int | None = None


def combined(memberships: Iterable[tuple[OrgPolicy, OrgRole]]) -> Requirement:
    required = False
    grace: int | None = None
    allowed = frozenset(Method)
    tolerated: int | None = None
    for policy, role in memberships:
        allowed &= policy.allowed_methods
        if policy.tolerated_failures is not None:
            tolerated = policy.tolerated_failures if tolerated is None else min(tolerated, policy.tolerated_failures)
        if requires_two_factor(policy.two_factor, role):
            required = True
            grace = policy.grace_period_days if grace is None else min(grace, policy.grace_period_days)
    return Requirement(required, grace or 0, allowed | REQUIRED_METHODS, tolerated)


class Enrolment(StrEnum):
    """What a sign-in must do about a user's missing second factor."""

    #: Nothing: 2FA is on, or not required.
    NONE = "none"
    #: Required, in the grace period: remind, let them skip.
    REMIND = "remind"
    #: Required (grace over) or an administrator asked for it: set up before anything else.
    SETUP = "setup"


@dataclass(frozen=True, slots=True)
class EnrolmentDecision:
    action: Enrolment
    #: When the grace period ends (for ``REMIND``).
    grace_ends_at: datetime | None = None
    #: When the grace period starts with this sign-in (the caller records it).
    grace_starts: bool = False


def enrolment(
    requirement: Requirement,
    *,
    has_two_factor: bool,
    registration_required: bool,
    grace_started_at: datetime | None,
    now: datetime,
) -> EnrolmentDecision:
    """At sign-in, after the password (and the second factor, when there is one)."""
    if registration_required:
        return EnrolmentDecision(Enrolment.SETUP)
    if has_two_factor or not requirement.required:
        return EnrolmentDecision(Enrolment.NONE)
    started = grace_started_at or now
    ends = started + timedelta(days=requirement.grace_period_days)
    if now < ends:
        return EnrolmentDecision(Enrolment.REMIND, ends, grace_starts=grace_started_at is None)
    return EnrolmentDecision(Enrolment.SETUP, grace_starts=grace_started_at is None)
