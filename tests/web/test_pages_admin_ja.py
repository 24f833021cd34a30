"""The admin console speaks Japanese to a browser that asks for it (``Accept-Language: ja``), and English to one that
does not: the console's home, a user's page, an organisation's page, a confirmation and the applications page, with
the roles and policies named in words (the stored values stay as they are)."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole, OrgRole
from tests.helpers import make_user
from tests.web.admin_support import organisation, signed_in, text_of
from tests.web.pages_support import submit

JA = {"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"}

#: page -> (its Japanese heading, English headings a Japanese page must not show, the English heading)
PAGES = {
    "/admin": ("管理コンソール", ("Admin console", "Users", "Organisations", "New organisation"), "Admin console"),
    "/admin/users/alice": (
        "スマートフォンの時計",
        ("Two-step verification", "Phone clock", "Tokens and blocks", "Help alice"),
        "Phone clock",
    ),
    "/admin/orgs/platform": ("二段階認証のポリシー", ("Two-step policy", "Members", "Add a member"), "Two-step policy"),
    "/admin/apps": (
        "登録済みのアプリケーション",
        ("Registered applications", "Add an application"),
        "Add an application",
    ),
}


@pytest.fixture
def admin(client: TestClient, runtime: Runtime) -> TestClient:
    """root, an instance administrator, signed in; alice, a user admin of "platform" who is not managed by it."""
    ctx = runtime.services
    make_user(ctx, "alice")
    organisation(ctx, "platform", {"alice": (OrgRole.USER_ADMIN, False)})
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    return client


def headings(page: httpx.Response) -> list[str]:
    return [
        " ".join(re.sub(r"<[^>]*>", "", h).split()) for h in re.findall(r"<h[123][^>]*>(.*?)</h[123]>", page.text, re.S)
    ]


@pytest.mark.parametrize("path", list(PAGES))
def test_the_console_speaks_japanese_when_the_browser_asks(admin: TestClient, path: str) -> None:
    japanese, english, _ = PAGES[path]
    page = admin.get(path, headers=JA)
    assert page.status_code == 200, page.text
    assert '<html lang="ja">' in page.text
    assert japanese in headings(page), headings(page)
    assert not set(english) & set(headings(page)), headings(page)


@pytest.mark.parametrize("path", list(PAGES))
def test_and_english_when_it_does_not(admin: TestClient, path: str) -> None:
    japanese, _, english = PAGES[path]
    page = admin.get(path)
    assert page.status_code == 200, page.text
    assert '<html lang="en">' in page.text
    assert english in headings(page) and japanese not in page.text


def test_roles_and_policies_are_named_in_japanese_and_stored_as_they_are(admin: TestClient) -> None:
    page = admin.get("/admin/orgs/platform", headers=JA)
    text = text_of(page)
    for word in ("任意", "管理者に必須", "全員に必須", "外部コラボレーター"):
        assert word in text, word
    options = dict(re.findall(r'<option value="([a-z_]+)"[^>]*>([^<]+)</option>', page.text))
    assert options == {"owner": "オーナー", "admin": "管理者", "user_admin": "ユーザー管理者", "member": "メンバー"}
    assert 'value="required_for_admins"' in page.text and 'placeholder="既定値: ' in page.text
    assert "メンバー1人" in text
    user = text_of(admin.get("/admin/users/alice", headers=JA))
    assert "ユーザー管理者 · 外部コラボレーター" in user and "user admin" not in user
    console = text_of(admin.get("/admin", headers=JA))
    assert "二段階認証: 任意" in console and "インスタンスの管理者" in console


def test_a_confirmation_and_a_refusal_are_in_japanese(admin: TestClient) -> None:
    admin.headers.update(JA)
    ask = admin.get("/admin/users/alice/reset")
    assert ask.status_code == 200, ask.text
    assert "alice の二段階認証をリセットしますか？" in text_of(ask)
    assert "実行すると:" in text_of(ask) and "What happens" not in ask.text
    refused = submit(admin, ask, "/admin/users/alice/reset", reason="x")
    assert refused.status_code == 422
    assert "理由を3〜200文字で入力してください" in text_of(refused)
    assert "Give a reason" not in refused.text

    org = admin.get("/admin/orgs/platform")
    bad_role = submit(admin, org, "/admin/orgs/platform/members", username="alice", role="king")
    assert bad_role.status_code == 422 and "ロールを選んでください" in text_of(bad_role)
