"""Guarantees that hold across processes: two real ``nidan serve`` on different ports sharing one PostgreSQL database.

- Single use: one recovery code, one TOTP code, one mfa_token, each fired 50 times at once, split over both
  processes, signs in exactly once.
- Backoff: wrong codes alternating between the processes keep the 1 s, 2 s, 4 s sequence; a block set by one is
  honoured by the other; of 50 wrong codes at once, split over both, exactly 2 are checked.
- Atomicity: regenerating recovery codes and changing the authenticator are each one transaction. A third process
  started with ``NIDAN_TEST_COMMIT_GATE`` (test-only fault injection) holds every commit until the test removes the
  gate file: the test looks at the database inside the open transaction, then lets it commit or SIGKILLs the process
  group there, and checks that the old or the new state is left, whole.
- Overlap: the same gate holds one regeneration (or authenticator set-up) open at its commit while a second one, on
  another process, runs into it; both must end well, leaving one live set (one pending authenticator).

PostgreSQL is required: without ``NIDAN_TEST_DATABASE_URL`` these tests FAIL (deselect them with ``-m "not postgres"``
for a SQLite-only run).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import SecuritySettings, Settings
from nidan.core.models import ClientInfo
from nidan.db import tables as t
from nidan.services import audit, throttling
from tests.conftest import FAST_SECURITY, PostgresDatabases
from tests.e2e.support import PASSWORD, Server, oathtool_code, oathtool_path
from tests.helpers import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

RACERS = 50
#: Backoff and the per-token attempt limit out of the way, so every racer is evaluated: single use is under test.
UNTHROTTLED = {
    "NIDAN_RATE_LIMIT_TOLERATED_FAILURES": "1000",
    "NIDAN_RATE_LIMIT_HARD_LIMIT": "100000",
    "NIDAN_RATE_LIMIT_IP_TOLERATED_FAILURES": "100000",
    "NIDAN_SECURITY_MFA_TOKEN_MAX_ATTEMPTS": "100",
}
GATE_VARIABLE = "NIDAN_TEST_COMMIT_GATE"


def running(inst: Instance | None) -> Instance:
    """Called first in each test body, so that a missing PostgreSQL or oathtool is a FAILURE, not a skip or an error."""
    if inst is None:
        pytest.fail(
            "The multi-process tests need PostgreSQL: set NIDAN_TEST_DATABASE_URL, e.g. "
            "postgresql+psycopg://root@127.0.0.1:5432/test (scripts/test sets it when a server answers there, and "
            "requires it with CI=true). To run without PostgreSQL, deselect them explicitly: -m 'not postgres'."
        )
    oathtool_path()
    return inst


@dataclass
class Instance:
    """One nidan instance: a fresh database, one data directory (the keys every process shares), its processes."""

    env: dict[str, str]
    #: In the test process, on the same database and keys: to add users and look at the database directly.
    runtime: Runtime
    log_dir: Path
    servers: list[Server] = field(default_factory=list)

    @property
    def pair(self) -> list[Server]:
        """The two ungated processes every test sends its traffic to."""
        return self.servers[:2]

    @property
    def gate(self) -> Path:
        """The commit gate of the instance's gated process (see ``overlapping``)."""
        return self.log_dir / "gate"

    def start(self, *extra_envs: dict[str, str]) -> list[Server]:
        """One more ``nidan serve`` per item, with the instance's environment plus the item, started side by side."""
        started = [Server({**self.env, **extra}, self.log_dir) for extra in extra_envs]
        self.servers += started
        for server in started:
            server.wait_until_healthy()
        return started


