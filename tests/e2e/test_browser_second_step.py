"""The second step in a real browser (headless Chromium, Playwright) against a real ``nidan serve``: "use a
different verification option", the countdown of a person told to wait (the page's script disables the button and
re-enables it), and "don't ask again on this device" — tick it, sign out, sign in again without a code."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser_support import become_admin_with_totp, choose_option, sign_in_with_password, sign_out
from tests.e2e.support import SETUP_LINE, Server, oathtool_code

pytestmark = pytest.mark.e2e

#: Each screenshot at a desktop width and a phone's (375 px).
WIDTHS = (1280, 375)


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(tmp_path / f"{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def next_code(key: str, steps: int) -> str:
    return oathtool_code(key, datetime.now(UTC) + timedelta(seconds=30 * steps))


def wrong_code(key: str) -> str:
    return f"{(int(next_code(key, 0)) + 500_000) % 1_000_000:06d}"


def test_choosing_waiting_and_being_remembered(browser: Browser, environment: dict[str, str], tmp_path: Path) -> None:
    remembering = {**environment, "NIDAN_POLICY_REMEMBER_DEVICE_DAYS": "30"}
    with Server(remembering, tmp_path) as server:
        setup_link = server.wait_for_line(SETUP_LINE).group(1)
        server.wait_until_healthy()
        page = browser.new_page()
        key, codes = become_admin_with_totp(page, setup_link)
        page.click("a:has-text('I have saved my codes')")
        sign_out(page)

        # The default method first; the others behind "Use a different verification option".
        sign_in_with_password(page, server.url)
        expect(page).to_have_url(re.compile(r"/login/verify"))
        expect(page.locator("label[for=code]")).to_have_text("Code from your authenticator app")
        expect(page.locator(".other-options a")).not_to_be_visible()
        shoot(page, tmp_path, "verify")
        choose_option(page, "A recovery code")
        expect(page.locator("label[for=code]")).to_have_text("Recovery code")
        choose_option(page, "Authenticator app")
        expect(page.locator("label[for=code]")).to_have_text("Code from your authenticator app")

        # Wrong twice: warned before the block, then told to wait, on the same form, the button counting down.
        page.fill("#code", wrong_code(key))
        page.click("button:has-text('Verify')")
        expect(page.locator(".error")).to_contain_text("One more wrong code and you will have to wait")
        page.fill("#code", wrong_code(key))
        page.click("button:has-text('Verify')")
        expect(page.locator("#verify-button")).to_be_disabled()
        expect(page.locator(".countdown")).to_contain_text("You can try again in")
        shoot(page, tmp_path, "verify-waiting")
        expect(page.locator("#verify-button")).to_be_enabled(timeout=5000)
        expect(page.locator(".countdown")).to_have_text("You can try again now.")

        # The right code, and "don't ask again on this device".
        page.fill("#code", next_code(key, 1))
        page.check("input[name=remember_device]")
        page.click("button:has-text('Verify')")
        expect(page).to_have_url(re.compile(r"/security"))
        expect(page.locator("#devices")).to_be_visible()
        shoot(page, tmp_path, "security-devices")
        sign_out(page)

        # Password only: the remembered browser stands in for the code.
        sign_in_with_password(page, server.url)
        expect(page).to_have_url(re.compile(r"/security"))
        assert len(codes) == 16
