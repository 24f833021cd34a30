"""The admin console's organisation pages (/admin/orgs/...): the two-step policy changed through a preview of who
will be asked to set it up, members added, changed and removed, and the refusals that belong on the page (the last
owner, a member already there, an administrator without 2FA requiring it), in a browser without JavaScript."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole, Method, OrgRole
from nidan.core.policy import TwoFactorPolicy
from nidan.services import accounts, organisations
from nidan.services.context import ServiceContext
from tests.helpers import code_at, make_user
from tests.web.admin_support import CLI, STALE, advance, organisation, signed_in, text_of, with_totp
from tests.web.pages_support import assert_support_details, error_code_of, sign_in, submit, verify

POLICY = "/admin/orgs/a"


def policy_of(ctx: ServiceContext, slug: str = "a") -> organisations.OrgPolicy:
    (found,) = [o for o in organisations.list_all(ctx) if o.slug == slug]
    return found.policy


def roles_of(ctx: ServiceContext, slug: str = "a") -> dict[str, tuple[str, bool]]:
    view = organisations.show(ctx, slug, actor=None)
    return {m.member.user.username: (m.member.role.value, m.member.managed) for m in view.members}


def preview(client: TestClient, page: httpx.Response, slug: str = "a", **fields: str) -> httpx.Response:
    values = {"two_factor": "required_for_all", "grace_period_days": "0", "tolerated_failures": "", **fields}
    return submit(client, page, f"/admin/orgs/{slug}/policy/preview", **values)


def input_tag(page: httpx.Response, element_id: str) -> str:
    found = re.search(rf'<input[^>]*\bid="{element_id}"[^>]*>', page.text)
    assert found, page.text
    return found.group(0)


def is_checked(page: httpx.Response, element_id: str) -> bool:
    return re.search(r"\schecked\b", input_tag(page, element_id)) is not None


def listed(page: httpx.Response, list_id: str) -> list[str]:
    found = re.search(rf'<ul class="people" id="{list_id}">(.*?)</ul>', page.text, re.S)
    return re.findall(r"<strong>([^<]+)</strong>", found.group(1)) if found else []


def team(ctx: ServiceContext) -> dict[str, str]:
    """Org A: alice (member, no 2FA), carol (user_admin, no 2FA), erin (outside collaborator, 2FA on), olga (owner,
    2FA on). Returns erin's and olga's TOTP secrets."""
    for name in ("alice", "carol", "erin", "olga"):
        make_user(ctx, name)
    secrets = {name: with_totp(ctx, accounts.find_user(ctx, name)) for name in ("erin", "olga")}
    organisation(
        ctx,
        "a",
        {
            "olga": (OrgRole.OWNER, True),
            "carol": (OrgRole.USER_ADMIN, True),
            "alice": (OrgRole.MEMBER, True),
            "erin": (OrgRole.MEMBER, False),
        },
    )
    return secrets


# --- the page ------------------------------------------------------------------------------------------------------


def test_the_organisation_page_shows_its_policy_and_members(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get(POLICY)
    assert page.status_code == 200, page.text
    text = text_of(page)
    assert "Org A" in text and "4 members" in text
    assert is_checked(page, "two-factor-optional") and not is_checked(page, "two-factor-required_for_all")
    assert is_checked(page, "method-totp") and "disabled" in input_tag(page, "method-totp")
    assert 'name="methods" value="totp"' in page.text
    assert is_checked(page, "method-recovery_code")
    assert 'placeholder="default: 1"' in page.text
    rows = dict(re.findall(r'<tr id="member-([a-z]+)">(.*?)</tr>', page.text, re.S))
    assert set(rows) == {"alice", "carol", "erin", "olga"}
    assert '<span class="badge on">On</span>' in rows["erin"] and "outside collaborator" in rows["erin"]
    assert '<span class="badge off">Off</span>' in rows["alice"] and "managed account" in rows["alice"]
    assert '<option value="user_admin" selected>User admin</option>' in rows["carol"]
    assert 'href="/admin/users/alice"' in rows["alice"]
    assert f'action="{POLICY}/members/alice"' in rows["alice"]
    assert f'href="{POLICY}/members/olga/remove"' in rows["olga"]


def test_a_user_admin_sees_the_policy_but_does_not_change_it(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    assert sign_in(client, "carol").headers["location"] == "/security"
    page = client.get(POLICY)
    assert page.status_code == 200
    text = text_of(page)
    assert "Only the organisation's owners and admins change its policy." in text
    assert "/policy/preview" not in page.text
    rows = dict(re.findall(r'<tr id="member-([a-z]+)">(.*?)</tr>', page.text, re.S))
    assert "<form" not in rows["olga"] and "Owner" in rows["olga"]  # above them: no form
    assert '<option value="owner"' not in rows["alice"] and "<form" in rows["alice"]
    for path in (f"{POLICY}/policy/preview", f"{POLICY}/policy"):
        refused = (
            preview(client, page) if path.endswith("preview") else submit(client, page, path, two_factor="optional")
        )
        assert refused.status_code == 403 and error_code_of(refused) == "not_permitted"
    assert policy_of(ctx).two_factor is TwoFactorPolicy.OPTIONAL
    # Another organisation's page is not theirs.
    organisation(ctx, "b", {})
    other = client.get("/admin/orgs/b")
    assert other.status_code == 403
    assert_support_details(other, "not_permitted", "carol")
    assert client.get("/admin/orgs/nope").status_code == 404


# --- the policy: preview, then apply ---------------------------------------------------------------------------------


def test_the_preview_lists_who_will_be_asked_and_apply_changes_the_policy(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get(POLICY)

    everyone = preview(client, page)
    assert everyone.status_code == 200, everyone.text
    assert "Apply this policy to Org A?" in text_of(everyone)
    assert "Optional → <strong>Required for everyone</strong>" in text_of(everyone)
    assert listed(everyone, "setup-next-sign-in") == ["alice", "carol"]  # erin and olga have 2FA
    assert listed(everyone, "reminded") == []
    assert policy_of(ctx).two_factor is TwoFactorPolicy.OPTIONAL  # a preview changes nothing

    admins = preview(client, page, two_factor="required_for_admins")
    assert listed(admins, "setup-next-sign-in") == ["carol"]

    graced = preview(client, page, grace_period_days="7")
    assert listed(graced, "reminded") == ["alice", "carol"]
    due = ctx.clock.now() + timedelta(days=7)
    until = f"{due.day} {due:%b %Y, %H:%M} UTC"  # the page's English time format, in UTC
    assert f"reminded until {until}" in text_of(graced)

    optional = preview(client, page, two_factor="optional")
    assert "Nobody" in text_of(optional)

    # "Apply" posts the same values again.
    form = re.search(r'<form method="post" action="/admin/orgs/a/policy".*?</form>', graced.text, re.S)
    assert form, graced.text
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.group(0)))
    assert hidden["two_factor"] == "required_for_all" and hidden["grace_period_days"] == "7"
    assert 'href="/admin/orgs/a">Cancel</a>' in form.group(0)
    applied = submit(
        client, graced, f"{POLICY}/policy", two_factor="required_for_all", grace_period_days="7",
        methods="totp", tolerated_failures="0",
    )  # fmt: skip
    assert applied.status_code == 303 and applied.headers["location"] == f"{POLICY}?notice=policy_changed"
    after = client.get(applied.headers["location"])
    assert "The two-step policy was changed" in text_of(after)
    assert is_checked(after, "two-factor-required_for_all") and not is_checked(after, "method-recovery_code")
    assert 'value="0"' in input_tag(after, "tolerated") and 'value="7"' in input_tag(after, "grace")
    assert policy_of(ctx) == organisations.OrgPolicy(TwoFactorPolicy.REQUIRED_FOR_ALL, 7, frozenset({Method.TOTP}), 0)
    log = text_of(client.get("/security/events"))
    assert "Organisation's two-step policy changed" in log and "now: Required for everyone" in log
    assert "grace period: 7 days" in log and "required_for_all" not in log  # in words, not stored values

    # The members are then reminded (grace period) at sign-in, as the preview said.
    client.cookies.clear()
    assert sign_in(client, "alice").headers["location"] == "/security"


def test_policy_mistakes_are_shown_next_to_the_form(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get(POLICY)
    laxer = "An organisation may tolerate at most as many wrong codes as the instance does (1)."
    for fields, message, code in [
        ({"grace_period_days": "400"}, "The grace period is 0 to 365 days.", "invalid_request"),
        ({"grace_period_days": "-1"}, "The grace period is 0 to 365 days.", "invalid_request"),
        ({"tolerated_failures": "many"}, "Tolerated failures are 0 to 1000", "invalid_request"),
        ({"tolerated_failures": "2"}, laxer, "tolerance_above_instance"),
        (
            {"two_factor": "sometimes"},
            "Choose whether two-step verification is optional or required.",
            "invalid_request",
        ),
    ]:
        refused = preview(client, page, **fields)
        assert refused.status_code == 422, refused.text
        assert message in text_of(refused)
        assert_support_details(refused, code, "root")
    assert policy_of(ctx).two_factor is TwoFactorPolicy.OPTIONAL


def test_an_owner_without_2fa_is_told_to_set_it_up_first(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    organisations.change_member(ctx, "a", username="carol", role=OrgRole.OWNER, managed=True, actor=None, client=CLI)
    assert sign_in(client, "carol").status_code == 303
    page = client.get(POLICY)
    shown = preview(client, page, two_factor="required_for_admins")
    assert listed(shown, "setup-next-sign-in") == ["carol"]  # first in line
    refused = submit(client, shown, f"{POLICY}/policy", two_factor="required_for_admins", grace_period_days="0")
    assert refused.status_code == 409, refused.text
    text = text_of(refused)
    assert "You would be the first one asked to set up two-step verification" in text
    assert (
        'id="policy-refused"' in refused.text and 'href="/security">Set up your authenticator app</a>' in refused.text
    )
    assert_support_details(refused, "enable_two_factor_first", "carol")
    assert policy_of(ctx).two_factor is TwoFactorPolicy.OPTIONAL


def test_an_owner_with_2fa_requires_it_of_everyone(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secrets = team(ctx)
    assert sign_in(client, "olga").headers["location"] == "/login/verify"
    assert verify(client, code_at(secrets["olga"], ctx)).headers["location"] == "/security"
    page = client.get(POLICY)
    shown = preview(client, page)
    assert listed(shown, "setup-next-sign-in") == ["alice", "carol"]
    applied = submit(client, shown, f"{POLICY}/policy", two_factor="required_for_all", grace_period_days="0")
    assert applied.headers["location"] == f"{POLICY}?notice=policy_changed"
    assert policy_of(ctx).two_factor is TwoFactorPolicy.REQUIRED_FOR_ALL
    # As the preview said: alice is taken into setup at her next sign-in.
    client.cookies.clear()
    assert sign_in(client, "alice").headers["location"] == "/security/setup"


def test_changing_the_policy_needs_a_recent_verification_and_the_csrf_token(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    team(ctx)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get(POLICY)
    for path in (f"{POLICY}/policy/preview", f"{POLICY}/policy", f"{POLICY}/members", f"{POLICY}/members/alice"):
        for token in ({}, {"csrf_token": "0" * 64}):
            response = client.post(path, data={"two_factor": "required_for_all", "role": "admin", **token})
            assert response.status_code == 403 and error_code_of(response) == "csrf_failed"
    advance(ctx, STALE)
    assert client.get(POLICY).status_code == 200  # looking needs no confirmation
    for ask in (
        preview(client, page),
        submit(client, page, f"{POLICY}/policy", two_factor="required_for_all", grace_period_days="0"),
        submit(client, page, f"{POLICY}/members", username="alice", role="member"),
        submit(client, page, f"{POLICY}/members/alice", role="admin"),
        client.get(f"{POLICY}/members/alice/remove"),
    ):
        assert ask.status_code == 403, ask.text
        assert "Confirm it's you" in text_of(ask)
        assert_support_details(ask, "reauthentication_required", "root")
    assert 'name="next" value="/admin/orgs/a/members/alice/remove"' in ask.text
    assert policy_of(ctx).two_factor is TwoFactorPolicy.OPTIONAL
    assert roles_of(ctx)["alice"] == ("member", True)


# --- members ---------------------------------------------------------------------------------------------------------


def test_adding_changing_and_removing_members(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    make_user(ctx, "zoe")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get(POLICY)

    added = submit(client, page, f"{POLICY}/members", username="Zoe", role="user_admin")  # managed unticked
    assert added.status_code == 303 and added.headers["location"] == f"{POLICY}?notice=member_added"
    assert "The member was added." in client.get(added.headers["location"]).text
    assert roles_of(ctx)["zoe"] == ("user_admin", False)

    again = submit(client, page, f"{POLICY}/members", username="zoe", role="member", managed="on")
    assert again.status_code == 409
    assert "That user is a member of the organisation already" in text_of(again)
    assert_support_details(again, "member_exists", "root")
    assert 'id="new-username" name="username"' in again.text and 'value="zoe"' in again.text
    nobody = submit(client, page, f"{POLICY}/members", username="nobody", role="member")
    assert nobody.status_code == 404 and error_code_of(nobody) == "user_not_found"
    bad_role = submit(client, page, f"{POLICY}/members", username="zoe", role="king")
    assert bad_role.status_code == 422 and "Choose a role" in text_of(bad_role)

    changed = submit(client, page, f"{POLICY}/members/zoe", role="admin", managed="on")
    assert changed.headers["location"] == f"{POLICY}?notice=member_changed"
    assert roles_of(ctx)["zoe"] == ("admin", True)

    ask = client.get(f"{POLICY}/members/zoe/remove")
    assert ask.status_code == 200 and "Remove zoe from Org A?" in text_of(ask)
    assert "Their account stays" in ask.text
    removed = submit(client, ask, f"{POLICY}/members/zoe/remove")
    assert removed.headers["location"] == f"{POLICY}?notice=member_removed"
    assert "zoe" not in roles_of(ctx)
    gone = client.get(f"{POLICY}/members/zoe/remove")
    assert gone.status_code == 404 and error_code_of(gone) == "member_not_found"


def test_the_last_owner_stays(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get(POLICY)
    for refused in (
        submit(client, page, f"{POLICY}/members/olga", role="member", managed="on"),
        submit(client, client.get(f"{POLICY}/members/olga/remove"), f"{POLICY}/members/olga/remove"),
    ):
        assert refused.status_code == 409, refused.text
        assert "This is the organisation's last owner" in text_of(refused)
        assert_support_details(refused, "last_owner", "root")
        assert '<h2 id="members">Members</h2>' in refused.text  # shown on the organisation's page
    assert roles_of(ctx)["olga"] == ("owner", True)
    # With a second owner, the first may go.
    assert submit(client, page, f"{POLICY}/members/alice", role="owner", managed="on").status_code == 303
    assert submit(client, page, f"{POLICY}/members/olga/remove").status_code == 303


def test_a_user_admin_adds_outside_collaborators_within_their_rank(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    make_user(ctx, "zoe")
    assert sign_in(client, "carol").status_code == 303
    page = client.get(POLICY)
    assert '<option value="owner"' not in page.text and '<option value="admin"' not in page.text
    assert "disabled" in input_tag(page, "new-managed") and "only an instance administrator" in text_of(page).lower()
    refused = submit(client, page, f"{POLICY}/members", username="zoe", role="owner")
    assert refused.status_code == 403 and error_code_of(refused) == "not_permitted"
    assert "You cannot give or change a role above your own" in text_of(refused)
    claimed = submit(client, page, f"{POLICY}/members", username="zoe", role="member", managed="on")
    assert claimed.status_code == 403 and "Only an instance administrator can make an account managed" in claimed.text
    assert "zoe" not in roles_of(ctx)
    assert submit(client, page, f"{POLICY}/members", username="zoe", role="member").status_code == 303
    assert roles_of(ctx)["zoe"] == ("member", False)
    # Within their rank they change roles; a managed account stays managed, an outside one cannot be claimed.
    assert "disabled" in input_tag(client.get(POLICY), "managed-zoe")
    assert submit(client, page, f"{POLICY}/members/alice", role="user_admin", managed="on").status_code == 303
    assert roles_of(ctx)["alice"] == ("user_admin", True)


# --- new organisations -------------------------------------------------------------------------------------------


def test_an_instance_administrator_creates_an_organisation(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get("/admin")
    made = submit(client, page, "/admin/orgs", slug="Platform-Team", name="Platform team")
    assert (
        made.status_code == 303 and made.headers["location"] == "/admin/orgs/platform-team?notice=organisation_created"
    )
    shown = client.get(made.headers["location"])
    assert "The organisation was created, with you as its owner." in shown.text
    assert roles_of(ctx, "platform-team") == {"root": ("owner", True)}

    taken = submit(client, page, "/admin/orgs", slug="platform-team", name="Again")
    assert taken.status_code == 409 and error_code_of(taken) == "organisation_exists"
    assert 'value="Again"' in taken.text
    bad = submit(client, page, "/admin/orgs", slug="no spaces", name="Bad")
    assert bad.status_code == 422 and "short name is 1 to 64 characters" in text_of(bad)
    for token in ({}, {"csrf_token": "1" * 64}):
        assert client.post("/admin/orgs", data={"slug": "x", "name": "X", **token}).status_code == 403
    advance(ctx, STALE)
    ask = submit(client, page, "/admin/orgs", slug="later", name="Later")
    assert ask.status_code == 403 and 'name="next" value="/admin"' in ask.text
    assert [o.slug for o in organisations.list_all(ctx)] == ["default", "platform-team"]


def test_only_instance_administrators_create_organisations(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    team(ctx)
    assert sign_in(client, "carol").status_code == 303
    page = client.get("/admin")
    assert "New organisation" not in page.text
    refused = submit(client, page, "/admin/orgs", slug="mine", name="Mine")
    assert refused.status_code == 403 and error_code_of(refused) == "admin_required"
    assert [o.slug for o in organisations.list_all(ctx)] == ["a", "default"]
