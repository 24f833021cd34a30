"""Signing in in Japanese, in a real browser (headless Chromium, Playwright, locale ja-JP: it sends
``Accept-Language: ja-JP``) against a real ``nidan serve``: the sign-in page, the second step with "別の確認方法を使う"
open, a wrong code, "このデバイスでは30日間確認しない", and "本人確認" (step-up) after a sign-in the remembered
browser let through without a code. Each page is kept as a screenshot at a desktop width and a phone's (375 px) in
the test's tmp_path, and none of them may be wider than the window (a Japanese sentence that does not wrap would
be)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser_support import become_admin_with_totp
from tests.e2e.support import PASSWORD, SETUP_LINE, Server, oathtool_code

pytestmark = pytest.mark.e2e

WIDTHS = (1280, 375)
#: Hiragana or katakana: what any Japanese sentence has and an English one never does.
KANA = re.compile(r"[\u3040-\u30ff]")


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    """A screenshot per width; at each, the page fits the window (nothing scrolls sideways)."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{name} at {width} px is {overflow} px wider than the window"
        page.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def assert_in_japanese(page: Page) -> None:
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    assert KANA.search(page.inner_text("main")), page.inner_text("main")


def next_code(key: str, steps: int) -> str:
    return oathtool_code(key, datetime.now(UTC) + timedelta(seconds=30 * steps))


def test_signing_in_in_japanese(browser: Browser, environment: dict[str, str], tmp_path: Path) -> None:
    remembering = {**environment, "NIDAN_POLICY_REMEMBER_DEVICE_DAYS": "30"}
    with Server(remembering, tmp_path) as server:
        setup_link = server.wait_for_line(SETUP_LINE).group(1)
        server.wait_until_healthy()
        setup_page = browser.new_page()  # the administrator is made in English, as the other browser tests do
        key, _ = become_admin_with_totp(setup_page, setup_link)
        setup_page.close()

        context = browser.new_context(locale="ja-JP")
        page = context.new_page()
        page.goto(f"{server.url}/login")
        assert_in_japanese(page)
        expect(page.locator("h1")).to_have_text("ログイン")
        expect(page.locator("label[for=username]")).to_have_text("ユーザー名")
        shoot(page, tmp_path, "login")
        page.fill("#username", "root")
        page.fill("#password", PASSWORD)
        page.click("button:has-text('ログイン')")

        # The second step: the authenticator's code first, the other options behind "別の確認方法を使う".
        expect(page).to_have_url(re.compile(r"/login/verify"))
        assert_in_japanese(page)
        expect(page.locator("h1")).to_have_text("二段階認証")
        expect(page.locator("label[for=code]")).to_have_text("認証アプリの確認コード")
        page.click("summary:has-text('別の確認方法を使う')")
        expect(page.locator(".other-options a").first).to_be_visible()
        expect(page.locator(".other-options a").first).to_contain_text("リカバリーコード")
        shoot(page, tmp_path, "verify")

        # A wrong code: the message and the support details in Japanese, the error code as it is in English.
        page.fill("#code", f"{(int(next_code(key, 0)) + 500_000) % 1_000_000:06d}")
        page.click("#verify-button")
        assert_in_japanese(page)
        expect(page.locator(".error .message")).to_contain_text("コード")
        expect(page.locator(".error")).to_contain_text("サポート用の情報")
        expect(page.locator(".error-code")).to_have_text("invalid_code")
        shoot(page, tmp_path, "verify-wrong")
        page.fill("#code", next_code(key, 1))
        page.check("input[name=remember_device]")
        page.click("#verify-button")
        expect(page).to_have_url(re.compile(r"/security"))
        assert_in_japanese(page)

        # Signed in again with the password alone (the browser is remembered): changing a setting asks "本人確認".
        page.click("button:has-text('ログアウト')")
        expect(page).to_have_url(re.compile(r"/login"))
        page.fill("#username", "root")
        page.fill("#password", PASSWORD)
        page.click("button:has-text('ログイン')")
        expect(page).to_have_url(re.compile(r"/security"))
        page.goto(f"{server.url}/security/reauth?next=/security")
        assert_in_japanese(page)
        expect(page.locator("h1")).to_have_text("本人確認")
        page.click("summary:has-text('別の確認方法を使う')")
        shoot(page, tmp_path, "reauth")
        page.fill("#code", next_code(key, 2))
        page.click("#confirm-button")
        expect(page).to_have_url(re.compile(r"/security"))
        expect(page.locator(".notice")).to_contain_text("本人確認が完了しました")
        context.close()
