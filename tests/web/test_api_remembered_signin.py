"""Signing in on a remembered device over the API: ``remember_device`` at the second step, ``device_token`` at the
next sign-in (rotated each time), a copied token, expiry, the policy off, and what a remembered sign-in may not do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.backoff import ThrottleState
from nidan.services import accounts, audit, throttling
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.helpers import PASSWORD, auth_header, code_at, enable_totp, login, make_user
from tests.integration.devices_support import DAY, remembering
from tests.web.api_support import assert_error


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    """The instance remembers devices for 30 days."""
    return remembering(runtime, 30)


@pytest.fixture
def ctx(app_runtime: Runtime) -> ServiceContext:
    return app_runtime.services


@pytest.fixture
def client(app_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=app_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def alice(client: TestClient, ctx: ServiceContext) -> str:
    """alice with an authenticator app; her secret."""
    make_user(ctx)
    secret, _ = enable_totp(client, ctx, login(client)["session_token"])
    return secret


def second_step(client: TestClient, ctx: ServiceContext, secret: str, *, remember: bool) -> dict[str, Any]:
    first = login(client)
    assert first["status"] == "mfa_required"
    body = {
        "mfa_token": first["mfa_token"],
        "method": "totp",
        "code": code_at(secret, ctx),
        "remember_device": remember,
    }
    answer = client.post("/api/v1/auth/mfa", json=body)
    assert answer.status_code == 200, answer.text
    ctx.clock.advance(30)  # type: ignore[attr-defined]  # the next code is a fresh one
    result: dict[str, Any] = answer.json()
    return result


def with_device(client: TestClient, token: str) -> dict[str, Any]:
    answer = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD, "device_token": token})
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_a_remembered_device_skips_the_second_step_and_its_token_rotates(
    client: TestClient, ctx: ServiceContext
) -> None:
    secret = alice(client, ctx)
    first = second_step(client, ctx, secret, remember=True)
    token = first["device_token"]
    assert token.startswith("nidan_d_") and first["device_expires_at"]
    again = with_device(client, token)
    assert again["status"] == "authenticated" and again["second_factor"] == "remembered_device"
    assert again["device_token"] and again["device_token"] != token
    assert client.get("/api/v1/me", headers=auth_header(again["session_token"])).status_code == 200
    # The next one works, once more rotated.
    third = with_device(client, again["device_token"])
    assert third["status"] == "authenticated" and third["device_token"] not in (token, again["device_token"])


def test_a_copied_token_forgets_the_device(client: TestClient, ctx: ServiceContext) -> None:
    secret = alice(client, ctx)
    token = second_step(client, ctx, secret, remember=True)["device_token"]
    successor = with_device(client, token)["device_token"]
    # The old token again: someone copied it. The sign-in asks for the second step, and the device is forgotten.
    replayed = with_device(client, token)
    assert replayed["status"] == "mfa_required" and "device_token" not in replayed
    assert with_device(client, successor)["status"] == "mfa_required"
    user = accounts.find_user(ctx, "alice")
    events = audit.all_events(ctx, username=user.username, event_type=EventType.REMEMBERED_DEVICE_REPLAYED)
    assert len(events) == 1


def test_not_remembered_unless_asked_or_allowed(client: TestClient, runtime: Runtime, ctx: ServiceContext) -> None:
    secret = alice(client, ctx)
    assert second_step(client, ctx, secret, remember=False).get("device_token") is None
    # An instance that remembers nobody: asking changes nothing.
    off = remembering(runtime, 0)
    with TestClient(create_app(runtime=off), raise_server_exceptions=False) as other:
        first = login(other)
        body = {
            "mfa_token": first["mfa_token"],
            "method": "totp",
            "code": code_at(secret, ctx),
            "remember_device": True,
        }
        answer = other.post("/api/v1/auth/mfa", json=body)
        assert answer.status_code == 200 and answer.json()["device_token"] is None


def test_an_expired_or_unknown_token_just_asks_for_the_second_step(client: TestClient, ctx: ServiceContext) -> None:
    secret = alice(client, ctx)
    token = second_step(client, ctx, secret, remember=True)["device_token"]
    for made_up in ("nidan_d_" + "A" * 43, "not a token", "x" * 256):
        assert with_device(client, made_up)["status"] == "mfa_required"
    ctx.clock.advance(31 * DAY)  # type: ignore[attr-defined]
    assert with_device(client, token)["status"] == "mfa_required"


def test_a_remembered_sign_in_is_no_recent_verification(client: TestClient, ctx: ServiceContext) -> None:
    secret = alice(client, ctx)
    token = second_step(client, ctx, secret, remember=True)["device_token"]
    session = with_device(client, token)["session_token"]
    # Sensitive actions still ask for the second factor itself.
    refused = client.delete("/api/v1/me/totp", headers=auth_header(session))
    assert_error(refused, 403, "reauthentication_required")


def test_a_hard_locked_user_is_not_let_in_by_a_remembered_device(client: TestClient, ctx: ServiceContext) -> None:
    secret = alice(client, ctx)
    token = second_step(client, ctx, secret, remember=True)["device_token"]
    user = accounts.find_user(ctx, "alice")
    subject = throttling.second_factor(ctx, user.id)
    with ctx.uow() as uow:
        locked = ThrottleState(failures=100, locked_at=ctx.clock.now())
        assert uow.throttles.compare_and_set(subject.scope, subject.key, ThrottleState(), locked, ctx.clock.now())
        uow.commit()
    assert with_device(client, token)["status"] == "mfa_required"


def test_changing_the_second_factor_forgets_the_device(client: TestClient, ctx: ServiceContext) -> None:
    secret = alice(client, ctx)
    first = second_step(client, ctx, secret, remember=True)
    regenerated = client.post("/api/v1/me/recovery-codes", headers=auth_header(first["session_token"]))
    assert regenerated.status_code == 200, regenerated.text
    assert with_device(client, first["device_token"])["status"] == "mfa_required"
