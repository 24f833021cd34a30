"""nidan's verify API under wrk: seed users in bulk, start ``nidan serve``, run the scenarios, write the results.

Run through ``bench/run`` (it installs wrk and uses nidan's venv). Everything scratch goes to ``bench/.work/``;
results to ``bench/results/<UTC date>-<host>-<backend>-<K>w.{json,md}``. Exits non-zero when a scenario saw a
wrong answer, a socket error, or ran out of usable codes (too few ``--users`` for the throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadgen import WrkResult, run_wrk, write_valid_codes, write_wrong_codes
from seeding import seed
from serving import NidanServer
from sqlalchemy import create_engine, make_url, text

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"
RESULTS = BENCH / "results"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000, help="users seeded with TOTP (default 20000)")
    parser.add_argument("--workers", type=int, default=1, help="nidan serve --workers (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--duration", type=int, default=20, help="seconds per scenario (default 20)")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server's URL (e.g. postgresql+psycopg://root@127.0.0.1:5432/test): a fresh database "
        "nidan_bench_<random> is created next to it for the run and dropped after; default: SQLite",
    )
    parser.add_argument(
        "--scenarios", default="valid,wrong", help="comma-separated, in order: valid, wrong (default both)"
    )
    return parser.parse_args()


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


def command_output(command: list[str]) -> str:
    try:
        done = subprocess.run(  # noqa: S603 - fixed commands (git, wrk)
            command, capture_output=True, text=True, timeout=20, check=False, cwd=REPO
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (done.stdout or done.stderr).strip() or "unknown"


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
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": command_output(["wrk", "--version"]).splitlines()[0],
        "nidan_commit": commit + ("+dirty" if dirty and dirty != "unknown" else ""),
    }


def server_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_")}
    env.update(NIDAN_DATA_DIR=str(data_dir), NIDAN_CONFIG=str(WORK / "no-such-nidan.toml"), PYTHONUNBUFFERED="1")
    if database_url is not None:
        env["NIDAN_DATABASE_URL"] = database_url
    return env


def scenario(
    name: str, server: NidanServer, keys: dict[str, bytes], api_key: str, args: argparse.Namespace, run_dir: Path
) -> dict[str, Any]:
    bodies = run_dir / f"{name}.bodies"
    if name == "valid":
        write_valid_codes(bodies, keys, args.duration)
    else:
        write_wrong_codes(bodies, keys, args.duration)
    cpu_before = server.cpu_seconds()
    result: WrkResult = run_wrk(
        url=server.url,
        mode=name,
        bodies=bodies,
        api_key=api_key,
        threads=args.threads,
        connections=args.connections,
        duration=args.duration,
        log=run_dir / f"{name}.wrk.log",
    )
    cpu = server.cpu_seconds() - cpu_before
    failures = []
    if result.errors:
        failures.append(f"{result.errors} wrong answers")
    if result.exhausted:
        failures.append(f"ran out of usable codes {result.exhausted} times (raise --users)")
    if any(result.socket_errors.values()):
        failures.append(f"socket errors {result.socket_errors}")
    return {
        "scenario": name,
        "requests": result.requests,
        "duration_s": round(result.duration_s, 3),
        "rps": round(result.rps, 1),
        "latency_ms": {k: round(v, 3) for k, v in result.latency_ms.items()},
        "ok": result.ok,
        "rejected": result.rejected,
        "throttled_429": result.throttled,
        "errors": result.errors,
        "exhausted": result.exhausted,
        "socket_errors": result.socket_errors,
        "server_cpu_s": round(cpu, 2),
        "cpu_ms_per_request": round(1000 * cpu / result.requests, 3) if result.requests else None,
        "error_samples": result.samples,
        "failures": failures,
    }


LABELS = {"valid": "verify, valid codes", "wrong": "verify, wrong codes"}


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["parameters"]
    lines = [
        f"nidan {m['nidan_commit']} on {m['host']} ({m['cpu']}, {m['cores']} cores, Linux {m['kernel']}), "
        f"{report['started_at']}: {p['backend']}, {p['workers']} worker(s), {p['users']} users, "
        f"wrk {p['threads']} threads / {p['connections']} connections / {p['duration_s']} s",
        "",
        "| scenario | backend | workers | req/s | p50 ms | p90 ms | p99 ms | errors | 429 | CPU ms/req | "
        "peak RSS MiB/worker |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rss = " / ".join(f"{x:.0f}" for x in report["peak_rss_mib_per_worker"]) or "?"
    for s in report["scenarios"]:
        lat = s["latency_ms"]
        errors = s["errors"] + s["exhausted"] + sum(s["socket_errors"].values())
        lines.append(
            f"| {LABELS[s['scenario']]} | {p['backend']} | {p['workers']} | {s['rps']:.0f} | {lat['p50']:.1f} | "
            f"{lat['p90']:.1f} | {lat['p99']:.1f} | {errors} | {s['throttled_429']} | "
            f"{s['cpu_ms_per_request']} | {rss} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    args = arguments()
    if shutil.which("wrk") is None:
        print("wrk is not installed (bench/run installs it)", file=sys.stderr)
        return 2
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    if not names or any(n not in LABELS for n in names):
        print(f"--scenarios: choose from {', '.join(LABELS)}", file=sys.stderr)
        return 2
    for name in list(os.environ):
        if name.startswith("NIDAN_"):  # the seeding runtime reads settings from the environment too
            del os.environ[name]
    started = datetime.now(UTC)
    run_dir = WORK / f"run-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    backend = "postgresql" if args.database_url else "sqlite"
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {
            "backend": backend,
            "users": args.users,
            "workers": args.workers,
            "connections": args.connections,
            "threads": args.threads,
            "duration_s": args.duration,
            "argon2": "nidan defaults",
        },
    }
    with database(args.database_url) as database_url:
        if database_url is not None:
            engine = create_engine(database_url)
            with engine.connect() as connection:
                report["machine"]["database"] = connection.execute(text("SELECT version()")).scalar_one()
            engine.dispose()
        data_dir = run_dir / "data"
        print(f"==> seeding {args.users} users ({backend}) in {data_dir}", flush=True)
        seeded = seed(data_dir, database_url, args.users)
        report["seed_seconds"] = round(seeded.seconds, 1)
        print(f"    {seeded.seconds:.1f} s", flush=True)
        results = []
        with NidanServer(server_env(data_dir, database_url), args.workers, run_dir) as server:
            server.wait_until_healthy()
            print(f"==> nidan serve on {server.url}, {args.workers} worker(s); log {server.log_path}", flush=True)
            for name in names:
                print(f"==> {LABELS[name]}: {args.duration} s", flush=True)
                results.append(scenario(name, server, seeded.keys, seeded.api_key, args, run_dir))
                last = results[-1]
                print(f"    {last['rps']:.0f} req/s, p99 {last['latency_ms']['p99']:.1f} ms", flush=True)
                time.sleep(1)
            report["peak_rss_mib_per_worker"] = [round(x, 1) for x in server.peak_rss()]
        report["scenarios"] = results
    RESULTS.mkdir(exist_ok=True)
    stem = f"{started:%Y-%m-%d}-{socket.gethostname()}-{backend}-{args.workers}w"
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (RESULTS / f"{stem}.md").write_text(table)
    print()
    print(table)
    print(f"written: bench/results/{stem}.json, bench/results/{stem}.md")
    failed = False
    for s in results:
        for failure in s["failures"]:
            failed = True
            print(f"FAILED {LABELS[s['scenario']]}: {failure}", file=sys.stderr)
        for sample in s["error_samples"]:
            print(f"    status, body: {sample}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
