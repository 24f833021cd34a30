"""A lost phone, handled in a real browser (headless Chromium) against a real ``nidan serve``: an administrator
signs in with a code from a real authenticator (``oathtool``), opens the user's page in the admin console, resets
their two-step verification with a reason and sees it done; the user then signs in with their password alone, is
taken straight into setting it up again, and ends signed in on their new recovery codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.support import PASSWORD, SETUP_LINE, Server, nidan, oathtool_code

pytestmark = pytest.mark.e2e

PHONE = {"width": 390, "height": 844}


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")


def turn_on_totp(page: Page) -> str:
    """From a page with "Set up authenticator app": scan (read the key), type the code, save the codes; the key."""
    page.click("button:has-text('Set up authenticator app')")
    key = page.inner_text("#totp-key").replace(" ", "")
    page.fill("#code", oathtool_code(key))
    page.click("button:has-text('Turn on')")
    expect(page.locator("#recovery-codes li")).to_have_count(16)
    return key


def test_an_administrator_resets_a_lost_phone_and_the_user_sets_2fa_up_again(
    browser: Browser,
    environment: dict[str, str],
    tmp_path: Path,
) -> None:
    with Server(environment, tmp_path) as server:
        setup_link = server.wait_for_line(SETUP_LINE).group(1)
        server.wait_until_healthy()
        added = nidan(
            environment, "user", "add", "alice", "--email", "alice@example.com", "--password-stdin",
            stdin=PASSWORD + "\n",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr

        # The administrator: made by the setup link, with an authenticator app, signed in again with its code.
        admin = browser.new_context().new_page()
        admin.goto(setup_link)
        admin.fill("input[name=username]", "root")
        admin.fill("input[name=email]", "root@example.com")
        admin.fill("input[name=password]", PASSWORD)
        admin.fill("input[name=password_repeat]", PASSWORD)
        admin.click("button:has-text('Create administrator')")
        root_key = turn_on_totp(admin)
        admin.click("a:has-text('I have saved my codes')")
        admin.click("button:has-text('Sign out')")
        sign_in(admin, server.url, "root")
        expect(admin).to_have_url(re.compile(r"/login/verify"))
        admin.fill("#code", oathtool_code(root_key, datetime.now(UTC) + timedelta(seconds=30)))
        admin.click("button:has-text('Verify')")
        expect(admin).to_have_url(re.compile(r"/security$"))

        # Alice turns on 2FA in her own browser; later she loses that phone.
        alice = browser.new_context().new_page()
        sign_in(alice, server.url, "alice")
        turn_on_totp(alice)

        admin.click("a:has-text('Admin console')")
        expect(admin).to_have_url(re.compile(r"/admin$"))
        admin.click("a:has-text('alice')")
        expect(admin).to_have_url(re.compile(r"/admin/users/alice$"))
        expect(admin.locator("#two-step-state")).to_contain_text("On since")
        admin.set_viewport_size(PHONE)
        admin.screenshot(path=str(tmp_path / "admin-user-phone.png"), full_page=True)
        admin.set_viewport_size({"width": 1280, "height": 900})
        admin.screenshot(path=str(tmp_path / "admin-user.png"), full_page=True)
        admin.click("a:has-text('Reset two-step verification…')")
        expect(admin.locator("h1")).to_have_text("Reset two-step verification for alice?")
        admin.fill("#reason", "lost phone, confirmed by a call to her desk")
        admin.screenshot(path=str(tmp_path / "admin-reset.png"), full_page=True)
        admin.click("button:has-text('Reset two-step verification')")
        expect(admin).to_have_url(re.compile(r"/admin/users/alice\?notice=two_factor_reset$"))
        expect(admin.locator(".notice")).to_contain_text("Two-step verification was reset")
        expect(admin.locator("#two-step-state")).to_contain_text("Off")
        expect(admin.locator("#registration")).to_contain_text("Yes, since")

        # Her old browser was signed out; a new sign-in with the password leads straight into setup.
        alice.goto(f"{server.url}/security")
        expect(alice).to_have_url(re.compile(r"/login"))
        phone = browser.new_context(viewport=PHONE).new_page()
        sign_in(phone, server.url, "alice")
        expect(phone).to_have_url(re.compile(r"/security/setup$"))
        expect(phone.locator("h1")).to_have_text("Set up two-step verification to continue")
        expect(phone.locator("body")).to_contain_text("An administrator reset your two-step verification")
        turn_on_totp(phone)
        phone.click("a:has-text('I have saved my codes')")
        expect(phone).to_have_url(re.compile(r"/security$"))
        expect(phone.locator("body")).to_contain_text("Signed in as alice")
        expect(phone.locator(".badge.on")).to_have_text("On")

        admin.click("a:has-text('security log')")
        expect(admin.locator("table.events")).to_contain_text("reason: lost phone, confirmed by a call to her desk")
