"""What the browser tests do again and again in a page: become the first administrator with an authenticator app,
sign in with the password, pick another verification option, sign out."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.support import PASSWORD, oathtool_code


def become_admin_with_totp(page: Page, setup_link: str) -> tuple[str, list[str]]:
    """Open the one-time setup link as ``root``, turn on the authenticator app with a code from ``oathtool``;
    returns the key and the recovery codes (the page is left on the codes)."""
    page.goto(setup_link)
    page.fill("input[name=username]", "root")
    page.fill("input[name=email]", "root@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_repeat]", PASSWORD)
    page.click("button:has-text('Create administrator')")
    expect(page).to_have_url(re.compile(r"/security"))
    page.click("button:has-text('Set up authenticator app')")
    expect(page.locator(".qr svg")).to_be_visible()
    key = page.inner_text("#totp-key").replace(" ", "")
    page.fill("#code", oathtool_code(key))
    page.click("button:has-text('Turn on')")
    codes = [c.strip() for c in page.locator("#recovery-codes code").all_inner_texts()]
    return key, codes


def sign_in_with_password(page: Page, base: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", "root")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")


def choose_option(page: Page, label: str) -> None:
    """ "Use a different verification option", then the one whose label starts with ``label``."""
    page.click("summary:has-text('Use a different verification option')")
    page.click(f"a:has-text('{label}')")


def sign_out(page: Page) -> None:
    page.click("button:has-text('Sign out')")
    expect(page).to_have_url(re.compile(r"/login"))
