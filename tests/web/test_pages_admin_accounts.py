"""Adding a user and deleting one in the admin console, and the set-password link's pages (issue 16): the link is
shown once after "Add a user", its owner sets a password there and is signed in, a used or expired link is a page
that says so (in Japanese too), and deleting is confirmed by typing the username."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import InstanceRole, Method, OrgRole
from nidan.core.policy import TwoFactorPolicy
from nidan.errors import UserNotFound
from nidan.services import account_status, accounts, audit, organisations
from nidan.web.app import create_app
from tests.helpers import make_user
from tests.web.admin_support import CLI, STALE, advance, organisation, signed_in, text_of
from tests.web.pages_support import error_code_of, sign_in, submit

LINK = re.compile(
    r'<code id="password-link" class="secret">(http://testserver/set-password\?token=[A-Za-z0-9_-]+)</code>'
)
NEW_PASSWORD = "lantern orchid quarry"
JA = {"Accept-Language": "ja-JP,ja;q=0.9"}


def add_user(client: TestClient, **fields: str) -> httpx.Response:
    console = client.get("/admin")
    assert console.status_code == 200, console.text
    return submit(client, console, "/admin/users", **({"username": "hanako", "email": "hanako@example.com"} | fields))


def link_of(page: httpx.Response) -> str:
    found = LINK.search(page.text)
    assert found, page.text
    return found.group(1).removeprefix("http://testserver")


def set_password(browser: TestClient, link: str, password: str = NEW_PASSWORD, **headers: str) -> httpx.Response:
    page = browser.get(link, headers=headers)
    assert page.status_code == 200, page.text
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    assert token
    return submit(browser, page, "/set-password", token=token.group(1), password=password, password_repeat=password)


def test_an_added_user_gets_a_link_shown_once_and_signs_in_after_setting_a_password(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    console = client.get("/admin")
    assert 'id="new-user"' in console.text and 'action="/admin/users#new-user"' in console.text

    shown = add_user(client, role="admin")
    assert shown.status_code == 200, shown.text
    text = text_of(shown)
    assert "Account “hanako” created" in text and "you won't see it again" in text
    assert 'data-action="copy" data-copy-from="password-link"' in shown.text
    link = link_of(shown)
    assert accounts.find_user(ctx, "hanako").role is InstanceRole.ADMIN
    # Shown once: the console and the user's page never show it again.
    assert link not in client.get("/admin").text and link not in client.get("/admin/users/hanako").text

    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as hanako:
        opened = hanako.get(link)
        assert opened.status_code == 200
        assert "Set your password" in text_of(opened) and 'value="hanako" readonly' in opened.text
        # Two different passwords, then a weak one: refused, and the link still works.
        page = hanako.get(link)
        token = re.search(r'name="token" value="([^"]+)"', page.text)
        assert token
        typo = submit(hanako, page, "/set-password", token=token.group(1), password=NEW_PASSWORD, password_repeat="x")
        assert typo.status_code == 422 and "not the same" in text_of(typo)
        weak = submit(hanako, page, "/set-password", token=token.group(1), password="short", password_repeat="short")
        assert weak.status_code == 422 and error_code_of(weak) == "weak_password"

        done = set_password(hanako, link)
        assert done.status_code == 303 and done.headers["location"] == "/security?notice=password_set"
        assert "Your password is set and you are signed in" in text_of(hanako.get(done.headers["location"]))

        # Used: a page that says so, and leads to sign-in.
        again = hanako.get(link)
        assert again.status_code == 401 and error_code_of(again) == "password_link_used"
        assert "This link does not work" in text_of(again) and 'href="/login"' in again.text
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as elsewhere:
        assert sign_in(elsewhere, "hanako", NEW_PASSWORD).headers["location"] == "/security"
    kinds = [r.event.event_type for r in audit.all_events(ctx, username="hanako")]
    assert EventType.USER_CREATED in kinds and EventType.PASSWORD_LINK_USED in kinds


def test_a_required_second_step_comes_right_after_the_password(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    link = link_of(add_user(client))
    organisations.create(ctx, slug="a", name="Org A", actor=None, client=CLI)
    organisations.set_policy(
        ctx,
        "a",
        two_factor=TwoFactorPolicy.REQUIRED_FOR_ALL,
        grace_period_days=0,
        allowed_methods=[Method.TOTP, Method.RECOVERY_CODE],
        tolerated_failures=None,
        actor=None,
        client=CLI,
    )
    organisations.add_member(ctx, "a", username="hanako", role=OrgRole.MEMBER, managed=True, actor=None, client=CLI)
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as hanako:
        done = set_password(hanako, link)
        assert done.status_code == 303 and done.headers["location"] == "/security/setup"


def test_an_expired_or_unknown_link_is_a_page_that_says_what_to_do(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    link = link_of(add_user(client))
    advance(ctx, 72 * 3600 + 1)
    expired = client.get(link)
    assert expired.status_code == 401 and error_code_of(expired) == "password_link_expired"
    assert "New link to set a password" in text_of(expired) and "72 hours" in text_of(expired)
    unknown = client.get("/set-password?token=nothing-nidan-made")
    assert unknown.status_code == 401 and error_code_of(unknown) == "password_link_invalid"
    assert error_code_of(client.get("/set-password")) == "password_link_invalid"
    in_japanese = client.get(link, headers=JA)
    assert '<html lang="ja">' in in_japanese.text and "このリンクは使えません" in text_of(in_japanese)
    assert "This link" not in text_of(in_japanese)


def test_a_new_link_from_the_users_page(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    assert 'href="/admin/users/alice/password-link"' in client.get("/admin/users/alice").text
    assert "/admin/users/root/password-link" not in client.get("/admin/users/root").text
    ask = client.get("/admin/users/alice/password-link")
    assert ask.status_code == 200 and "Make a new link for alice to set a password?" in text_of(ask)
    shown = submit(client, ask, "/admin/users/alice/password-link")
    assert shown.status_code == 200 and "A new link for alice" in text_of(shown)
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as alice:
        assert set_password(alice, link_of(shown)).headers["location"] == "/security?notice=password_set"


def test_adding_needs_a_recent_verification_a_free_name_and_an_instance_administrator(
    client: TestClient, runtime: Runtime
) -> None:
    ctx = runtime.services
    make_user(ctx, "taken")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    clash = add_user(client, username="TAKEN", email="someone@example.com")
    assert clash.status_code == 409 and error_code_of(clash) == "username_taken"
    assert 'value="TAKEN"' in clash.text and 'value="someone@example.com"' in clash.text
    bad_role = add_user(client, role="owner")
    assert bad_role.status_code == 422 and "Choose one of the roles offered" in text_of(bad_role)
    console = client.get("/admin")
    advance(ctx, STALE)
    ask = submit(client, console, "/admin/users", username="hanako", email="hanako@example.com")
    assert ask.status_code == 403 and "Confirm it's you" in text_of(ask)
    with pytest.raises(UserNotFound):
        accounts.find_user(ctx, "hanako")


def test_a_user_admin_sees_no_add_form_and_cannot_post_it(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "mia")
    signed_in(client, ctx, "uma")
    organisation(ctx, "a", {"uma": (OrgRole.USER_ADMIN, True), "mia": (OrgRole.MEMBER, True)})
    console = client.get("/admin")
    assert console.status_code == 200 and 'id="new-user"' not in console.text
    refused = submit(client, console, "/admin/users", username="hanako", email="hanako@example.com")
    assert refused.status_code == 403 and error_code_of(refused) == "admin_required"
    assert "/admin/users/mia/password-link" not in client.get("/admin/users/mia").text


def test_the_list_shows_disabled_accounts(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    make_user(ctx, "bob")
    account_status.disable(ctx, username="bob", actor=None, client=CLI, reason="left, ticket 16")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    page = client.get("/admin").text
    bob_row = page[page.index("<strong>bob</strong>") : page.index("</tr>", page.index("<strong>bob</strong>"))]
    alice_row = page[page.index("<strong>alice</strong>") : page.index("</tr>", page.index("<strong>alice</strong>"))]
    assert '<span class="badge disabled">Disabled</span>' in bob_row
    assert "badge disabled" not in alice_row
    in_japanese = client.get("/admin", headers=JA).text
    assert '<span class="badge disabled">アカウント無効</span>' in in_japanese


# --- deleting --------------------------------------------------------------------------------------------------------


def test_deleting_is_confirmed_by_typing_the_username(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as alices:
        assert sign_in(alices, "alice").headers["location"] == "/security"
        signed_in(client, ctx, "root", InstanceRole.ADMIN)
        assert 'href="/admin/users/alice/delete"' in client.get("/admin/users/alice").text
        ask = client.get("/admin/users/alice/delete")
        text = text_of(ask)
        assert (
            ask.status_code == 200
            and "Delete the account of alice?" in text
            and "Type <strong>alice</strong> to confirm" in text
        )
        assert "signed out everywhere" in text and "Its security log is kept" in text

        wrong = submit(client, ask, "/admin/users/alice/delete", confirm_username="alicia", reason="left, ticket 16")
        assert wrong.status_code == 422 and error_code_of(wrong) == "invalid_request"
        assert "Type the username alice exactly as shown" in text_of(wrong) and 'value="alicia"' in wrong.text
        empty = submit(client, ask, "/admin/users/alice/delete", confirm_username="", reason="left, ticket 16")
        assert empty.status_code == 422
        no_reason = submit(client, ask, "/admin/users/alice/delete", confirm_username="alice", reason="ab")
        assert no_reason.status_code == 422 and accounts.find_user(ctx, "alice").username == "alice"

        done = submit(client, ask, "/admin/users/alice/delete", confirm_username="ALICE", reason="left, ticket 16")
        assert done.status_code == 303 and done.headers["location"] == "/admin?notice=user_deleted"
        shown = client.get(done.headers["location"])
        assert "The account was deleted" in text_of(shown) and "<strong>alice</strong>" not in shown.text
        with pytest.raises(UserNotFound):
            accounts.find_user(ctx, "alice")
        # Her browser's session is gone.
        assert alices.get("/security", follow_redirects=False).status_code in (303, 401)
    deleted = audit.all_events(ctx, event_type=EventType.USER_DELETED)[0].event
    assert deleted.subject_username == "alice" and deleted.details["reason"] == "left, ticket 16"
    assert audit.verify(ctx).problem is None


def test_delete_is_not_offered_on_oneself_and_needs_a_recent_verification(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    assert "/admin/users/root/delete" not in client.get("/admin/users/root").text
    refused = client.get("/admin/users/root/delete")
    assert refused.status_code == 403 and error_code_of(refused) == "cannot_act_on_self"
    page = client.get("/admin/users/alice/delete")
    advance(ctx, STALE)
    ask = submit(client, page, "/admin/users/alice/delete", confirm_username="alice", reason="left the company")
    assert ask.status_code == 403 and "Confirm it's you" in text_of(ask)
    assert 'name="next" value="/admin/users/alice/delete"' in ask.text
    assert accounts.find_user(ctx, "alice").username == "alice"


def test_an_organisations_last_owner_is_refused_on_the_page(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "olga")
    organisation(ctx, "a", {"olga": (OrgRole.OWNER, True)})
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    ask = client.get("/admin/users/olga/delete")
    refused = submit(client, ask, "/admin/users/olga/delete", confirm_username="olga", reason="left, ticket 16")
    assert refused.status_code == 409 and error_code_of(refused) == "last_owner"
    assert "last owner of the organisation Org A" in text_of(refused)


def test_a_user_admin_deletes_only_members_their_organisation_manages(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    for name in ("mia", "otto"):
        make_user(ctx, name)
    signed_in(client, ctx, "uma")
    organisation(
        ctx, "a", {"uma": (OrgRole.USER_ADMIN, True), "mia": (OrgRole.MEMBER, True), "otto": (OrgRole.MEMBER, False)}
    )
    refused = client.get("/admin/users/otto/delete")
    assert refused.status_code == 403 and error_code_of(refused) == "not_permitted"
    ask = client.get("/admin/users/mia/delete")
    done = submit(client, ask, "/admin/users/mia/delete", confirm_username="mia", reason="left, ticket 16")
    assert done.headers["location"] == "/admin?notice=user_deleted"
    assert {u.username for u in accounts.list_users(ctx)} == {"uma", "otto"}


# --- in Japanese -----------------------------------------------------------------------------------------------------


def test_the_new_pages_speak_japanese(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    console = client.get("/admin", headers=JA)
    assert "ユーザーを追加" in text_of(console) and "Add a user" not in text_of(console)
    shown = add_user(client)
    assert shown.status_code == 200
    link = link_of(shown)
    in_japanese = client.post(
        "/admin/users",
        data={
            "csrf_token": re.findall(r'name="csrf_token" value="([0-9a-f]{64})"', console.text)[0],
            "username": "x y",
        },
        headers=JA,
        follow_redirects=False,
    )
    assert in_japanese.status_code == 422 and "ユーザー名" in text_of(in_japanese)
    delete_page = client.get("/admin/users/alice/delete", headers=JA)
    said = text_of(delete_page)
    assert "alice のアカウントを削除しますか？" in said and "Delete the account" not in said
    link_page = client.get("/admin/users/alice/password-link", headers=JA)
    assert "パスワード設定用の新しいリンク" in text_of(link_page)
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as hanako:
        form = hanako.get(link, headers=JA)
        assert '<html lang="ja">' in form.text and "パスワードを設定" in text_of(form)
        assert "Set your password" not in text_of(form)
