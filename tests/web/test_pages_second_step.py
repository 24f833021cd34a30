"""The sign-in page's second step: "use a different verification option", a person told to wait stays on the code
form (warned before, counted down after), "don't ask again on this device", and the default method."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.services import accounts
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.helpers import code_at
from tests.integration.devices_support import remembering
from tests.web.pages_support import enable_totp_on_page, sign_in, sign_out, signed_in_alice, submit


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    """The instance remembers browsers for 14 days."""
    return remembering(runtime, 14)


@pytest.fixture
def ctx(app_runtime: Runtime) -> ServiceContext:
    return app_runtime.services


@pytest.fixture
def client(app_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=app_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def alice_with_totp(client: TestClient, ctx: ServiceContext) -> tuple[str, list[str]]:
    signed_in_alice(client, ctx)
    secret, codes = enable_totp_on_page(client, ctx)
    sign_out(client)
    return secret, codes


def wrong(secret: str, ctx: ServiceContext) -> str:
    return f"{(int(code_at(secret, ctx)) + 500_000) % 1_000_000:06d}"


def test_the_other_options_are_one_click_away(client: TestClient, ctx: ServiceContext) -> None:
    _, codes = alice_with_totp(client, ctx)
    sign_in(client)
    page = client.get("/login/verify")
    assert 'value="totp"' in page.text and "Use a different verification option" in page.text
    assert '<a href="/login/verify?method=recovery_code">A recovery code (16 left)</a>' in page.text
    other = client.get("/login/verify?method=recovery_code")
    assert 'value="recovery_code"' in other.text and ">Authenticator app</a>" in other.text
    # A method nobody has is not a way around anything: the default's form is shown.
    made_up = client.get("/login/verify?method=carrier_pigeon")
    assert made_up.status_code == 200 and 'name="method" value="totp"' in made_up.text
    done = submit(client, other, "/login/verify", method="recovery_code", code=codes[0])
    assert done.status_code == 303 and done.headers["location"].startswith("/security")


def test_a_person_told_to_wait_stays_on_the_code_form(client: TestClient, ctx: ServiceContext) -> None:
    secret, _ = alice_with_totp(client, ctx)
    sign_in(client)
    page = client.get("/login/verify")
    first = submit(client, page, "/login/verify", method="totp", code=wrong(secret, ctx))
    assert first.status_code == 401 and "One more wrong code and you will have to wait" in first.text
    second = submit(client, first, "/login/verify", method="totp", code=wrong(secret, ctx))
    assert second.status_code == 401 and 'data-countdown-for="verify-button" data-seconds="1"' in second.text
    blocked = submit(client, second, "/login/verify", method="totp", code=code_at(secret, ctx))
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "1"
    # Still the code form, with the attempt kept and a countdown: no dead end back to the password.
    assert 'action="/login/verify"' in blocked.text and 'data-seconds="1"' in blocked.text
    ctx.clock.advance(2)  # type: ignore[attr-defined]
    done = submit(client, blocked, "/login/verify", method="totp", code=code_at(secret, ctx))
    assert done.status_code == 303 and done.headers["location"] == "/security"


def test_dont_ask_again_on_this_browser(client: TestClient, ctx: ServiceContext) -> None:
    secret, _ = alice_with_totp(client, ctx)
    sign_in(client)
    page = client.get("/login/verify")
    assert "Don't ask again on this device for 14 days" in page.text
    done = submit(client, page, "/login/verify", method="totp", code=code_at(secret, ctx), remember_device="1")
    assert done.status_code == 303
    cookie = next(c for c in client.cookies.jar if c.name == "nidan_device")
    assert cookie.value.startswith("nidan_d_") and cookie.has_nonstandard_attr("HttpOnly")
    sign_out(client)
    again = sign_in(client)
    assert again.status_code == 303 and again.headers["location"] == "/security"  # no second step
    rotated = next(c for c in client.cookies.jar if c.name == "nidan_device")
    assert rotated.value != cookie.value


def test_not_ticked_not_remembered(client: TestClient, ctx: ServiceContext) -> None:
    secret, _ = alice_with_totp(client, ctx)
    sign_in(client)
    submit(client, client.get("/login/verify"), "/login/verify", method="totp", code=code_at(secret, ctx))
    assert not [c for c in client.cookies.jar if c.name == "nidan_device"]
    sign_out(client)
    assert sign_in(client).headers["location"] == "/login/verify"


def test_the_default_method_is_saved_from_the_security_page(client: TestClient, ctx: ServiceContext) -> None:
    signed_in_alice(client, ctx)
    enable_totp_on_page(client, ctx)
    page = client.get("/security")
    saved = submit(client, page, "/security/default-method", method="totp")
    assert saved.status_code == 303 and saved.headers["location"] == "/security?notice=default_method_changed"
    assert accounts.find_user(ctx, "alice").default_method == "totp"
    # A fallback cannot be the default, whatever a forged form says.
    refused = submit(client, page, "/security/default-method", method="recovery_code")
    assert refused.status_code == 303 and accounts.find_user(ctx, "alice").default_method == "totp"
