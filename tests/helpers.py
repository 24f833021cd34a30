"""Small helpers the tests share: make users, codes, and walk the API's sign-in."""

from __future__ import annotations

import base64
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

from fastapi.testclient import TestClient

from nidan.core import otpauth, totp
from nidan.core.models import InstanceRole, User
from nidan.services import accounts
from nidan.services.context import ServiceContext

PASSWORD = "correct horse battery"


def make_user(
    ctx: ServiceContext, username: str = "alice", role: InstanceRole = InstanceRole.MEMBER, password: str = PASSWORD
) -> User:
    return accounts.create_user(ctx, username=username, email=f"{username}@example.com", password=password, role=role)


def code_at(secret_b32: str, ctx: ServiceContext, offset_steps: int = 0) -> str:
    unix = ctx.clock.now().timestamp() + offset_steps * totp.PERIOD
    return totp.totp(otpauth.b32decode(secret_b32), unix)


def auth_header(session_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token}"}


def login(client: TestClient, username: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def enable_totp(client: TestClient, ctx: ServiceContext, session_token: str) -> tuple[str, list[str]]:
    """Turn on TOTP over the API; returns the secret and the recovery codes.

    Moves the clock two steps on, so the step before the new "now" is still unused.
    """
    started = client.post("/api/v1/me/totp", headers=auth_header(session_token))
    assert started.status_code == 200, started.text
    secret = started.json()["secret"]
    activated = client.post(
        "/api/v1/me/totp/activate", json={"code": code_at(secret, ctx)}, headers=auth_header(session_token)
    )
    assert activated.status_code == 200, activated.text
    ctx.clock.advance(2 * totp.PERIOD)  # type: ignore[attr-defined]
    return secret, activated.json()["recovery_codes"]


def race(count: int, attempt: Callable[[int], object], expected: tuple[type[Exception], ...]) -> list[object]:
    """``count`` threads released at once by a barrier; each result, or the expected exception it raised."""
    barrier = Barrier(count)

    def run(index: int) -> object:
        barrier.wait()
        try:
            return attempt(index)
        except expected as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def basic_header(username: str, secret: str) -> dict[str, str]:
    """``Authorization: Basic`` for the forward-auth gate (RFC 7617, UTF-8)."""
    encoded = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {encoded}"}
