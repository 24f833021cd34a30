"""The password rule, wherever a password is set: at least 12 characters, none of the common passwords nidan ships,
not containing the username; refused as ``weak_password`` before anything is stored or spent. Passwords set before
the rule keep signing in. On SQLite and, when ``NIDAN_TEST_DATABASE_URL`` is set, on PostgreSQL."""

from __future__ import annotations

import pytest

from nidan.bootstrap import Runtime
from nidan.core.models import ClientInfo, InstanceRole
from nidan.errors import InvalidCredentials, WeakPassword
from nidan.services import accounts, own_account, setup, signin
from tests.helpers import PASSWORD, make_user

CLIENT = ClientInfo(ip="192.0.2.8", user_agent="pytest")
SHORT = "Choose a password of at least 12 characters."
COMMON = "This password is too common"


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("eleven char", SHORT),
        ("qwerty123456", COMMON),
        ("Iloveyou1234", COMMON),
        ("olga's own passphrase", "does not contain your username (olga)"),
    ],
)
def test_a_new_account_with_a_weak_password_is_not_made(runtime: Runtime, password: str, why: str) -> None:
    with pytest.raises(WeakPassword) as refused:
        accounts.create_user(runtime.services, username="olga", email="olga@example.com", password=password)
    assert refused.value.code == "weak_password" and why in refused.value.message
    assert accounts.list_users(runtime.services) == []


def test_a_password_an_administrator_sets_follows_the_rule(runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    for weak in ("password1234", "ALICE in chains 99", "ａｌｉｃｅ at the seaside"):
        with pytest.raises(WeakPassword):
            accounts.set_password(ctx, username="Alice", password=weak)
    assert isinstance(signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT), signin.Authenticated)


def test_ones_own_new_password_follows_the_rule(runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    signed_in = signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
    assert isinstance(signed_in, signin.Authenticated)
    session = signin.current_session(ctx, signed_in.session_token)
    for weak, why in (("1q2w3e4r5t6y", COMMON), ("alice2026alice", "(alice)"), ("too short", SHORT)):
        with pytest.raises(WeakPassword) as refused:
            own_account.change_password(ctx, session, current=PASSWORD, new=weak, client=CLIENT)
        assert why in refused.value.message
    # Refused before the current password is even checked: nothing counted towards the backoff.
    changed = own_account.change_password(ctx, session, current=PASSWORD, new="kettle orbit tulip seven", client=CLIENT)
    assert changed.sessions_ended == 0


def test_the_first_administrators_weak_password_spends_no_setup_link(runtime: Runtime) -> None:
    ctx = runtime.services
    token = setup.issue_setup_token(ctx)
    assert token
    with pytest.raises(WeakPassword):
        setup.complete_setup(ctx, token=token, username="root", email="root@example.com", password="administrator")
    root = setup.complete_setup(ctx, token=token, username="root", email="root@example.com", password=PASSWORD)
    assert root.role is InstanceRole.ADMIN


def test_a_password_set_before_the_rule_keeps_signing_in(runtime: Runtime) -> None:
    """An 8-character password (the old minimum), common at that: sign-in never applies the rule."""
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    with ctx.uow() as uow:
        uow.users.set_password_hash(alice.id, ctx.passwords.hash("sunshine"))
        uow.commit()
    assert isinstance(signin.login(ctx, username="alice", password="sunshine", client=CLIENT), signin.Authenticated)
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="alice", password=PASSWORD, client=CLIENT)
