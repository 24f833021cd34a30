"""``nidan org ...`` and ``nidan user reset-2fa / require-2fa-setup / show``, driven in process on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from nidan.bootstrap import Runtime
from nidan.config import Settings
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, Method, OrgRole
from nidan.core.policy import TwoFactorPolicy
from nidan.services import audit, enrollment, organisations, signin
from tests.helpers import PASSWORD, code_at, make_user
from tests.integration.backup_support import assert_refused, cli_for

Invoke = Callable[..., Result]
CLIENT = ClientInfo(ip="192.0.2.9", user_agent="pytest")


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    return cli_for(settings, tmp_path)


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout


def members_of(runtime: Runtime, slug: str) -> dict[str, tuple[OrgRole, bool]]:
    view = organisations.show(runtime.services, slug, actor=None)
    return {m.member.user.username: (m.member.role, m.member.managed) for m in view.members}


def with_totp(runtime: Runtime, username: str) -> str:
    ctx = runtime.services
    user = make_user(ctx, username)
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT)
    return started.secret


def test_org_add_list_and_show(nidan: Invoke, runtime: Runtime) -> None:
    make_user(runtime.services, "olga")
    out = ok(nidan("org", "add", "Platform-Team", "--name", "Platform team", "--owner", "OLGA"))
    assert out.strip() == 'Organisation platform-team ("Platform team") created, owned by olga.'
    assert "no owner yet" in ok(nidan("org", "add", "ops", "--name", "Ops"))

    listed = ok(nidan("org", "list")).splitlines()
    assert listed[0].split() == ["SLUG", "NAME", "MEMBERS", "TWO-STEP", "GRACE", "(DAYS)"]
    assert [line.split()[0] for line in listed[1:]] == ["default", "ops", "platform-team"]
    assert listed[3].split() == ["platform-team", "Platform", "team", "1", "optional", "0"]

    shown = ok(nidan("org", "show", "platform-team"))
    assert "Organisation:    platform-team (Platform team)" in shown
    assert "Two-step:        optional" in shown and "Grace period:    0 days" in shown
    assert "Methods:         totp, recovery_code" in shown
    assert "olga      owner  yes" in shown

    (event, _) = [r.event for r in audit.all_events(runtime.services, event_type=EventType.ORGANISATION_CREATED)]
    assert event.actor_user_id is None and event.user_agent is not None and "command line" in event.user_agent


def test_org_errors_exit_1_with_the_code(nidan: Invoke, runtime: Runtime) -> None:
    make_user(runtime.services, "olga")
    ok(nidan("org", "add", "eng", "--name", "Engineering", "--owner", "olga"))
    assert_refused(nidan("org", "add", "eng", "--name", "Again"), "organisation_exists")
    assert_refused(nidan("org", "add", "not valid", "--name", "X"), "invalid_request")
    assert_refused(nidan("org", "add", "x", "--name", "X", "--owner", "nobody"), "user_not_found")
    assert_refused(nidan("org", "show", "nope"), "organisation_not_found")
    assert_refused(nidan("org", "member", "add", "eng", "olga"), "member_exists")
    assert_refused(nidan("org", "member", "add", "eng", "nobody"), "user_not_found")
    assert_refused(nidan("org", "member", "remove", "eng", "olga"), "last_owner")
    assert_refused(nidan("org", "member", "set", "eng", "olga", "--role", "member"), "last_owner")
    make_user(runtime.services, "mia")
    assert_refused(nidan("org", "member", "remove", "eng", "mia"), "member_not_found")
    assert_refused(nidan("org", "policy", "eng", "--methods", "recovery_code"), "invalid_request")
    assert_refused(nidan("org", "policy", "eng", "--methods", "totp,sms"), "invalid_request")
    assert members_of(runtime, "eng") == {"olga": (OrgRole.OWNER, True)}


def test_org_members_add_set_remove(nidan: Invoke, runtime: Runtime) -> None:
    for name in ("olga", "mia", "otto"):
        make_user(runtime.services, name)
    ok(nidan("org", "add", "eng", "--name", "Engineering", "--owner", "olga"))
    assert ok(nidan("org", "member", "add", "eng", "mia")).strip() == "Added mia to eng as member (managed)."
    added = ok(nidan("org", "member", "add", "ENG", "otto", "--role", "user_admin", "--outside-collaborator"))
    assert "as user_admin (outside collaborator)" in added
    assert members_of(runtime, "eng") == {
        "olga": (OrgRole.OWNER, True),
        "mia": (OrgRole.MEMBER, True),
        "otto": (OrgRole.USER_ADMIN, False),
    }
    assert "mia is now admin (managed) in eng." in ok(nidan("org", "member", "set", "eng", "mia", "--role", "admin"))
    # Only what is given changes.
    ok(nidan("org", "member", "set", "eng", "otto", "--managed"))
    assert members_of(runtime, "eng")["otto"] == (OrgRole.USER_ADMIN, True)
    ok(nidan("org", "member", "set", "eng", "mia", "--role", "owner"))
    ok(nidan("org", "member", "set", "eng", "olga", "--role", "member", "--outside-collaborator"))
    assert members_of(runtime, "eng")["olga"] == (OrgRole.MEMBER, False)
    assert ok(nidan("org", "member", "remove", "eng", "otto")).strip() == "Removed otto from eng."
    assert set(members_of(runtime, "eng")) == {"olga", "mia"}
    kinds = {r.event.event_type for r in audit.all_events(runtime.services) if r.event.event_type.startswith("member")}
    assert kinds == {"member.added", "member.changed", "member.removed"}


def test_org_policy_prints_previews_and_applies(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "ann")
    with_totp(runtime, "ben")
    make_user(ctx, "cat")
    ok(nidan("org", "add", "eng", "--name", "Engineering"))
    ok(nidan("org", "member", "add", "eng", "ann"))
    ok(nidan("org", "member", "add", "eng", "ben"))
    ok(nidan("org", "member", "add", "eng", "cat", "--role", "user_admin"))

    shown = ok(nidan("org", "policy", "eng"))
    assert "Two-step:        optional" in shown and "1 (the instance's setting) tolerated" in shown

    dry = ok(nidan("org", "policy", "eng", "--two-factor", "required_for_all", "--dry-run"))
    assert dry.splitlines() == [
        "Asked to set up two-step verification at their next sign-in (2):",
        "  ann (member): must set it up before anything else",
        "  cat (user_admin): must set it up before anything else",
        "Dry run: nothing was changed.",
    ]
    assert organisations.show(ctx, "eng", actor=None).organisation.policy.two_factor is TwoFactorPolicy.OPTIONAL
    assert not audit.all_events(ctx, event_type=EventType.ORGANISATION_POLICY_CHANGED)

    applied = ok(nidan("org", "policy", "eng", "--two-factor", "required_for_admins", "--grace-days", "7"))
    lines = applied.splitlines()
    assert lines[0] == "Asked to set up two-step verification at their next sign-in (1):"
    assert lines[1].startswith("  cat (user_admin): reminded, may skip until ")
    assert "Policy of eng changed:" in applied and "Grace period:    7 days" in applied
    policy = organisations.show(ctx, "eng", actor=None).organisation.policy
    assert (policy.two_factor, policy.grace_period_days) == (TwoFactorPolicy.REQUIRED_FOR_ADMINS, 7)

    # Options not given keep their values; the tolerance can be set and handed back to the instance.
    ok(nidan("org", "policy", "eng", "--tolerated-failures", "0", "--methods", "totp"))
    policy = organisations.show(ctx, "eng", actor=None).organisation.policy
    assert (policy.two_factor, policy.grace_period_days) == (TwoFactorPolicy.REQUIRED_FOR_ADMINS, 7)
    assert (policy.tolerated_failures, policy.allowed_methods) == (0, frozenset({Method.TOTP}))
    ok(nidan("org", "policy", "eng", "--instance-tolerance"))
    assert organisations.show(ctx, "eng", actor=None).organisation.policy.tolerated_failures is None
    nobody = ok(nidan("org", "policy", "eng", "--two-factor", "optional"))
    assert nobody.startswith("Nobody will be asked")

    # More than the instance tolerates (1) is refused, in a dry run too, and nothing changes.
    for dry in ([], ["--dry-run"]):
        laxer = nidan("org", "policy", "eng", "--tolerated-failures", "2", *dry)
        assert laxer.exit_code != 0 and "tolerance_above_instance" in laxer.stderr, laxer.stderr
        assert "at most as many wrong codes as the instance does (1)" in laxer.stderr
    assert organisations.show(ctx, "eng", actor=None).organisation.policy.tolerated_failures is None
    both = nidan("org", "policy", "eng", "--tolerated-failures", "3", "--instance-tolerance")
    assert both.exit_code == 2 and "not both" in both.stderr
    changes = audit.all_events(ctx, event_type=EventType.ORGANISATION_POLICY_CHANGED)
    assert len(changes) == 4 and all(r.event.actor_user_id is None for r in changes)


def test_user_reset_2fa_and_require_setup(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    secret = with_totp(runtime, "bob")
    session = signin.login(ctx, username="bob", password=PASSWORD, client=CLIENT)
    assert isinstance(session, signin.MfaRequired)

    assert_refused(nidan("user", "reset-2fa", "bob", "--reason", "x"), "invalid_request")
    assert_refused(nidan("user", "reset-2fa", "nobody", "--reason", "ticket 9"), "user_not_found")
    missing = nidan("user", "reset-2fa", "bob")
    assert missing.exit_code == 2 and "--reason" in missing.stderr

    out = ok(nidan("user", "reset-2fa", "bob", "--reason", "lost phone, ticket 9"))
    assert "Removed their authenticator app and recovery codes" in out and "next sign-in" in out
    answer = signin.login(ctx, username="bob", password=PASSWORD, client=CLIENT)
    assert isinstance(answer, signin.SetupRequired) and answer.reason == "administrator"
    (event,) = [r.event for r in audit.all_events(ctx, event_type=EventType.TWO_FACTOR_RESET)]
    assert event.actor_user_id is None and event.details["reason"] == "lost phone, ticket 9"
    assert secret  # the old secret is gone with the reset

    make_user(ctx, "carol")
    out = ok(nidan("user", "require-2fa-setup", "carol", "--reason", "new phones for everyone"))
    assert out.strip() == "carol sets up two-step verification again at their next sign-in."
    answer = signin.login(ctx, username="carol", password=PASSWORD, client=CLIENT)
    assert isinstance(answer, signin.SetupRequired) and answer.reason == "administrator"
    assert audit.all_events(ctx, event_type=EventType.REGISTRATION_REQUIRED)[0].event.actor_user_id is None


def test_user_show_names_organisations_and_the_request_to_set_up_again(nidan: Invoke, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "bob")
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    ok(nidan("org", "add", "eng", "--name", "Engineering"))
    ok(nidan("org", "member", "add", "eng", "bob", "--role", "user_admin", "--outside-collaborator"))
    shown = ok(nidan("user", "show", "bob"))
    assert "Organisations:   default (member), eng (user_admin, outside collaborator)" in shown
    assert "Asked to set up 2FA again" not in shown

    ok(nidan("user", "require-2fa-setup", "bob", "--reason", "ticket 12"))
    shown = ok(nidan("user", "show", "bob"))
    assert "Asked to set up 2FA again at the next sign-in (since " in shown
    record = json.loads(ok(nidan("user", "show", "bob", "--json")))
    assert record["registration_required_at"] is not None
    assert record["organisations"] == [
        {"organisation": "default", "role": "member", "managed": True},
        {"organisation": "eng", "role": "user_admin", "managed": False},
    ]
    assert "Organisations:   default (owner)" in ok(nidan("user", "show", "root"))
