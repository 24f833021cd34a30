"""Every use case that computes argon2 (a password's hash or check, a recovery code's digest) does it before its
first write or after its commit, never inside a transaction that holds SQLite's writer turn or a row lock (issue
15): on SQLite every other writer of the process waited the length of the hash, and the event loop with them.

``hashing_watch`` (tests/integration/hashing_support.py) records any hash run inside a write; each test also checks
that the hashes it means to exercise ran at all."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nidan.bootstrap import Runtime
from nidan.core import recovery
from nidan.core.access_tokens import Scope
from nidan.core.models import ClientInfo, Method
from nidan.errors import BasicAuthDenied, InvalidCode, InvalidCredentials
from nidan.services import accounts, applications, enrollment, gate, signin, stepup, user_admin, verify
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, code_at, make_user
from tests.integration.hashing_support import HashingWatch, hashing_watch

__all__ = ["hashing_watch"]  # the fixture

CLIENT = ClientInfo(ip="192.0.2.7", user_agent="pytest")
WRONG_RECOVERY_CODE = "zzzzz-zzzzz"


def with_totp(ctx: ServiceContext, username: str = "alice") -> tuple[str, list[str]]:
    user = make_user(ctx, username)
    started = enrollment.start_totp(ctx, user)
    codes = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT).recovery_codes
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    return started.secret, codes


def mfa_token(ctx: ServiceContext) -> str:
    result = signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    assert isinstance(result, signin.MfaRequired)
    return result.mfa_token


def signed_in(ctx: ServiceContext, secret: str) -> str:
    result = signin.complete_mfa(
        ctx, mfa_token=mfa_token(ctx), method=Method.TOTP, code=code_at(secret, ctx), client=CLIENT
    )
    assert isinstance(result, signin.Authenticated)
    return result.session_token


def test_turning_two_step_on_hashes_the_recovery_codes_outside_the_write(
    runtime: Runtime, hashing_watch: HashingWatch
) -> None:
    _, codes = with_totp(runtime.services)
    assert len(codes) == 16
    assert hashing_watch.seen["recovery_code"] == 16
    hashing_watch.assert_clean()


def test_registering_again_renews_the_codes_outside_the_write_and_a_new_app_hashes_nothing(
    runtime: Runtime, hashing_watch: HashingWatch
) -> None:
    ctx = runtime.services
    _, first = with_totp(ctx)
    user = accounts.find_user(ctx, "alice")
    replacing = enrollment.start_totp(ctx, user)
    before = hashing_watch.seen["recovery_code"]
    replaced = enrollment.activate_totp(ctx, user, code_at(replacing.secret, ctx), client=CLIENT)
    assert replaced.replaced_previous and replaced.recovery_codes == []
    assert hashing_watch.seen["recovery_code"] == before  # nothing computed that is thrown away
    user_admin.require_registration(ctx, username="alice", actor=None, client=CLIENT, reason="new phone")
    again = enrollment.start_totp(ctx, accounts.find_user(ctx, "alice"))
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    renewed = enrollment.activate_totp(ctx, user, code_at(again.secret, ctx), client=CLIENT)
    assert len(renewed.recovery_codes) == 16 and not set(renewed.recovery_codes) & set(first)
    assert hashing_watch.seen["recovery_code"] == before + 16
    hashing_watch.assert_clean()


def test_registration_required_while_a_new_app_is_activated_still_renews_the_recovery_codes(
    runtime: Runtime, hashing_watch: HashingWatch
) -> None:
    """The activation reads that it only replaces an app (so no codes are computed); an administrator asks the user
    to register again before its write: the write finds the codes due after all, and they are computed (outside
    it) and handed out."""
    ctx = runtime.services
    _, first = with_totp(ctx)
    user = accounts.find_user(ctx, "alice")
    replacing = enrollment.start_totp(ctx, user)
    opened = 0

    def uow() -> object:
        nonlocal opened
        opened += 1
        if opened == 2:  # between the activation's read and its write
            user_admin.require_registration(ctx, username="alice", actor=None, client=CLIENT, reason="new phone")
        return ctx.uow()

    racing = replace(ctx, uow=uow)  # type: ignore[arg-type]
    activated = enrollment.activate_totp(racing, user, code_at(replacing.secret, ctx), client=CLIENT)
    assert activated.replaced_previous and len(activated.recovery_codes) == 16
    assert not set(activated.recovery_codes) & set(first)
    assert enrollment.security_state(ctx, user.id).recovery_codes_remaining == 16
    assert not enrollment.security_state(ctx, user.id).registration_required
    hashing_watch.assert_clean()


def test_regenerating_recovery_codes_hashes_outside_the_write(runtime: Runtime, hashing_watch: HashingWatch) -> None:
    ctx = runtime.services
    _, first = with_totp(ctx)
    codes = enrollment.regenerate_recovery_codes(ctx, accounts.find_user(ctx, "alice"), client=CLIENT)
    assert len(codes) == 16 and not set(codes) & set(first)
    assert hashing_watch.seen["recovery_code"] == 32
    hashing_watch.assert_clean()


def test_signing_in_with_a_recovery_code_hashes_it_outside_the_write(
    runtime: Runtime, hashing_watch: HashingWatch
) -> None:
    ctx = runtime.services
    _, codes = with_totp(ctx)
    before = hashing_watch.seen["recovery_code"]
    with pytest.raises(InvalidCode):
        signin.complete_mfa(
            ctx, mfa_token=mfa_token(ctx), method=Method.RECOVERY_CODE, code=WRONG_RECOVERY_CODE, client=CLIENT
        )
    ctx.clock.advance(60)  # past the one tolerated failure's block, if any
    result = signin.complete_mfa(
        ctx, mfa_token=mfa_token(ctx), method=Method.RECOVERY_CODE, code=codes[0], client=CLIENT
    )
    assert isinstance(result, signin.Authenticated)
    assert hashing_watch.seen["recovery_code"] == before + 2
    assert hashing_watch.seen["password"] >= 2  # the two password steps
    hashing_watch.assert_clean()


def test_step_up_with_a_password_or_a_recovery_code_hashes_outside_the_write(
    runtime: Runtime, hashing_watch: HashingWatch
) -> None:
    ctx = runtime.services
    make_user(ctx, "bob")  # no second factor: confirms with the password
    bob = signin.login(ctx, username="bob", password=PASSWORD, client=CLIENT)
    assert isinstance(bob, signin.Authenticated)
    with pytest.raises(InvalidCredentials):
        stepup.reauthenticate(
            ctx, session_token=bob.session_token, method=stepup.PASSWORD, secret="wrong password", client=CLIENT
        )
    ctx.clock.advance(60)
    stepup.reauthenticate(ctx, session_token=bob.session_token, method=stepup.PASSWORD, secret=PASSWORD, client=CLIENT)

    secret, codes = with_totp(ctx)
    session = signed_in(ctx, secret)
    before = hashing_watch.seen["recovery_code"]
    with pytest.raises(InvalidCode):
        stepup.reauthenticate(
            ctx, session_token=session, method=Method.RECOVERY_CODE, secret=WRONG_RECOVERY_CODE, client=CLIENT
        )
    ctx.clock.advance(60)
    stepped = stepup.reauthenticate(
        ctx, session_token=session, method=Method.RECOVERY_CODE, secret=codes[0], client=CLIENT
    )
    assert stepped.session_token != session
    assert hashing_watch.seen["recovery_code"] == before + 2
    hashing_watch.assert_clean()


def test_the_verify_api_hashes_a_recovery_code_outside_the_write(runtime: Runtime, hashing_watch: HashingWatch) -> None:
    ctx = runtime.services
    _, codes = with_totp(ctx)
    make_user(ctx, "bob")  # without 2FA
    key = applications.add(ctx, name="wiki", actor=None, client=CLIENT).api_key
    before = hashing_watch.seen["recovery_code"]

    def check(username: str, code: str) -> bool:
        ctx.clock.advance(60)  # past any block
        call = verify.VerifyCall(key, username, code, Method.RECOVERY_CODE, CLIENT)
        return verify.verify_call(ctx, call).ok

    assert not check("alice", WRONG_RECOVERY_CODE)
    assert not check("bob", codes[1])
    assert not check("nobody", codes[1])
    assert not check("alice", "not a code")
    assert check("alice", codes[1])
    assert not check("alice", codes[1])  # spent
    assert hashing_watch.seen["recovery_code"] == before + 6  # one argon2id per call, whoever asks
    hashing_watch.assert_clean()


def test_accounts_and_passwords_are_hashed_outside_the_write(runtime: Runtime, hashing_watch: HashingWatch) -> None:
    ctx = runtime.services
    with_totp(ctx)
    accounts.set_password(ctx, username="alice", password="another horse battery", actor=None, client=CLIENT)
    user_admin.reset_two_factor(ctx, username="alice", actor=None, client=CLIENT, reason="lost phone")
    result = signin.login(ctx, username="alice", password="another horse battery", client=CLIENT)
    assert isinstance(result, signin.SetupRequired)
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    make_user(ctx, "carol")
    with pytest.raises(BasicAuthDenied):
        gate.check(ctx, username="carol", secret="wrong password", scope=Scope.READ_REPOSITORY, client=CLIENT)
    ctx.clock.advance(60)
    gate.check(ctx, username="carol", secret=PASSWORD, scope=Scope.READ_REPOSITORY, client=CLIENT)
    assert hashing_watch.seen["password"] >= 6
    hashing_watch.assert_clean()


def test_the_watch_catches_a_hash_inside_a_write_or_a_row_lock(runtime: Runtime, hashing_watch: HashingWatch) -> None:
    """The fixture itself: a hash after a row lock (``FOR UPDATE``; SQLite's turn) or a write is recorded, one
    after the transaction ended is not."""
    ctx = runtime.services
    user = make_user(ctx)
    with ctx.uow() as uow:
        uow.users.lock(user.id)
        ctx.passwords.hash("a password")
    with ctx.uow() as uow:
        uow.users.registered(user.id)
        recovery.digest("0" * recovery.CODE_LENGTH, bytes(recovery.SALT_BYTES), ctx.recovery_hash)
        uow.commit()
    ctx.passwords.hash("a password")
    caught, hashing_watch.violations[:] = list(hashing_watch.violations), []
    assert [violation.split(" hash ")[0] for violation in caught] == ["password", "recovery_code"]
