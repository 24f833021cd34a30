"""``nidan.client.Client`` against a real nidan over HTTP: verify, sign-in, sessions and every error it raises."""

from __future__ import annotations

import socket
import traceback

import pytest

from nidan.bootstrap import Runtime
from nidan.client import (
    Authenticated,
    AuthenticationFailed,
    Client,
    MfaRequired,
    NidanClientError,
    RateLimitedError,
    TransportError,
    VerifyResult,
)
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo
from nidan.services import applications, audit
from tests.client.conftest import TotpUser
from tests.helpers import PASSWORD, code_at, make_user


def test_verify_accepts_a_totp_code_and_names_the_user(
    live_url: str, api_key: str, alice: TotpUser, runtime: Runtime
) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        result = nidan.verify("ALICE", code_at(alice.secret, runtime.services))
    assert result == VerifyResult(ok=True, method="totp", username="alice")
    assert result and result.error is None


def test_verify_tells_a_recovery_code_by_its_shape(live_url: str, api_key: str, alice: TotpUser) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        guessed = nidan.verify("alice", alice.recovery_codes[0])
        named = nidan.verify("alice", alice.recovery_codes[1], method="recovery_code")
    assert (guessed.ok, guessed.method, guessed.username) == (True, "recovery_code", "alice")
    assert (named.ok, named.method) == (True, "recovery_code")


def test_a_wrong_code_is_an_answer_not_an_exception(live_url: str, api_key: str, alice: TotpUser) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        result = nidan.verify("alice", "000000")
    assert not result
    assert result.ok is False and result.username is None
    assert result.error is not None and result.error.code == "invalid_code"
    assert result.error.message and result.error.correlation_id and result.error.timestamp


def test_a_code_works_once(live_url: str, api_key: str, alice: TotpUser, runtime: Runtime) -> None:
    code = code_at(alice.secret, runtime.services)
    with Client(live_url, api_key=api_key) as nidan:
        first, replayed = nidan.verify("alice", code), nidan.verify("alice", code)
        spent = nidan.verify("alice", alice.recovery_codes[0])
        spent_again = nidan.verify("alice", alice.recovery_codes[0])
    assert first.ok and spent.ok
    for again in (replayed, spent_again):
        assert again.ok is False and again.error is not None and again.error.code == "invalid_code"


def test_an_unknown_user_looks_like_a_wrong_code(live_url: str, api_key: str, alice: TotpUser) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        unknown, wrong = nidan.verify("mallory", "123456"), nidan.verify("alice", "123456")
    assert unknown.error is not None and wrong.error is not None
    assert (unknown.ok, unknown.error.code, unknown.error.message) == (False, wrong.error.code, wrong.error.message)


def test_while_blocked_verify_raises_rate_limited_with_retry_after(
    live_url: str, api_key: str, alice: TotpUser, runtime: Runtime
) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        assert not nidan.verify("alice", "000000")
        assert not nidan.verify("alice", "111111")  # the second failure in a row blocks for 1 s
        with pytest.raises(RateLimitedError) as blocked:
            nidan.verify("alice", code_at(alice.secret, runtime.services))  # right, but not even checked
        runtime.services.clock.advance(blocked.value.retry_after)  # type: ignore[attr-defined]
        assert nidan.verify("alice", code_at(alice.secret, runtime.services)).ok
    error = blocked.value
    assert (error.code, error.status) == ("rate_limited", 429)
    assert error.retry_after >= 1 and error.correlation_id
    assert isinstance(error, NidanClientError)


@pytest.mark.parametrize("key", [None, "", "nidan_key_" + "A" * 43, "not-a-key"])
def test_a_missing_or_unknown_app_key_raises_authentication_failed(
    live_url: str, alice: TotpUser, key: str | None, runtime: Runtime
) -> None:
    with Client(live_url, api_key=key) as nidan:
        if not key:  # nothing to send: said before any request
            with pytest.raises(ValueError, match="api_key is required"):
                nidan.verify("alice", "123456")
            return
        with pytest.raises(AuthenticationFailed) as refused:
            nidan.verify("alice", code_at(alice.secret, runtime.services))
    assert (refused.value.code, refused.value.status) == ("app_key_invalid", 401)
    assert key not in str(refused.value)


def test_a_removed_application_s_key_stops_working(
    live_url: str, api_key: str, alice: TotpUser, runtime: Runtime
) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        assert nidan.verify("alice", alice.recovery_codes[0]).ok
        applications.remove(runtime.services, name="wiki", actor=None, client=ClientInfo())
        with pytest.raises(AuthenticationFailed, match="app_key_invalid"):
            nidan.verify("alice", alice.recovery_codes[1])


