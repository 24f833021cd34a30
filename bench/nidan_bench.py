"""nidan under wrk, one configuration: seed users in bulk, start ``nidan serve``, run the scenarios, report.

``bench/matrix.py`` runs every configuration through ``run_config``. Run alone (``bench/run --one ...``), this
measures one backend and worker count, prints the table and writes ``report.json`` / ``report.md`` into its
scratch directory ``bench/.work/run-*/``. Exits non-zero when a scenario saw a wrong answer, a socket error, or
ran out of usable codes (too few ``--users`` for the throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadgen import (
    BLOCKED_SCRIPT,
    REMEMBERED_SCRIPT,
    SCRIPT,
    SIGNIN_SCENARIOS,
    SIGNIN_SCRIPT,
    WrkResult,
    record_of,
    run_wrk,
    write_device_tokens,
    write_valid_codes,
    write_wrong_codes,
)
from seeding import PASSWORD, REMEMBER_DEVICE_DAYS, remember_devices, seed
from serving import NidanServer, postgres_cpu_seconds
from sqlalchemy import create_engine, make_url, text

from nidan.config import RateLimitSettings
from nidan.core.totp import PERIOD

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"

SCENARIOS = ("valid", "wrong", "blocked", "signin", "remembered")
LABELS = {
    "valid": "verify, valid codes",
    "wrong": "verify, wrong codes",
    "blocked": "verify, blocked users (429)",
    "signin": "sign-in, password + TOTP",
    "remembered": "sign-in, password + remembered device",
}
#: How the seeded users are shared out: each scenario gets its own, so a code spent, a wrong code counted or a
#: block in one scenario never meets another.
SHARES = {"valid": 4, "wrong": 4, "signin": 2}
#: Users who sign in on a remembered device, taken before the shares. A device's token chain never runs out (each
#: answer carries the next token), so few users carry any run, round robin: at ~130 sign-ins/s over 16 connections
#: each comes round every ~7 s. Each is remembered in process while seeding, one transaction per user.
REMEMBERED_USERS = 1_000
#: Users put into a long block for the 429 path: few, so each is hammered many times a second.
BLOCKED_USERS = 50


@dataclass(frozen=True)
class Load:
    """wrk's side of a run: the same for every scenario and system."""

    threads: int
    connections: int
    duration: int
    #: Seconds of the same traffic before each recorded run, not recorded (0: none).
    warmup: int
    #: Verify runs: each connection waits this many ms after an answer before its next request (0: no wait, as
    #: fast as the server answers). The user-count pair runs at a set pace.
    delay_ms: int = 0


@dataclass(frozen=True)
class Config:
    """One nidan server: backend, workers, how many users the database holds and which of them the traffic uses."""

    backend: str  # "sqlite" or "postgresql"
    workers: int
    users: int
    scenarios: tuple[str, ...]
    #: postgresql: the server's URL; a fresh database is created next to its database and dropped after.
    database_url: str | None = None
    #: Users the traffic may use, a random sample of the seeded ones (None: all of them).
    sample: int | None = None
    #: Start each valid-code run just after a time step begins: for its first 25 s every user then has three
    #: usable codes (steps s-1, s, s+1), so few users can carry a whole run (the 1 k users run).
    align: bool = False
    label: str = ""


@dataclass
class ConfigResult:
    runs: list[dict[str, Any]]
    seed_seconds: float
    database_version: str
    failures: list[str] = field(default_factory=list)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000, help="users seeded with TOTP (default 100000)")
    parser.add_argument("--workers", type=int, default=1, help="nidan serve --workers (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2; sign-ins: one per connection)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per scenario (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each scenario (default 2)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server's URL (e.g. postgresql+psycopg://root@127.0.0.1:5432/test): a fresh database "
        "nidan_bench_<random> is created next to it for the run and dropped after; default: SQLite",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, in order, from {', '.join(SCENARIOS)} (default all)",
    )
    return parser.parse_args()


