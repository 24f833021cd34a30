"""Backoff over HTTP against a real ``nidan serve`` with the real clock: 1 s, 2 s, 4 s, 429 + Retry-After, reset.

Also the client address: behind a trusted proxy X-Forwarded-For tells clients apart; from anyone else it is ignored.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.support import PASSWORD, Server, init, nidan, oathtool_code, oathtool_path

pytestmark = pytest.mark.e2e


def add_user(environment: dict[str, str], username: str = "carol") -> None:
    added = nidan(
        environment, "user", "add", username, "--email", f"{username}@example.com", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def login(http: httpx.Client, headers: dict[str, str] | None = None, password: str = PASSWORD) -> httpx.Response:
    return http.post("/api/v1/auth/login", json={"username": "carol", "password": password}, headers=headers)


def second_step(http: httpx.Client, code: str) -> httpx.Response:
    first = login(http)
    assert first.status_code == 200, first.text
    return http.post("/api/v1/auth/mfa", json={"mfa_token": first.json()["mfa_token"], "method": "totp", "code": code})


def assert_blocked(response: httpx.Response, at_most: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= at_most, retry_after


def enable_totp(http: httpx.Client) -> str:
    session = login(http).json()["session_token"]
    auth = {"Authorization": f"Bearer {session}"}
    secret: str = http.post("/api/v1/me/totp", headers=auth).json()["secret"]
    activated = http.post("/api/v1/me/totp/activate", json={"code": oathtool_code(secret)}, headers=auth)
    assert activated.status_code == 200, activated.text
    return secret


def test_backoff_sequence_with_the_real_clock(environment: dict[str, str], tmp_path: Path) -> None:
    oathtool_path()
    init(environment)
    add_user(environment)
    with Server(environment, tmp_path) as server:
        server.wait_until_healthy()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            secret = enable_totp(http)
            wrong = "000000" if oathtool_code(secret) != "000000" else "111111"
            assert second_step(http, wrong).status_code == 401  # tolerated
            for block in (1, 2, 4):
                assert second_step(http, wrong).status_code == 401  # evaluated, and blocks for `block` s
                blocked = second_step(http, wrong)
                assert_blocked(blocked, block)
                assert_blocked(second_step(http, wrong), block)  # asked again: answered, not doubled
                time.sleep(int(blocked.headers["retry-after"]) + 0.1)
            # After the 4 s block a correct code (the app's next one) signs in and resets the count.
            correct = oathtool_code(secret, datetime.now(UTC) + timedelta(seconds=30))
            signed_in = second_step(http, correct)
            assert signed_in.status_code == 200, signed_in.text
            assert second_step(http, wrong).status_code == 401
            assert second_step(http, wrong).status_code == 401
            assert_blocked(second_step(http, wrong), 1)


def spray(http: httpx.Client, headers: dict[str, str]) -> list[int]:
    return [login(http, headers, password="wrong password").status_code for _ in range(3)]


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(environment: dict[str, str], tmp_path: Path) -> None:
    init(environment)
    add_user(environment)
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    victim = {"X-Forwarded-For": "198.51.100.7"}
    behind_proxy = {**environment, "NIDAN_SERVER_TRUSTED_PROXIES": "127.0.0.1"}
    with Server(behind_proxy, tmp_path) as server:
        server.wait_until_healthy()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert spray(http, attacker) == [401, 401, 429]
            answer: Any = login(http, victim)
            assert answer.status_code == 200, answer.text
    # Without trusted proxies the same header is anyone's claim: both "clients" are the one peer, 127.0.0.1.
    with Server(environment, tmp_path) as server:
        server.wait_until_healthy()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert spray(http, attacker) == [401, 401, 429]
            assert_blocked(login(http, victim), 4)
