"""Issue 14: the verify API's answer time must not tell an application who has 2FA. A wrong code for a user with an
authenticator, a user without one and a name nobody has must cost the same work: the same statements in the same
order, one unseal, the same HMACs, one argon2id for a recovery code with the same cost. Counted, not timed (a timing
test would be flaky on a shared machine; ``bench/timing_oracle.py`` measures the times). On every back end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event, func, select

from nidan.bootstrap import Runtime
from nidan.core import otpauth, recovery, sealing, totp
from nidan.core.models import ClientInfo, Method
from nidan.db import prepared
from nidan.db import tables as t
from nidan.errors import RateLimited
from nidan.services import applications, verify
from nidan.services.context import ServiceContext
from nidan.services.methods import totp as methods_totp
from nidan.services.verify import VerifyCall
from tests.helpers import make_user
from tests.web.verify_support import totp_user

CLIENT = ClientInfo(ip="192.0.2.1", user_agent="wiki/1.0")
#: The three kinds of name an application could tell apart by the time of the answer.
KINDS = ("alice", "bob", "nobody")


@dataclass
class Work:
    """What one call did: each statement's SQL in order, the unseals, the HMACs, each argon2id's cost."""

    statements: list[str] = field(default_factory=list)
    unseals: int = 0
    hmacs: int = 0
    argon2: list[tuple[int, int, int]] = field(default_factory=list)


@contextmanager
def counted(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Work]:
    """Counts the work of the calls made inside: statements run as ``Prepared`` (on the driver's cursor, which
    SQLAlchemy's events do not see) and through SQLAlchemy, unseals, HOTP computations and argon2id hashes."""
    work = Work()
    run, unseal, hotp, digest = prepared.Prepared._run, sealing.KeyRing.unseal, totp.hotp, recovery.digest

    def counting_run(self: prepared.Prepared, connection: Any, parameters: Any) -> Any:
        compiled, cursor = run(self, connection, parameters)
        work.statements.append(compiled.sql)
        return compiled, cursor

    def counting_unseal(self: sealing.KeyRing, sealed: sealing.Sealed, *, context: str) -> bytes:
        work.unseals += 1
        return unseal(self, sealed, context=context)

    def counting_hotp(key: bytes, counter: int, **kwargs: Any) -> str:
        work.hmacs += 1
        return hotp(key, counter, **kwargs)

    def counting_digest(code: str, salt: bytes, params: recovery.HashParameters) -> bytes:
        work.argon2.append((params.time_cost, params.memory_cost_kib, params.parallelism))
        return digest(code, salt, params)

    def through_sqlalchemy(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        work.statements.append(statement)

    monkeypatch.setattr(prepared.Prepared, "_run", counting_run)
    monkeypatch.setattr(sealing.KeyRing, "unseal", counting_unseal)
    monkeypatch.setattr(totp, "hotp", counting_hotp)
    monkeypatch.setattr(recovery, "digest", counting_digest)
    event.listen(runtime.engine, "before_cursor_execute", through_sqlalchemy)
    try:
        yield work
    finally:
        event.remove(runtime.engine, "before_cursor_execute", through_sqlalchemy)
        monkeypatch.undo()


def a_wrong_code(ctx: ServiceContext, secret: str) -> str:
    """A code that matches no step within ±SKEW_SEARCH_STEPS of alice's key nor of the stand-in authenticator's,
    so that no clock offset is found and no step matches anywhere (deterministic, whatever the random keys)."""
    stand_in = methods_totp.stand_in_authenticator(ctx)
    stand_in_key = ctx.keyring.unseal(
        sealing.Sealed(stand_in.key_fingerprint, stand_in.sealed_secret), context=f"totp:{stand_in.user_id}"
    )
    now_step = totp.time_step(ctx.clock.now().timestamp())
    steps = range(now_step - totp.SKEW_SEARCH_STEPS, now_step + totp.SKEW_SEARCH_STEPS + 1)
    taken = {totp.hotp(key, s) for key in (otpauth.b32decode(secret), stand_in_key) for s in steps}
    return next(code for code in (f"{n:06d}" for n in range(10**6)) if code not in taken)


@pytest.fixture
def names(runtime: Runtime) -> tuple[ServiceContext, str, str]:
    """alice has an authenticator (and recovery codes), bob has none, nobody is nobody. The application's key,
    alice's secret. One call first, so that what happens once (the application's last use noted) is behind us."""
    ctx = runtime.services
    secret, _ = totp_user(ctx, "alice")
    make_user(ctx, "bob")
    api_key = applications.add(ctx, name="wiki", actor=None, client=CLIENT).api_key
    verify.verify_call(ctx, VerifyCall(api_key, "carol", "123456", None, CLIENT))
    return ctx, api_key, secret


def work_of(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, api_key: str, name: str, code: str, method: Method | None = None
) -> Work:
    with counted(runtime, monkeypatch) as work:
        result = verify.verify_call(runtime.services, VerifyCall(api_key, name, code, method, CLIENT))
    assert not result.ok and result.error is not None and result.error.code == "invalid_code"
    return work


def test_a_wrong_authenticator_code_costs_the_same_for_every_kind_of_name(
    runtime: Runtime, names: tuple[ServiceContext, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, api_key, secret = names
    code = a_wrong_code(ctx, secret)
    works = {name: work_of(runtime, monkeypatch, api_key, name, code) for name in KINDS}
    alice = works["alice"]
    # The statements of a real user's wrong code: lock and read, count the failure, append to the audit log.
    assert len(alice.statements) >= 4
    assert alice.unseals == 1
    assert alice.hmacs == 2 * totp.SKEW_SEARCH_STEPS + 1
    for name in ("bob", "nobody"):
        assert works[name] == alice, name


def test_the_work_is_the_same_for_a_user_whose_device_drifts_and_a_name_that_cannot_exist(
    runtime: Runtime, names: tuple[ServiceContext, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, api_key, secret = names
    # A learned drift widens alice's window: a wrong code still costs the same HMACs.
    with runtime.engine.begin() as connection:
        connection.execute(t.totp_credentials.update().values(drift_steps=totp.MAX_DRIFT_STEPS))
    code = a_wrong_code(ctx, secret)
    alice = work_of(runtime, monkeypatch, api_key, "alice", code)
    assert alice.hmacs == 2 * totp.SKEW_SEARCH_STEPS + 1
    assert work_of(runtime, monkeypatch, api_key, "not a username!", code) == alice


@pytest.mark.parametrize("code", ["abcde-fghjk", "not a recovery code"])
def test_a_wrong_recovery_code_costs_one_argon2id_for_every_kind_of_name(
    runtime: Runtime, names: tuple[ServiceContext, str, str], monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    ctx, api_key, _ = names
    works = {name: work_of(runtime, monkeypatch, api_key, name, code, Method.RECOVERY_CODE) for name in KINDS}
    alice = works["alice"]
    # Malformed or not, one argon2id at the cost the user's codes were hashed with (the instance's setting).
    cost = (ctx.recovery_hash.time_cost, ctx.recovery_hash.memory_cost_kib, ctx.recovery_hash.parallelism)
    assert alice.argon2 == [cost]
    for name in ("bob", "nobody"):
        assert works[name] == alice, name


def test_a_blocked_name_is_refused_after_the_same_statements_whoever_has_it(
    runtime: Runtime, names: tuple[ServiceContext, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, api_key, secret = names
    code = a_wrong_code(ctx, secret)
    for name in KINDS:  # the first failure is tolerated, the second blocks for a second
        for _ in range(2):
            verify.verify_call(ctx, VerifyCall(api_key, name, code, None, CLIENT))
    works = {}
    for name in KINDS:
        with counted(runtime, monkeypatch) as works[name], pytest.raises(RateLimited):
            verify.verify_call(ctx, VerifyCall(api_key, name, code, None, CLIENT))
    assert works["alice"].hmacs == 0 and works["alice"].unseals == 0  # refused before anything is checked
    assert works["alice"].statements
    for name in ("bob", "nobody"):
        assert works[name] == works["alice"], name


def counts(runtime: Runtime) -> dict[str, int]:
    with runtime.engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in t.metadata.sorted_tables
        }


def test_an_unknown_name_adds_only_its_counter_and_its_audit_event(
    runtime: Runtime, names: tuple[ServiceContext, str, str]
) -> None:
    """The stand-in authenticator is never stored: a name nobody has leaves what it left before issue 14."""
    ctx, api_key, secret = names
    before = counts(runtime)
    verify.verify_call(ctx, VerifyCall(api_key, "nobody", a_wrong_code(ctx, secret), None, CLIENT))
    verify.verify_call(ctx, VerifyCall(api_key, "nobody2", "abcde-fghjk", None, CLIENT))
    after = counts(runtime)
    changed = {name: after[name] - before[name] for name in after if after[name] != before[name]}
    assert changed == {"throttles": 2, "audit_events": 2}