def test_sign_in_in_two_steps_then_check_and_end_the_session(live_url: str, alice: TotpUser, runtime: Runtime) -> None:
    with Client(live_url) as nidan:  # no API key: sign-in needs none
        started = nidan.login("alice", PASSWORD)
        assert isinstance(started, MfaRequired)
        assert set(started.methods) == {"totp", "recovery_code"} and started.expires_in > 0
        signed_in = nidan.complete_mfa(started.mfa_token, code_at(alice.secret, runtime.services))
        assert isinstance(signed_in, Authenticated) and signed_in.expires_in > 0
        session = nidan.session(signed_in.session_token)
        assert (session.username, session.email, session.role) == ("alice", "alice@example.com", "member")
        assert session.two_factor_enabled and session.recovery_codes_remaining == 16
        assert session.created_at.tzinfo is not None and session.last_sign_in_at is not None
        nidan.logout(signed_in.session_token)
        with pytest.raises(AuthenticationFailed) as ended:
            nidan.session(signed_in.session_token)
    assert (ended.value.code, ended.value.status) == ("authentication_required", 401)
    assert started.mfa_token not in repr(started) and signed_in.session_token not in repr(signed_in)


def test_sign_in_with_a_recovery_code(live_url: str, alice: TotpUser) -> None:
    with Client(live_url) as nidan:
        started = nidan.login("alice", PASSWORD)
        assert isinstance(started, MfaRequired)
        signed_in = nidan.complete_mfa(started.mfa_token, alice.recovery_codes[0], method="recovery_code")
        assert nidan.session(signed_in.session_token).recovery_codes_remaining == 15


def test_a_user_without_2fa_is_signed_in_by_the_password(live_url: str, runtime: Runtime) -> None:
    make_user(runtime.services, "bob")
    with Client(live_url) as nidan:
        signed_in = nidan.login("bob", PASSWORD)
        assert isinstance(signed_in, Authenticated)
        assert nidan.session(signed_in.session_token).two_factor_enabled is False


def test_sign_in_failures_raise_authentication_failed_with_nidan_s_code(
    live_url: str, alice: TotpUser, runtime: Runtime
) -> None:
    with Client(live_url) as nidan:
        with pytest.raises(AuthenticationFailed) as wrong_password:
            nidan.login("alice", "not the password")
        started = nidan.login("alice", PASSWORD)
        assert isinstance(started, MfaRequired)
        with pytest.raises(AuthenticationFailed) as wrong_code:
            nidan.complete_mfa(started.mfa_token, "000000")
        with pytest.raises(AuthenticationFailed) as bad_token:
            nidan.complete_mfa("no-such-attempt", code_at(alice.secret, runtime.services))
    assert wrong_password.value.code == "invalid_credentials"
    assert wrong_code.value.code == "invalid_code"
    assert bad_token.value.code == "mfa_token_invalid"
    assert "not the password" not in str(wrong_password.value)


def test_wrong_codes_at_sign_in_are_rate_limited_too(live_url: str, alice: TotpUser) -> None:
    with Client(live_url) as nidan:
        started = nidan.login("alice", PASSWORD)
        assert isinstance(started, MfaRequired)
        for wrong in ("000000", "111111"):
            with pytest.raises(AuthenticationFailed):
                nidan.complete_mfa(started.mfa_token, wrong)
        with pytest.raises(RateLimitedError) as blocked:
            nidan.complete_mfa(started.mfa_token, "222222")
    assert blocked.value.retry_after >= 1


@pytest.mark.parametrize("token", ["garbage", "nidan_s_" + "A" * 43])
def test_a_garbage_session_token_raises_authentication_failed(live_url: str, token: str) -> None:
    with Client(live_url) as nidan, pytest.raises(AuthenticationFailed, match="authentication_required"):
        nidan.session(token)


def test_a_token_that_could_smuggle_a_header_is_refused_before_sending(live_url: str) -> None:
    with Client(live_url, api_key="nidan_key_x\r\nX-Evil: 1") as nidan:
        with pytest.raises(ValueError, match="api_key") as refused:
            nidan.verify("alice", "123456")
        assert "Evil" not in str(refused.value)
        with pytest.raises(ValueError, match="session_token"):
            nidan.session("abc def")


def test_no_answer_raises_transport_error_without_secrets(runtime: Runtime) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    key = applications.add(runtime.services, name="wiki", actor=None, client=ClientInfo()).api_key
    code = "492039"
    try:
        with Client(f"http://operator:hunter2@127.0.0.1:{port}", api_key=key, timeout=5) as nidan:
            with pytest.raises(TransportError) as failed:
                nidan.verify("alice", code)
            with pytest.raises(TransportError) as failed_login:
                nidan.login("alice", PASSWORD)
            assert "hunter2" not in repr(nidan)
    finally:
        closed.close()
    for error in (failed.value, failed_login.value):
        assert (error.code, error.status) == ("transport_error", None)
        assert f"127.0.0.1:{port}" in error.message
        text = "".join(traceback.format_exception(error))  # what a log shows: the httpx error and its chain too
        for secret in (key, code, PASSWORD, "hunter2"):
            assert secret not in text
    assert "/api/v1/verify" in failed.value.message


def test_client_ip_is_ignored_from_an_application_nidan_does_not_trust(
    live_url: str, api_key: str, alice: TotpUser, runtime: Runtime
) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        assert nidan.verify("alice", alice.recovery_codes[0], client_ip="203.0.113.9").ok
    [record] = audit.all_events(runtime.services, event_type=EventType.VERIFY_SUCCEEDED)
    assert record.event.client_ip == "127.0.0.1"
