"""The audit log records every sign-in, backoff, step-up and sign-out step, with its details and never a secret."""

from __future__ import annotations

import json

import pytest

from nidan.bootstrap import Runtime
from nidan.config import RateLimitSettings, Settings
from nidan.core.models import ClientInfo, Method
from nidan.errors import InvalidCode, InvalidCredentials, RateLimited, VerificationLocked
from nidan.services import audit, enrollment, signin, stepup
from tests.helpers import PASSWORD, code_at, make_user

CLIENT = ClientInfo(ip="198.51.100.7", user_agent="pytest-browser", correlation_id="corr-0123456789")


def events(runtime: Runtime) -> list[tuple[str, str | None, dict[str, object]]]:
    """(type, subject username, details), oldest first."""
    records = audit.all_events(runtime.services, limit=200)
    return [(r.event.event_type, r.event.subject_username, dict(r.event.details)) for r in reversed(records)]


def types(runtime: Runtime) -> list[str]:
    return [kind for kind, _, _ in events(runtime)]


def totp_user(runtime: Runtime) -> tuple[str, list[str]]:
    ctx = runtime.services
    user = make_user(ctx)
    started = enrollment.start_totp(ctx, user)
    codes = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT).recovery_codes
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    return started.secret, codes


def mfa_token(runtime: Runtime) -> str:
    result = signin.login(runtime.services, username="alice", password=PASSWORD, client=CLIENT)
    assert isinstance(result, signin.MfaRequired)
    return result.mfa_token


def test_password_failures_known_and_unknown(runtime: Runtime) -> None:
    make_user(runtime.services)
    for username in ("alice", "mallory"):
        with pytest.raises(InvalidCredentials):
            signin.login(runtime.services, username=username, password="not it", client=CLIENT)
    failures = [e for e in events(runtime) if e[0] == "sign_in.password_failed"]
    assert failures == [
        ("sign_in.password_failed", "alice", {"username_known": True}),
        ("sign_in.password_failed", None, {"username_known": False}),
    ]
    record = audit.all_events(runtime.services, limit=1)[0].event
    assert (record.client_ip, record.user_agent, record.correlation_id) == (
        "198.51.100.7",
        "pytest-browser",
        "corr-0123456789",
    )


def test_sign_in_steps_codes_and_sign_out(runtime: Runtime) -> None:
    ctx = runtime.services
    secret, codes = totp_user(runtime)
    with pytest.raises(InvalidCode):
        signin.complete_mfa(ctx, mfa_token=mfa_token(runtime), method=Method.TOTP, code=code_at(secret, ctx, 14),
                            client=CLIENT)  # fmt: skip
    ctx.clock.advance(5)  # type: ignore[attr-defined]
    done = signin.complete_mfa(
        ctx, mfa_token=mfa_token(runtime), method=Method.RECOVERY_CODE, code=codes[4], client=CLIENT
    )
    signin.logout(ctx, done.session_token, CLIENT)
    tail = events(runtime)[-4:]
    assert tail == [
        ("sign_in.second_factor_failed", "alice", {"method": "totp", "replayed": False, "clock_offset_seconds": 420}),
        ("recovery_code.used", "alice", {"position": 5}),
        ("sign_in.succeeded", "alice", {"method": "recovery_code"}),
        ("session.revoked", "alice", {}),
    ]
    exported: list[str] = []
    audit.export(ctx, exported.append)
    text = "\n".join(exported)
    assert codes[4] not in text and secret not in text and done.session_token not in text
    assert all(json.loads(line)["hash"] for line in exported)


def test_a_block_is_logged_once_not_per_refusal(runtime: Runtime) -> None:
    ctx = runtime.services
    totp_user(runtime)
    for _ in range(2):
        with pytest.raises(InvalidCode):
            signin.complete_mfa(ctx, mfa_token=mfa_token(runtime), method=Method.TOTP, code="000000", client=CLIENT)
    for _ in range(3):
        with pytest.raises(RateLimited):
            signin.complete_mfa(ctx, mfa_token=mfa_token(runtime), method=Method.TOTP, code="000000", client=CLIENT)
    blocked = [e for e in events(runtime) if e[0] == "backoff.blocked"]
    assert blocked == [("backoff.blocked", "alice", {"scope": "second_factor", "failures": 2, "blocked_seconds": 1})]


class TestHardLimit:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"rate_limit": RateLimitSettings(hard_limit=3)})

    def test_the_lock_and_its_reason_are_logged(self, runtime: Runtime) -> None:
        ctx = runtime.services
        totp_user(runtime)
        for _ in range(3):
            with pytest.raises(InvalidCode):
                signin.complete_mfa(ctx, mfa_token=mfa_token(runtime), method=Method.TOTP, code="000000", client=CLIENT)
            ctx.clock.advance(60)  # type: ignore[attr-defined]
        with pytest.raises(VerificationLocked):
            signin.complete_mfa(ctx, mfa_token=mfa_token(runtime), method=Method.TOTP, code="000000", client=CLIENT)
        assert ("backoff.locked", "alice", {"scope": "second_factor", "failures": 3}) in events(runtime)


def test_step_up_success_and_failure(runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = totp_user(runtime)
    session = signin.complete_mfa(
        ctx, mfa_token=mfa_token(runtime), method=Method.TOTP, code=code_at(secret, ctx), client=CLIENT
    )
    with pytest.raises(InvalidCode):
        stepup.reauthenticate(ctx, session_token=session.session_token, method=Method.TOTP, secret="000000",
                              client=CLIENT)  # fmt: skip
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    stepup.reauthenticate(
        ctx, session_token=session.session_token, method=Method.TOTP, secret=code_at(secret, ctx), client=CLIENT
    )
    assert types(runtime)[-2:] == ["step_up.failed", "step_up.succeeded"]