@contextmanager
def instance(databases: PostgresDatabases, directory: Path, extra_env: dict[str, str]) -> Iterator[Instance]:
    name = databases.create()
    url = databases.url_for(name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_") or k == "NIDAN_TEST_DATABASE_URL"}
    env.update(
        NIDAN_DATA_DIR=str(directory / "data"),
        NIDAN_CONFIG=str(directory / "no-such-nidan.toml"),
        NIDAN_DATABASE_URL=url,
        NIDAN_SECURITY_ARGON2_MEMORY_KIB=str(FAST_SECURITY["argon2_memory_kib"]),
        NIDAN_SECURITY_ARGON2_TIME_COST=str(FAST_SECURITY["argon2_time_cost"]),
        # Five servers of two instances live at once beside the other tests' databases: each process's share of the
        # server's 100 connections is bounded, so racers queue for a connection instead of being refused one.
        NIDAN_DATABASE_POOL_SIZE="2",
        NIDAN_DATABASE_MAX_OVERFLOW="8",
        PYTHONUNBUFFERED="1",
        **extra_env,
    )
    settings = Settings(data_dir=directory / "data", database_url=url, security=SecuritySettings(**FAST_SECURITY))
    runtime: Runtime | None = None
    servers: list[Server] = []
    try:
        # Creates the keys before any server starts, so every process reads the same key files.
        runtime = build_runtime(settings)
        yield Instance(env, runtime, directory, servers)
    finally:
        for server in servers:  # all asked at once, then each waited for
            if server.process.poll() is None:
                os.killpg(server.process.pid, signal.SIGTERM)
        for server in servers:
            server.stop()
        if runtime is not None:
            runtime.engine.dispose()
        databases.drop(name)


@pytest.fixture(scope="module")
def unthrottled(
    postgres: PostgresDatabases | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance | None]:
    if postgres is None:
        yield None  # each test then fails in its body: see ``running``
        return
    with instance(postgres, tmp_path_factory.mktemp("unthrottled"), UNTHROTTLED) as created:
        created.start({}, {}, {GATE_VARIABLE: str(created.gate)})  # two processes, and a third with a commit gate
        yield created


@pytest.fixture(scope="module")
def throttled(
    postgres: PostgresDatabases | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instance | None]:
    """The default backoff: one tolerated failure, then 1 s, 2 s, 4 s ..."""
    if postgres is None:
        yield None
        return
    with instance(postgres, tmp_path_factory.mktemp("throttled"), {}) as created:
        created.start({}, {})
        yield created


@contextmanager
def clients(*servers: Server) -> Iterator[list[httpx.Client]]:
    limits = httpx.Limits(max_connections=RACERS, max_keepalive_connections=RACERS)
    opened = [httpx.Client(base_url=s.url, timeout=60, limits=limits) for s in servers]
    try:
        yield opened
    finally:
        for client in opened:
            client.close()


# --- the API, as a client uses it ---------------------------------------------------------------------------------


def login(http: httpx.Client, username: str) -> dict[str, Any]:
    answer = http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def mfa(http: httpx.Client, token: str, method: str, code: str) -> httpx.Response:
    return http.post("/api/v1/auth/mfa", json={"mfa_token": token, "method": method, "code": code})


def second_step(http: httpx.Client, username: str, method: str, code: str) -> httpx.Response:
    return mfa(http, login(http, username)["mfa_token"], method, code)


def bearer(session: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session}"}


def add_user_with_totp(inst: Instance, http: httpx.Client, username: str) -> tuple[str, list[str], str]:
    """A new user who turned TOTP on: the secret, the 16 recovery codes, and a session verified just now."""
    make_user(inst.runtime.services, username)
    session = login(http, username)["session_token"]  # no second factor yet: signed in with the password
    secret = http.post("/api/v1/me/totp", headers=bearer(session)).json()["secret"]
    activated = http.post("/api/v1/me/totp/activate", json={"code": oathtool_code(secret)}, headers=bearer(session))
    assert activated.status_code == 200, activated.text
    return secret, activated.json()["recovery_codes"], session


def next_code(secret: str) -> str:
    """The app's code for the next 30-second step: never the step the last sign-in or activation used."""
    return oathtool_code(secret, datetime.now(UTC) + timedelta(seconds=30))


def wrong_code(secret: str) -> str:
    """A 6-digit code no step nidan would accept right now matches."""
    now = datetime.now(UTC)
    near = {oathtool_code(secret, now + timedelta(seconds=30 * k)) for k in range(-3, 4)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def mfa_tokens(https: Sequence[httpx.Client], username: str, count: int, parallel: int = 1) -> list[str]:
    """``count`` sign-in attempts past the password, taken from the processes in turn."""
    with ThreadPoolExecutor(parallel) as pool:
        bodies = pool.map(lambda i: login(https[i % len(https)], username), range(count))
        return [body["mfa_token"] for body in bodies]


def race(calls: Sequence[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Every call from its own thread, released together."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=60)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def tally(answers: Sequence[httpx.Response]) -> dict[tuple[int, str | None], int]:
    counts: dict[tuple[int, str | None], int] = {}
    for answer in answers:
        key = (answer.status_code, None if answer.status_code == 200 else answer.json()["error"]["code"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def assert_audit_chain_intact(inst: Instance) -> None:
    checked = audit.verify(inst.runtime.services)
    assert checked.intact, checked.problem


# --- single use ---------------------------------------------------------------------------------------------------


def test_one_recovery_code_fired_at_both_processes_signs_in_once(unthrottled: Instance | None) -> None:
    inst = running(unthrottled)
    with clients(*inst.pair) as https:
        _, codes, _ = add_user_with_totp(inst, https[0], "rita")
        tokens = mfa_tokens(https, "rita", RACERS, parallel=8)
        answers = race([partial(mfa, https[i % 2], tokens[i], "recovery_code", codes[0]) for i in range(RACERS)])
        assert tally(answers) == {(200, None): 1, (401, "invalid_code"): RACERS - 1}
        # The code stays spent for both processes.
        for http in https:
            assert second_step(http, "rita", "recovery_code", codes[0]).status_code == 401
    assert_audit_chain_intact(inst)


def test_one_totp_code_fired_at_both_processes_signs_in_once(unthrottled: Instance | None) -> None:
    inst = running(unthrottled)
    with clients(*inst.pair) as https:
        secret, _, _ = add_user_with_totp(inst, https[0], "tom")
        tokens = mfa_tokens(https, "tom", RACERS, parallel=8)
        code = next_code(secret)
        answers = race([partial(mfa, https[i % 2], tokens[i], "totp", code) for i in range(RACERS)])
        assert tally(answers) == {(200, None): 1, (401, "invalid_code"): RACERS - 1}
    assert_audit_chain_intact(inst)


def test_one_mfa_token_fired_at_both_processes_with_different_codes_is_spent_once(unthrottled: Instance | None) -> None:
    inst = running(unthrottled)
    with clients(*inst.pair) as https:
        _, codes, _ = add_user_with_totp(inst, https[0], "mia")
        (token,) = mfa_tokens(https, "mia", 1)
        answers = race(
            [partial(mfa, https[i % 2], token, "recovery_code", codes[i % len(codes)]) for i in range(RACERS)]
        )
        assert tally(answers) == {(200, None): 1, (401, "mfa_token_invalid"): RACERS - 1}
        # The losers' transactions rolled back whole: of 16 codes exactly one was spent.
        (winner,) = [a for a in answers if a.status_code == 200]
        for http in https:
            me = http.get("/api/v1/me", headers=bearer(winner.json()["session_token"]))
            assert me.json()["two_factor"]["recovery_codes_remaining"] == len(codes) - 1
    assert_audit_chain_intact(inst)


# --- backoff ------------------------------------------------------------------------------------------------------


def assert_refused(answer: httpx.Response, at_most: int) -> int:
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "rate_limited"
    retry_after = int(answer.headers["retry-after"])
    assert 1 <= retry_after <= at_most, retry_after
    return retry_after


def test_backoff_sequence_holds_when_wrong_codes_alternate_between_processes(throttled: Instance | None) -> None:
    inst = running(throttled)
    with clients(*inst.pair) as (a, b):
        secret, _, _ = add_user_with_totp(inst, a, "bert")
        wrong = wrong_code(secret)
        assert second_step(a, "bert", "totp", wrong).status_code == 401  # tolerated
        # Each block is earned on one process; both refuse until it ends, and asking again does not lengthen it.
        for block, setter, other in ((1, b, a), (2, a, b), (4, b, a)):
            assert second_step(setter, "bert", "totp", wrong).status_code == 401, block
            retry_after = assert_refused(second_step(other, "bert", "totp", wrong), block)
            assert_refused(second_step(setter, "bert", "totp", wrong), retry_after)
            time.sleep(retry_after + 0.1)  # the wait the answer asked for: Retry-After is the condition
        # A correct code on either process resets the count for both.
        assert second_step(a, "bert", "totp", next_code(secret)).status_code == 200
        assert second_step(b, "bert", "totp", wrong).status_code == 401
        assert second_step(a, "bert", "totp", wrong).status_code == 401
        assert_refused(second_step(b, "bert", "totp", wrong), 1)


def test_fifty_wrong_codes_at_once_over_both_processes_are_checked_twice(throttled: Instance | None) -> None:
    inst = running(throttled)
    ctx = inst.runtime.services
    expected = {(401, "invalid_code"): 2, (429, "rate_limited"): RACERS - 2}
    with clients(*inst.pair) as https:
        secret, _, _ = add_user_with_totp(inst, https[0], "wendy")
        wrong = wrong_code(secret)
        # Two racers slipping past one another is a matter of timing: a few rounds make it show when it exists.
        for round_ in range(3):
            # Sign-ins one at a time (at once they would trip the password backoff); a blocked attempt does not
            # spend an mfa_token's tries, so five racers can share one.
            tokens = mfa_tokens(https, "wendy", RACERS // 5)
            started = time.monotonic()
            answers = race([partial(mfa, https[i % 2], tokens[i % len(tokens)], "totp", wrong) for i in range(RACERS)])
            elapsed = time.monotonic() - started
            # The second failure blocks for 1 s, and every racer asked within it (a slow race would show here).
            assert tally(answers) == expected, f"round {round_}: the race took {elapsed:.2f} s (the block is 1 s)"
            assert throttling.status(ctx, "wendy").second_factor.failures == 2
            throttling.clear(ctx, username="wendy", actor=None, client=ClientInfo(), reason="next round")


# --- atomicity under SIGKILL --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactorRows:
    """A user's second factors as stored: the recovery-code sets not revoked and the TOTP credentials."""

    #: (set id, codes in the set, codes not used), oldest first.
    live_sets: tuple[tuple[int, int, int], ...]
    #: (credential id, state, sealed secret), by id.
    totp: tuple[tuple[int, str, bytes], ...]

    @property
    def active(self) -> tuple[int, str, bytes]:
        (only,) = [row for row in self.totp if row[1] == "active"]
        return only


def factor_rows(inst: Instance, username: str) -> FactorRows:
    s, r, c, u = t.recovery_code_sets.c, t.recovery_codes.c, t.totp_credentials.c, t.users.c
    with inst.runtime.engine.connect() as connection:
        user_id = connection.execute(select(u.id).where(u.username == username)).scalar_one()
        sets = connection.execute(
            select(s.id, func.count(r.id), func.count(r.id).filter(r.used_at.is_(None)))
            .join(t.recovery_codes, r.set_id == s.id)
            .where(s.user_id == user_id, s.revoked_at.is_(None))
            .group_by(s.id)
            .order_by(s.id)
        ).all()
        credentials = connection.execute(
            select(c.id, c.state, c.sealed_secret).where(c.user_id == user_id).order_by(c.id)
        ).all()
    return FactorRows(
        live_sets=tuple((row[0], row[1], row[2]) for row in sets),
        totp=tuple((row.id, row.state, bytes(row.sealed_secret)) for row in credentials),
    )


@dataclass
class Gated:
    """A request sent to a gated process: the database as seen at each held commit, and how the request ended."""

    seen_at_commits: list[FactorRows]
    outcome: httpx.Response | Exception


def gated_request(
    inst: Instance,
    server: Server,
    gate: Path,
    username: str,
    send: Callable[[httpx.Client], httpx.Response],
    *,
    kill_at_commit: bool,
) -> Gated:
    """Send a request to ``server`` (started with the gate) and, at each commit it holds, look at the database; then
    release the commit, or SIGKILL the process group while the transaction is open."""
    seen: list[FactorRows] = []
    with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(1) as pool:
        sent: Future[httpx.Response] = pool.submit(send, http)
        deadline = time.monotonic() + 30
        while not sent.done():
            assert time.monotonic() < deadline, "the request neither committed nor ended"
            if not gate.exists():
                time.sleep(0.005)
                continue
            seen.append(factor_rows(inst, username))  # inside the open transaction, seen from outside it
            if kill_at_commit:
                server.kill()
                break
            gate.unlink()
        try:
            outcome: httpx.Response | Exception = sent.result(timeout=30)
        except httpx.TransportError as exc:
            outcome = exc
    gate.unlink(missing_ok=True)
    return Gated(seen, outcome)


def test_regenerating_recovery_codes_and_changing_the_authenticator_survive_sigkill(
    unthrottled: Instance | None, tmp_path: Path
) -> None:
    inst = running(unthrottled)
    gates = [tmp_path / "gate-1", tmp_path / "gate-2"]
    victims = inst.start(*({GATE_VARIABLE: str(gate)} for gate in gates))
    with clients(*inst.pair) as (a, b):
        secret, codes, session = add_user_with_totp(inst, a, "dora")
        first = factor_rows(inst, "dora")
        assert len(first.live_sets) == 1 and first.live_sets[0][1:] == (16, 16)

        def regenerate(http: httpx.Client) -> httpx.Response:
            return http.post("/api/v1/me/recovery-codes", headers=bearer(session))

        # Let one regeneration commit: one transaction, invisible until it commits, then the new set whole.
        done = gated_request(inst, victims[0], gates[0], "dora", regenerate, kill_at_commit=False)
        assert done.seen_at_commits == [first]
        assert isinstance(done.outcome, httpx.Response) and done.outcome.status_code == 200, done.outcome
        new_codes = done.outcome.json()["recovery_codes"]
        second = factor_rows(inst, "dora")
        assert len(second.live_sets) == 1 and second.live_sets[0][1:] == (16, 16)
        assert second.live_sets[0][0] != first.live_sets[0][0]
        assert second_step(b, "dora", "recovery_code", codes[0]).status_code == 401  # the old set is gone
        assert second_step(b, "dora", "recovery_code", new_codes[0]).status_code == 200  # the new one works
        after_use = factor_rows(inst, "dora")

        # Kill the next regeneration inside its transaction: the set from before stays, whole and working.
        killed = gated_request(inst, victims[0], gates[0], "dora", regenerate, kill_at_commit=True)
        assert killed.seen_at_commits == [after_use]
        assert isinstance(killed.outcome, Exception), killed.outcome
        assert factor_rows(inst, "dora") == after_use
        assert second_step(a, "dora", "recovery_code", new_codes[1]).status_code == 200

        def change_authenticator(new_secret: str) -> Callable[[httpx.Client], httpx.Response]:
            return lambda http: http.post(
                "/api/v1/me/totp/activate", json={"code": oathtool_code(new_secret)}, headers=bearer(session)
            )

        # Let one change of authenticator commit: the old app stops, the new one is the only one.
        replacement = a.post("/api/v1/me/totp", headers=bearer(session)).json()["secret"]
        pending = factor_rows(inst, "dora")
        changed = gated_request(
            inst, victims[1], gates[1], "dora", change_authenticator(replacement), kill_at_commit=False
        )
        assert changed.seen_at_commits == [pending]
        assert isinstance(changed.outcome, httpx.Response) and changed.outcome.status_code == 200, changed.outcome
        assert changed.outcome.json()["replaced_previous"] is True
        (new_pending,) = [row for row in pending.totp if row[1] == "pending"]
        now_active = factor_rows(inst, "dora").totp
        assert now_active == ((new_pending[0], "active", new_pending[2]),)
        assert second_step(b, "dora", "totp", next_code(secret)).status_code == 401  # the old app stopped

        # Kill the next change inside its transaction: the app from before stays the only active one.
        abandoned = a.post("/api/v1/me/totp", headers=bearer(session)).json()["secret"]
        before_kill = factor_rows(inst, "dora")
        killed = gated_request(inst, victims[1], gates[1], "dora", change_authenticator(abandoned), kill_at_commit=True)
        assert killed.seen_at_commits == [before_kill]
        assert isinstance(killed.outcome, Exception), killed.outcome
        left = factor_rows(inst, "dora")
        assert left == before_kill
        assert left.active == now_active[0]
        assert second_step(b, "dora", "totp", next_code(abandoned)).status_code == 401
        assert second_step(a, "dora", "totp", next_code(replacement)).status_code == 200
        assert len(left.live_sets) == 1 and left.live_sets[0][1:] == (16, 14)
    assert_audit_chain_intact(inst)


# --- changes to one account overlapping on two processes ----------------------------------------------------------


def lock_waiters(inst: Instance) -> int:
    """Database sessions of this instance waiting for a lock another transaction holds."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with inst.runtime.engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def overlapping(
    inst: Instance, gated: Server, gate: Path, other: Server, send: Callable[[httpx.Client], httpx.Response]
) -> tuple[httpx.Response, httpx.Response]:
    """``send`` to the gated process, held open at its commit; ``send`` again to ``other``, which runs into it and
    waits for a lock; then the first commits. The overlap is made, not hoped for."""
    with (
        httpx.Client(base_url=gated.url, timeout=60) as first_http,
        httpx.Client(base_url=other.url, timeout=60) as second_http,
        ThreadPoolExecutor(2) as pool,
    ):
        first = pool.submit(send, first_http)
        deadline = time.monotonic() + 30
        while not gate.exists():
            assert not first.done() and time.monotonic() < deadline, "the first request never reached its commit"
            time.sleep(0.005)
        second = pool.submit(send, second_http)
        # The second waits for a lock the first holds (or, were nidan to refuse it outright, is already done).
        deadline = time.monotonic() + 10
        while lock_waiters(inst) == 0 and not second.done():
            assert time.monotonic() < deadline, "the second request neither waited for the first nor ended"
            time.sleep(0.01)
        while not first.done():
            gate.unlink(missing_ok=True)  # this commit, and any later one
            time.sleep(0.005)
        return first.result(timeout=30), second.result(timeout=30)


def test_regenerations_overlapping_on_two_processes_leave_one_live_set(unthrottled: Instance | None) -> None:
    inst = running(unthrottled)
    a, b, gated = inst.servers[:3]
    with clients(a, b) as (http_a, http_b):
        _, _, session = add_user_with_totp(inst, http_a, "rory")
        first, second = overlapping(
            inst, gated, inst.gate, a, lambda http: http.post("/api/v1/me/recovery-codes", headers=bearer(session))
        )
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        rows = factor_rows(inst, "rory")
        assert len(rows.live_sets) == 1 and rows.live_sets[0][1:] == (16, 16), rows.live_sets
        me = http_b.get("/api/v1/me", headers=bearer(session)).json()
        assert me["two_factor"]["recovery_codes_remaining"] == 16
        # The set committed last is the one that works.
        assert second_step(http_b, "rory", "recovery_code", first.json()["recovery_codes"][0]).status_code == 401
        assert second_step(http_b, "rory", "recovery_code", second.json()["recovery_codes"][0]).status_code == 200


def test_authenticator_set_ups_overlapping_on_two_processes_both_answer(unthrottled: Instance | None) -> None:
    inst = running(unthrottled)
    a, b, gated = inst.servers[:3]
    with clients(a, b) as (http_a, http_b):
        make_user(inst.runtime.services, "sam")
        session = login(http_a, "sam")["session_token"]
        first, second = overlapping(
            inst, gated, inst.gate, a, lambda http: http.post("/api/v1/me/totp", headers=bearer(session))
        )
        assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
        assert [row[1] for row in factor_rows(inst, "sam").totp] == ["pending"]
        # The set-up started last is the one to finish.
        latest = second.json()["secret"]
        activated = http_b.post(
            "/api/v1/me/totp/activate", json={"code": oathtool_code(latest)}, headers=bearer(session)
        )
        assert activated.status_code == 200, activated.text


# --- passwords together (issue 15) --------------------------------------------------------------------------------


def password_login(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.post("/api/v1/auth/login", json={"username": username, "password": password})


def basic_gate(http: httpx.Client, username: str, password: str) -> httpx.Response:
    return http.get("/auth/basic", params={"scope": "read_repository"}, auth=(username, password))


def statuses(answers: Sequence[httpx.Response]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for answer in answers:
        counts[answer.status_code] = counts.get(answer.status_code, 0) + 1
    return counts


def test_correct_passwords_at_once_over_both_processes_all_sign_in(throttled: Instance | None) -> None:
    """Three at once answered 200, 200, 429 before; now every correct one passes, wherever it lands."""
    inst = running(throttled)
    make_user(inst.runtime.services, "paula")
    with clients(*inst.pair) as https:
        answers = race([partial(password_login, https[i % 2], "paula", PASSWORD) for i in range(20)])
        assert statuses(answers) == {200: 20}
        # And one wrong among correct ones: it is the one tolerated failure, so it blocks nobody.
        calls = [partial(password_login, https[i % 2], "paula", PASSWORD if i else "wrong") for i in range(20)]
        assert tally(race(calls)) == {(200, None): 19, (401, "invalid_credentials"): 1}


def test_parallel_git_clones_with_a_correct_password_all_pass_the_gate(throttled: Instance | None) -> None:
    """Ten parallel clones through the Basic gate answered 4 x 200 and 6 x 403 before."""
    inst = running(throttled)
    make_user(inst.runtime.services, "gita")
    with clients(*inst.pair) as https:
        answers = race([partial(basic_gate, https[i % 2], "gita", PASSWORD) for i in range(10)])
        assert statuses(answers) == {200: 10}


def test_fifty_wrong_passwords_at_once_over_both_processes_are_checked_twice(throttled: Instance | None) -> None:
    inst = running(throttled)
    ctx = inst.runtime.services
    make_user(ctx, "walt")
    with clients(*inst.pair) as https:
        for round_ in range(2):
            answers = race([partial(password_login, https[i % 2], "walt", "wrong password") for i in range(RACERS)])
            assert tally(answers) == {(401, "invalid_credentials"): 2, (429, "rate_limited"): RACERS - 2}, round_
            (counter,) = throttling.status(ctx, "walt").passwords
            assert counter[1].failures == 2 and counter[1].pending == 0
            throttling.clear(ctx, username="walt", actor=None, client=ClientInfo(), reason="next round")
            # A correct sign-in from the same address resets the address's own counter for the next round.
            assert password_login(https[round_ % 2], "walt", PASSWORD).status_code == 200
