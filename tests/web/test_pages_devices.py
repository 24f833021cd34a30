"""Remembered browsers on the pages: the security page lists them with a "Forget" button each (a form with its CSRF
token), and an organisation's policy form sets their days, in a browser without JavaScript."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole
from nidan.services import accounts, organisations
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.integration.devices_support import ELSEWHERE, admit, remembered, remembering
from tests.web.admin_support import signed_in, text_of
from tests.web.pages_support import error_code_of, submit


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    return remembering(runtime, 30)


@pytest.fixture
def ctx(app_runtime: Runtime) -> ServiceContext:
    return app_runtime.services


@pytest.fixture
def client(app_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=app_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_security_page_lists_remembered_browsers_and_forgets_one(client: TestClient, ctx: ServiceContext) -> None:
    alice = signed_in(client, ctx, "alice")
    assert "Remembered browsers" not in client.get("/security").text  # none yet: no section
    kept = remembered(ctx, alice, ELSEWHERE)
    forgotten = remembered(ctx, alice)
    page = client.get("/security")
    text = text_of(page)
    assert "Remembered browsers" in text and "Chrome on Windows" in text and "Firefox on Linux" in text
    assert f"from {ELSEWHERE.ip}" in text
    form = re.search(
        rf'<form method="post" action="/security/devices/{forgotten.device_id}/forget">.*?</form>', page.text, re.S
    )
    assert form and 'name="csrf_token"' in form.group(0) and ">Forget</button>" in form.group(0)

    done = submit(client, page, f"/security/devices/{forgotten.device_id}/forget")
    assert done.status_code == 303 and done.headers["location"] == "/security?notice=device_forgotten"
    after = client.get(done.headers["location"])
    assert "The browser was forgotten" in text_of(after)
    assert "Chrome on Windows" not in text_of(after) and "Firefox on Linux" in text_of(after)
    assert admit(ctx, alice.id, forgotten.token) is None
    assert admit(ctx, alice.id, kept.token) is not None
    assert "Remembered browser forgotten" in text_of(client.get("/security/events"))


def test_forgetting_needs_the_csrf_token_and_ones_own_browser(client: TestClient, ctx: ServiceContext) -> None:
    signed_in(client, ctx, "alice")
    bob = accounts.create_user(ctx, username="bob", email="bob@example.com", password="another good passphrase")
    bobs = remembered(ctx, bob)
    page = client.get("/security")
    url = f"/security/devices/{bobs.device_id}/forget"
    no_token = client.post(url, data={}, follow_redirects=False)
    assert no_token.status_code == 403 and error_code_of(no_token) == "csrf_failed"
    not_hers = submit(client, page, url)
    assert not_hers.status_code == 404 and error_code_of(not_hers) == "device_not_found"
    assert admit(ctx, bob.id, bobs.token) is not None


def test_an_organisations_policy_form_sets_the_days(client: TestClient, ctx: ServiceContext) -> None:
    signed_in(client, ctx, "root", InstanceRole.ADMIN)
    organisations.create(ctx, slug="a", name="Org A", actor=None, client=ELSEWHERE)
    page = client.get("/admin/orgs/a")
    field = re.search(r'<input id="remember-days"[^>]*>', page.text)
    assert field and 'name="remember_device_days"' in field.group(0) and 'max="90"' in field.group(0)
    assert 'placeholder="default: 30"' in field.group(0)

    values = {"two_factor": "optional", "grace_period_days": "0", "tolerated_failures": ""}
    refused = submit(client, page, "/admin/orgs/a/policy/preview", **values, remember_device_days="91")
    assert refused.status_code == 422 and "A browser may be remembered for 0 to 90 days" in text_of(refused)

    preview = submit(client, page, "/admin/orgs/a/policy/preview", **values, remember_device_days="14")
    assert preview.status_code == 200 and "instance default (30 days) → <strong>14 days</strong>" in text_of(preview)
    assert '<input type="hidden" name="remember_device_days" value="14">' in preview.text
    applied = submit(client, preview, "/admin/orgs/a/policy", **values, methods="totp", remember_device_days="14")
    assert applied.status_code == 303, applied.text
    assert organisations.show(ctx, "a", actor=None).organisation.policy.remember_device_days == 14
    after = client.get("/admin/orgs/a")
    assert 'value="14"' in re.search(r'<input id="remember-days"[^>]*>', after.text).group(0)  # type: ignore[union-attr]

    back = submit(client, after, "/admin/orgs/a/policy", **values, methods="totp", remember_device_days="")
    assert back.status_code == 303
    assert organisations.show(ctx, "a", actor=None).organisation.policy.remember_device_days is None
