"""``nidan.client.AsyncClient``: the same calls in asyncio, in process (``httpx.ASGITransport``) and over HTTP."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from nidan.bootstrap import Runtime
from nidan.client import (
    AsyncClient,
    Authenticated,
    AuthenticationFailed,
    MfaRequired,
    RateLimitedError,
    TransportError,
    VerifyResult,
)
from nidan.web.app import create_app
from tests.client.conftest import TotpUser
from tests.helpers import PASSWORD, code_at


def in_process(runtime: Runtime, api_key: str | None = None) -> AsyncClient:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    return AsyncClient("http://nidan.test", api_key=api_key, transport=transport)


def test_verify_in_process(runtime: Runtime, api_key: str, alice: TotpUser) -> None:
    code = code_at(alice.secret, runtime.services)

    async def scenario() -> list[VerifyResult]:
        async with in_process(runtime, api_key) as nidan:
            return [
                await nidan.verify("alice", code),
                await nidan.verify("alice", code),  # replayed
                await nidan.verify("alice", alice.recovery_codes[0]),
            ]

    ok, replayed, recovery = asyncio.run(scenario())
    assert ok == VerifyResult(ok=True, method="totp", username="alice")
    assert not replayed and replayed.error is not None and replayed.error.code == "invalid_code"
    assert (recovery.ok, recovery.method) == (True, "recovery_code")


def test_rate_limited_and_bad_key_in_process(runtime: Runtime, api_key: str, alice: TotpUser) -> None:
    async def scenario() -> tuple[RateLimitedError, AuthenticationFailed]:
        async with in_process(runtime, api_key) as nidan, in_process(runtime, "nidan_key_" + "B" * 43) as stranger:
            await nidan.verify("alice", "000000")
            await nidan.verify("alice", "111111")
            with pytest.raises(RateLimitedError) as blocked:
                await nidan.verify("alice", "222222")
            with pytest.raises(AuthenticationFailed) as refused:
                await stranger.verify("alice", "333333")
            return blocked.value, refused.value

    blocked, refused = asyncio.run(scenario())
    assert (blocked.status, blocked.code) == (429, "rate_limited") and blocked.retry_after >= 1
    assert refused.code == "app_key_invalid"


def test_sign_in_and_session_over_http(live_url: str, runtime: Runtime, alice: TotpUser) -> None:
    async def scenario() -> tuple[str, AuthenticationFailed]:
        async with AsyncClient(live_url) as nidan:
            started = await nidan.login("alice", PASSWORD)
            assert isinstance(started, MfaRequired)
            signed_in = await nidan.complete_mfa(started.mfa_token, code_at(alice.secret, runtime.services))
            assert isinstance(signed_in, Authenticated)
            username = (await nidan.session(signed_in.session_token)).username
            await nidan.logout(signed_in.session_token)
            with pytest.raises(AuthenticationFailed) as ended:
                await nidan.session(signed_in.session_token)
            return username, ended.value

    username, ended = asyncio.run(scenario())
    assert username == "alice" and ended.code == "authentication_required"


def test_no_answer_raises_transport_error(api_key: str) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))

    async def scenario() -> TransportError:
        async with AsyncClient(f"http://127.0.0.1:{closed.getsockname()[1]}", api_key=api_key) as nidan:
            with pytest.raises(TransportError) as failed:
                await nidan.verify("alice", "123456")
            return failed.value

    try:
        error = asyncio.run(scenario())
    finally:
        closed.close()
    assert error.code == "transport_error" and api_key not in str(error) and "123456" not in str(error)
