"""A personal access token made on the page in a real browser (headless Chromium) against a real ``nidan serve``,
then used the way Git would: HTTP Basic at the gate a reverse proxy asks."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.support import PASSWORD, SETUP_LINE, Server

pytestmark = pytest.mark.e2e


def test_a_token_made_in_the_browser_opens_the_gate(
    browser: Browser,
    environment: dict[str, str],
    tmp_path: Path,
) -> None:
    with Server(environment, tmp_path) as server:
        setup_link = server.wait_for_line(SETUP_LINE).group(1)
        server.wait_until_healthy()
        # Allowed to read the clipboard, to check what the Copy button put there.
        page = browser.new_context(permissions=["clipboard-read", "clipboard-write"]).new_page()
        page.goto(setup_link)
        page.fill("input[name=username]", "root")
        page.fill("input[name=email]", "root@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.fill("input[name=password_repeat]", PASSWORD)
        page.click("button:has-text('Create administrator')")
        expect(page).to_have_url(re.compile(r"/security"))

        page.click("a:has-text('Manage your tokens and app passwords')")
        expect(page).to_have_url(re.compile(r"/security/tokens$"))
        page.fill("#token-name", "laptop git")
        page.check("#scope-read_repository")
        page.click("button:has-text('Create token')")
        token = page.inner_text("#new-token").strip()
        assert re.fullmatch(r"nidan_pat_[A-Za-z0-9_-]{43}", token), token
        expect(page.locator("body")).to_contain_text("you won't see it again")
        page.click("button[data-action=copy]")  # revealed by the page's script
        expect(page.locator(".copy-status")).to_have_text("Copied.")
        assert page.evaluate("navigator.clipboard.readText()") == token
        page.screenshot(path=str(tmp_path / "token-created.png"), full_page=True)

        page.click("a:has-text('I have saved it')")
        expect(page.locator("table.tokens")).to_contain_text("laptop git")
        expect(page.locator("body")).not_to_contain_text(token)

        gate = f"{server.url}/auth/basic"
        allowed = httpx.get(gate, params={"scope": "read_repository"}, auth=("root", token), timeout=10)
        assert allowed.status_code == 200 and allowed.headers["x-nidan-user"] == "root", allowed.text
        refused = httpx.get(gate, params={"scope": "write_repository"}, auth=("root", token), timeout=10)
        assert refused.status_code == 401
