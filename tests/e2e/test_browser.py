"""The newcomer's path in a real browser (headless Chromium driven by Playwright) against a real ``nidan serve``:
open the setup link, become the administrator, turn on two-step verification with a code from a real authenticator
(``oathtool``), save the recovery codes, sign out, and sign in again with password + code and with a recovery code.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.browser_support import become_admin_with_totp, choose_option, sign_in_with_password, sign_out
from tests.e2e.support import SETUP_LINE, Server, oathtool_code

pytestmark = pytest.mark.e2e


def test_newcomer_sets_up_2fa_and_signs_in_in_a_browser(
    browser: Browser, environment: dict[str, str], tmp_path: Path
) -> None:
    with Server(environment, tmp_path) as server:
        setup_link = server.wait_for_line(SETUP_LINE).group(1)
        server.wait_until_healthy()
        page = browser.new_page()

        # The one-time setup link makes the first administrator and signs them in; the QR code is shown, and the
        # key typed out is what a person would enter in their app (become_admin_with_totp).
        key, codes = become_admin_with_totp(page, setup_link)
        assert len(codes) == 16 and all(re.fullmatch(r"[0-9a-z]{5}-[0-9a-z]{5}", c) for c in codes)
        expect(page.locator("a:has-text('Download (.txt)')")).to_have_attribute("download", re.compile(r"\.txt$"))
        expect(page.locator("button[data-action=copy]")).to_be_visible()  # revealed by the page's script
        page.screenshot(path=str(tmp_path / "recovery-codes.png"), full_page=True)
        page.click("a:has-text('I have saved my codes')")
        sign_out(page)

        # Password, then the next code of the authenticator (the activation code's step is spent).
        sign_in_with_password(page, server.url)
        expect(page).to_have_url(re.compile(r"/login/verify"))
        page.fill("#code", oathtool_code(key, datetime.now(UTC) + timedelta(seconds=30)))
        page.click("button:has-text('Verify')")
        expect(page).to_have_url(re.compile(r"/security"))
        expect(page.locator("body")).to_contain_text("16")
        sign_out(page)

        # Lost phone: a recovery code instead, typed in capitals; it is then spent.
        sign_in_with_password(page, server.url)
        choose_option(page, "A recovery code")
        page.fill("#code", codes[0].upper())
        page.click("button:has-text('Verify')")
        expect(page).to_have_url(re.compile(r"/security"))
        expect(page.locator("body")).to_contain_text("15")
        sign_out(page)

        sign_in_with_password(page, server.url)
        choose_option(page, "A recovery code")
        page.fill("#code", codes[0])
        page.click("button:has-text('Verify')")
        expect(page.locator("body")).to_contain_text("invalid_code")
        expect(page.locator("body")).to_contain_text(re.compile(r"[0-9a-f]{32}"))  # the correlation id to report