def parse_scenarios(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names or any(n not in LABELS for n in names):
        raise ValueError(f"scenarios: choose from {', '.join(SCENARIOS)}")
    return names


@contextmanager
def database(url: str | None) -> Iterator[str | None]:
    """None for SQLite (in the data directory); else a fresh PostgreSQL database, dropped afterwards."""
    if url is None:
        yield None
        return
    admin = create_engine(make_url(url), isolation_level="AUTOCOMMIT")
    name = f"nidan_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def database_version(url: str | None) -> str:
    if url is None:
        return f"SQLite {sqlite3.sqlite_version}"
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT version()")).scalar_one())
    finally:
        engine.dispose()


def command_output(command: list[str]) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed commands (git, wrk)
            command, capture_output=True, text=True, timeout=20, check=False, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip() or "unknown"


def cores() -> int:
    """CPUs this process may run on (what the server and wrk share)."""
    return len(os.sched_getaffinity(0))


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = command_output(["git", "rev-parse", "--short", "HEAD"])
    dirty = command_output(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "host": socket.gethostname(),
        "cpu": model,
        "cores": cores(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": command_output(["wrk", "--version"]).splitlines()[0].split(" Copyright")[0],
        "sqlite": sqlite3.sqlite_version,
        "nidan_commit": commit + ("+dirty" if dirty and dirty != "unknown" else ""),
    }


def exit_on_sigterm() -> None:
    """SIGTERM (bench/run's time limit) unwinds like Ctrl-C, so the servers, which run in sessions of their own,
    are stopped and the PostgreSQL databases dropped on the way out."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def clear_nidan_environment() -> None:
    """The seeding runtime reads settings from the environment too: nidan's defaults, whatever the shell has."""
    for name in list(os.environ):
        if name.startswith("NIDAN_"):
            del os.environ[name]


def server_overrides(connections: int, scenarios: tuple[str, ...] | list[str] = ()) -> dict[str, str]:
    """nidan settings the bench changes, and only when the load needs it: every login first counts a provisional
    failure for its address (all of wrk's are 127.0.0.1) until its password is checked, so more concurrent
    sign-ins than the address tolerates (20 by default) would be refused with 429 for that alone. Remembering a
    browser is off by default (``policy.remember_device_days`` 0): the remembered-device scenario turns it on (the
    hot paths of the other scenarios do not read it)."""
    overrides: dict[str, str] = {}
    if "remembered" in scenarios:
        overrides["NIDAN_POLICY_REMEMBER_DEVICE_DAYS"] = str(REMEMBER_DEVICE_DAYS)
    tolerated = RateLimitSettings.model_fields["ip_tolerated_failures"].default
    if connections > tolerated:
        overrides["NIDAN_RATE_LIMIT_IP_TOLERATED_FAILURES"] = str(2 * connections)
    return overrides


def server_env(data_dir: Path, database_url: str | None, overrides: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_")}
    env.update(NIDAN_DATA_DIR=str(data_dir), NIDAN_CONFIG=str(WORK / "no-such-nidan.toml"), PYTHONUNBUFFERED="1")
    env.update(overrides)
    if database_url is not None:
        env["NIDAN_DATABASE_URL"] = database_url
    return env


# --- the users each scenario sends ----------------------------------------------------------------------------


def partition(keys: Mapping[str, bytes], scenarios: tuple[str, ...]) -> dict[str, dict[str, bytes]]:
    """Disjoint sets of users for the scenarios that need their own: ``REMEMBERED_USERS`` (at most a fifth) for
    the remembered-device sign-in, the rest by ``SHARES`` (``keys`` is in random order)."""
    wanted = [s for s in scenarios if s in SHARES]
    total = sum(SHARES[s] for s in wanted)
    items = list(keys.items())
    slices: dict[str, dict[str, bytes]] = {}
    if "remembered" in scenarios:
        count = min(REMEMBERED_USERS, len(items) // 5) if wanted else len(items)
        slices["remembered"], items = dict(items[:count]), items[count:]
    start = 0
    for i, name in enumerate(wanted):
        end = len(items) if i == len(wanted) - 1 else start + len(items) * SHARES[name] // total
        slices[name] = dict(items[start:end])
        start = end
    return slices


def warmup_split(users: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(warm-up users, recorded users): the warm-up spends codes and counts failures of its own users only."""
    count = min(200, max(20, len(users) // 20))
    items = list(users.items())
    return dict(items[:count]), dict(items[count:])


def write_input(
    name: str,
    path: Path,
    users: Mapping[str, bytes],
    blocked: list[str],
    duration: int,
    tokens: Mapping[str, str] | None = None,
) -> Path:
    """The wrk script's input file for scenario ``name`` (remembered: each user's device token from ``tokens``)."""
    if name in ("valid", "signin"):
        write_valid_codes(path, dict(users), duration)
    elif name == "remembered":
        if tokens is None:
            raise ValueError("the remembered-device scenario needs the users' device tokens")
        write_device_tokens(path, {user: tokens[user] for user in users})
    elif name == "wrong":
        write_wrong_codes(path, dict(users), duration)
    else:  # blocked: any code; the block answers before the code is looked at
        path.write_text("".join(f"{user} {n % 1_000_000:06d}\n" for n, user in enumerate(blocked)))
    return path


# --- one scenario ---------------------------------------------------------------------------------------------


def wrk_run(
    name: str, server: NidanServer, bodies: Path, api_key: str, load: Load, duration: int, log: Path
) -> WrkResult:
    script, threads = SCRIPT, load.threads
    env: dict[str, str] | None = {"BENCH_DELAY_MS": str(load.delay_ms)} if load.delay_ms else None
    if name == "blocked":
        script = BLOCKED_SCRIPT
    elif name == "signin":
        # One connection per wrk thread (Lua state), so each state chains its own login -> mfa -> login.
        script, threads, env = SIGNIN_SCRIPT, load.connections, {"BENCH_PASSWORD": PASSWORD}
    elif name == "remembered":
        # One connection per wrk thread too: each state owns its users and sends each the token its last answer gave.
        script, threads, env = REMEMBERED_SCRIPT, load.connections, {"BENCH_PASSWORD": PASSWORD}
    return run_wrk(
        url=server.url,
        mode=name,
        bodies=bodies,
        api_key=api_key,
        threads=threads,
        connections=load.connections,
        duration=duration,
        log=log,
        script=script,
        extra_env=env,
    )


def wait_for_step(lead: float) -> None:
    """Sleep until ``lead`` seconds before a time step begins (plus 0.3 s, so that it has begun by then)."""
    now = time.time()
    start = (now // PERIOD + 1) * PERIOD + 0.3 - lead
    while start < now:
        start += PERIOD
    time.sleep(start - now)


def sleep_into_step() -> None:
    """After an aligned warm-up that ended just before a step boundary, wait for the boundary."""
    into = time.time() % PERIOD
    if into > PERIOD - 5:
        time.sleep(PERIOD - into + 0.3)


def scenario(
    name: str,
    server: NidanServer,
    users: dict[str, bytes],
    blocked: list[str],
    api_key: str,
    load: Load,
    run_dir: Path,
    *,
    align: bool = False,
    tokens: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A warm-up, then the recorded wrk run of scenario ``name``, with the server's CPU time around it.
    ``tokens``: the remembered-device scenario's device tokens by user (each is sent by one run only: the token
    a run's last unanswered request carried may have rotated)."""
    if name == "blocked":
        warm, sampled = blocked, len(blocked)
        warm_bodies = bodies = write_input(name, run_dir / f"{name}.bodies", {}, blocked, load.duration)
    else:
        warm_users, measured_users = warmup_split(users)
        warm, sampled = list(warm_users), len(measured_users)
        bodies = write_input(name, run_dir / f"{name}.bodies", measured_users, [], load.duration, tokens)
        warm_bodies = write_input(name, run_dir / f"{name}.warmup.bodies", warm_users, [], load.warmup, tokens)
    aligned = align and name in ("valid", "signin")
    if aligned:
        wait_for_step(load.warmup + 0.5)
    warmup: dict[str, Any] = {"seconds": load.warmup, "users": len(warm)}
    if load.warmup:
        log = run_dir / f"{name}.warmup.wrk.log"
        warm_result = wrk_run(name, server, warm_bodies, api_key, load, load.warmup, log)
        # Running out of codes is expected here (few users); each such request's /healthz answer also counts as
        # an error in verify.lua, so only the errors beyond those are wrong answers.
        verify = name not in SIGNIN_SCENARIOS
        wrong = max(0, warm_result.errors - warm_result.exhausted) if verify else warm_result.errors
        warmup.update(requests=warm_result.requests, errors=wrong, exhausted=warm_result.exhausted)
    if aligned:
        sleep_into_step()
    on_postgres = "NIDAN_DATABASE_URL" in server.env
    cpu_before, database_before = server.cpu_seconds(), postgres_cpu_seconds() if on_postgres else 0.0
    log = run_dir / f"{name}.wrk.log"
    result = wrk_run(name, server, bodies, api_key, load, load.duration, log)
    cpu = server.cpu_seconds() - cpu_before
    recorded = record_of(name, result, cpu)
    if on_postgres and result.requests:
        database = postgres_cpu_seconds() - database_before
        recorded["database_cpu_ms_per_request"] = round(1000 * database / result.requests, 3)
    if warmup.get("errors"):
        recorded["failures"].append(f"warm-up: {warmup['errors']} wrong answers")
    recorded.update(
        users_sampled=sampled, warmup=warmup, wrk_threads=threads_of(name, load), connections=load.connections
    )
    if load.delay_ms:
        recorded["delay_ms"] = load.delay_ms
    if name in SIGNIN_SCENARIOS:
        recorded.update(
            signins=result.signins,
            logins=result.logins,
            signins_per_s=round(result.signins / result.duration_s, 1) if result.duration_s else 0.0,
        )
    if aligned:
        recorded["aligned_to_time_step"] = True
    return recorded


def threads_of(name: str, load: Load) -> int:
    return load.connections if name in SIGNIN_SCENARIOS else load.threads


# --- one configuration ----------------------------------------------------------------------------------------


def say(message: str) -> None:
    print(message, flush=True)


#: Why ``server_overrides`` changes a setting, as the run says it.
OVERRIDE_REASONS = {
    "NIDAN_RATE_LIMIT_IP_TOLERATED_FAILURES": "more concurrent sign-ins from one address than it tolerates",
    "NIDAN_POLICY_REMEMBER_DEVICE_DAYS": "browsers may be remembered (the remembered-device scenario)",
}


def remembered_devices(data_dir: Path, url: str | None, users: Mapping[str, bytes]) -> dict[str, str]:
    """A remembered device for each of ``users`` (the remembered-device scenario's), seeded in process: their
    first tokens by user (none: no such scenario)."""
    if not users:
        return {}
    say(f"==> remembering a device for {len(users):,} users")
    started = time.monotonic()
    tokens = remember_devices(data_dir, url, users)
    say(f"    {time.monotonic() - started:.1f} s")
    return tokens


def run_config(config: Config, load: Load, run_dir: Path) -> ConfigResult:
    """Seed a fresh database, start nidan on it, run the configuration's scenarios; the server is always stopped
    and a PostgreSQL database always dropped."""
    run_dir.mkdir(parents=True, exist_ok=True)
    blocked = BLOCKED_USERS if "blocked" in config.scenarios else 0
    with database(config.database_url if config.backend == "postgresql" else None) as url:
        version = database_version(url)
        sampled = f", {config.sample} sampled" if config.sample is not None else ""
        say(f"==> seeding {config.users} users{sampled} ({config.backend}) in {run_dir / 'data'}")
        seeded = seed(run_dir / "data", url, config.users, sample=config.sample, blocked=blocked)
        say(f"    {seeded.seconds:.1f} s")
        slices = partition(seeded.keys, config.scenarios)
        result = ConfigResult(runs=[], seed_seconds=round(seeded.seconds, 1), database_version=version)
        tokens = remembered_devices(run_dir / "data", url, slices.get("remembered", {}))
        overrides = server_overrides(load.connections, config.scenarios)
        for name, value in overrides.items():
            say(f"==> {name}={value} for the server: {OVERRIDE_REASONS.get(name, '')}")
        with NidanServer(server_env(run_dir / "data", url, overrides), config.workers, run_dir) as server:
            server.wait_until_healthy()
            say(f"==> nidan serve on {server.url}, {config.workers} worker(s); log {server.log_path}")
            for name in config.scenarios:
                say(f"==> {config.backend}, {config.workers} worker(s): {LABELS[name]}, {load.duration} s")
                measured = scenario(
                    name,
                    server,
                    slices.get(name, {}),
                    seeded.blocked,
                    seeded.api_key,
                    load,
                    run_dir,
                    align=config.align,
                    tokens=tokens,
                )
                measured["server_overrides"] = overrides
                result.runs.append(run_record(config, seeded.users, result, measured, server.peak_rss()))
                say("    " + one_line(result.runs[-1]))
                time.sleep(1)  # the last connections close before the next run
    return result


def run_record(
    config: Config, users: int, result: ConfigResult, measured: dict[str, Any], rss: list[float]
) -> dict[str, Any]:
    """A run as the report lists it (the matrix's schema)."""
    return {
        "system": "nidan",
        "backend": config.backend,
        "workers": config.workers,
        "users": users,
        **measured,
        "peak_rss_mib_per_worker": [round(x, 1) for x in rss],
        "seed_seconds": result.seed_seconds,
        "database": result.database_version,
        **({"label": config.label} if config.label else {}),
    }


def one_line(run: dict[str, Any]) -> str:
    line = f"{run['rps']:.0f} req/s, p50 {run['latency_ms']['p50']:.1f} ms, p99 {run['latency_ms']['p99']:.1f} ms"
    if "signins_per_s" in run:
        line += f", {run['signins_per_s']:.1f} sign-ins/s"
    if run["failures"]:
        line += "  FAILED: " + "; ".join(run["failures"])
    return line


# --- the table ------------------------------------------------------------------------------------------------


def errors_total(run: dict[str, Any]) -> int:
    return int(run["errors"] + run["exhausted"] + sum(run["socket_errors"].values()))


def runs_table(runs: list[dict[str, Any]]) -> str:
    """Markdown: one row per run, any system."""
    lines = [
        "| system | backend | workers | users | scenario | req/s | sign-ins/s | p50 ms | p90 ms | p99 ms | errors "
        "| 429 | CPU ms/req | peak RSS MiB/worker |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lat = run["latency_ms"]
        rss = " / ".join(f"{x:.0f}" for x in run.get("peak_rss_mib_per_worker", [])) or "?"
        users = f"{run.get('users', '?'):,}" if isinstance(run.get("users"), int) else "?"
        if run.get("users_sampled") not in (None, run.get("users")):
            users += f" ({run['users_sampled']:,} sent)"
        signins = f"{run['signins_per_s']:.1f}" if "signins_per_s" in run else ""
        cpu = run.get("cpu_ms_per_request")
        scenario = LABELS.get(run["scenario"], run["scenario"])
        lines.append(
            f"| {run['system']} | {run['backend']} | {run['workers']} | {users} | {scenario} "
            f"| {run['rps']:.0f} | {signins} | {lat['p50']:.1f} | {lat['p90']:.1f} | {lat['p99']:.1f} "
            f"| {errors_total(run)} | {run.get('throttled_429', 0)} | {'' if cpu is None else f'{cpu:.2f}'} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def print_failures(runs: list[dict[str, Any]]) -> bool:
    """Prints every run's failures to stderr; True when there was one."""
    failed = False
    for run in runs:
        for failure in run["failures"]:
            failed = True
            where = f"{run['system']} {run['backend']} {run['workers']}w {LABELS.get(run['scenario'], run['scenario'])}"
            print(f"FAILED {where}: {failure}", file=sys.stderr)
        for sample in run.get("error_samples", [])[:5]:
            print(f"    status, body: {sample}", file=sys.stderr)
    return failed


def main() -> int:
    args = arguments()
    try:
        names = parse_scenarios(args.scenarios)
    except ValueError as exc:
        print(f"--{exc}", file=sys.stderr)
        return 2
    exit_on_sigterm()
    clear_nidan_environment()
    started = datetime.now(UTC)
    run_dir = WORK / f"run-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    backend = "postgresql" if args.database_url else "sqlite"
    config = Config(backend, args.workers, args.users, names, database_url=args.database_url)
    load = Load(args.threads, args.connections, args.duration, args.warmup)
    result = run_config(config, load, run_dir)
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": {**machine(), "database": result.database_version},
        "parameters": {
            **vars(args),
            "database_url": args.database_url and make_url(args.database_url).render_as_string(hide_password=True),
            "server_overrides": server_overrides(args.connections, names),
            "argon2": "nidan defaults",
        },
        "runs": result.runs,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    table = runs_table(result.runs)
    (run_dir / "report.md").write_text(table)
    print()
    print(table)
    print(f"written: {run_dir / 'report.json'}, {run_dir / 'report.md'}")
    return 1 if print_failures(result.runs) else 0


if __name__ == "__main__":
    sys.exit(main())
