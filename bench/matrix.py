"""The whole benchmark in one command: nidan's matrix, the peer, the ceilings, the targets, the table and the plots.

nidan on SQLite and PostgreSQL x 1 and 2 workers x the scenarios (valid codes, wrong codes, blocked users, full
sign-in, sign-in on a remembered device); the same valid-code run on 1 k and on 1 M users (SQLite, 1 worker);
privacyIDEA (2 workers, valid and wrong codes) and the two ceilings (a bare Starlette endpoint, a minimal TOTP
check) under the same wrk load; the argon2 bound (cores / nidan's measured hash time). Writes ONE
``bench/results/<UTC date>-<host>.json``, the same stem's ``.md``, the plots in ``bench/results/<stem>/``, and the
README's "Latest results" section (``--quick`` writes into its scratch directory instead and leaves the README
alone). Exits non-zero when any run had an error (after writing everything); a missed target is a finding,
printed, not a failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nidan_bench as nb
from seeding import KEY_BYTES, PASSWORD, username
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError

from nidan.bootstrap import build_runtime
from nidan.config import Settings

BENCH = nb.BENCH
RESULTS = BENCH / "results"
README = BENCH / "README.md"
SYSTEMS = ("nidan", "privacyidea", "ceilings")
DEFAULT_POSTGRESQL = "postgresql+psycopg://root@127.0.0.1:5432/test"
#: The small side of the user-count pair; the large side sends to a random sample of the same size.
SMALL_USERS = 1_000
#: A run aligned to a time step must end before its second 25, when the codes of step s-1 stop being sent.
ALIGNED_MAX_SECONDS = 24
#: Share of the aligned run's codes (3 per recorded user) the paced pair plans to send (wrk's pace is approximate:
#: the answer's own time comes on top of each connection's wait, so the run sends a little less).
PACED_CODE_SHARE = 0.85
#: Share of the time a run's codes lasted that the next attempt runs for.
CODE_MARGIN_RETRY = 0.8
PAIR_ATTEMPTS = 3
#: The pair is run this many times, the sides alternating; the target compares each side's median p99.
PAIR_ROUNDS = 3
PEER_WORKERS = 2
ARGON2_SAMPLES = 30
README_START = "<!-- latest-results:start -->"
README_END = "<!-- latest-results:end -->"
#: How the user-count runs are marked in the report (the plots find them by it).
USER_COUNT_LABEL = "user-count"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s per scenario, 20000 users, 50 k large")
    parser.add_argument("--duration", type=int, help="seconds per recorded run (default 20; --quick 5)")
    parser.add_argument("--warmup", type=int, help="seconds of warm-up before each run (default 2; --quick 1)")
    parser.add_argument(
        "--users", type=int, help="users seeded per nidan configuration (default 100000; --quick 20000)"
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2; sign-ins: one per connection)")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_POSTGRESQL,
        help=f"PostgreSQL server for the postgresql runs; a fresh database is created and dropped next to its "
        f"database (default {DEFAULT_POSTGRESQL})",
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="from nidan,privacyidea,ceilings (default all)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="nidan's backends (default both)")
    parser.add_argument("--workers", default="1,2", help="nidan's worker counts (default 1,2)")
    parser.add_argument("--scenarios", default=",".join(nb.SCENARIOS), help="nidan's scenarios (default all)")
    parser.add_argument(
        "--million-users",
        type=int,
        help="the large side of the 1 k vs 1 M pair (default 1000000; --quick 50000; 0 skips the pair)",
    )
    parser.add_argument("--skip-plots", action="store_true", help="no PNGs (bench/plots.py not run)")
    parser.add_argument(
        "--name",
        help="a part of the matrix, kept apart: results go to bench/results/<date>-<host>-NAME.{json,md} and the "
        "README's latest results are left alone",
    )
    args = parser.parse_args()
    quick = args.quick
    args.duration = args.duration or (5 if quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    args.users = args.users or (20_000 if quick else 100_000)
    if args.million_users is None:
        args.million_users = 50_000 if quick else 1_000_000
    return args


def split(value: str, allowed: tuple[str, ...] | None = None) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if allowed is not None and (not items or any(v not in allowed for v in items)):
        raise ValueError(f"choose from {', '.join(allowed)}, got {value!r}")
    return items


def say(message: str) -> None:
    print(message, flush=True)


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def postgresql_problem(url: str) -> str | None:
    """Why the PostgreSQL server cannot be used (None: it answers)."""
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError) as exc:
        return str(exc).splitlines()[0]
    return None


# --- the argon2 bound -----------------------------------------------------------------------------------------


def measure_argon2(work_dir: Path) -> dict[str, Any]:
    """nidan's own password verify (its default parameters, ``ctx.passwords``), timed in this process on a quiet
    machine: the median of ARGON2_SAMPLES. The bound: one verify per sign-in, every core hashing all the time.

    Also measured: how many verifies a second the machine does with one thread per core hashing at once (nidan's
    own hashing pool), which is the bound as a sign-in run meets it: cores that hash together share the memory
    bus and the cache, and each hash takes longer than alone. Reported beside the bound; the target uses the
    bound from the quiet single hash, the stricter of the two."""
    runtime = build_runtime(Settings(data_dir=work_dir / "argon2-data"))
    try:
        passwords = runtime.services.passwords
        stored = passwords.hash(PASSWORD)
        timings = []
        for _ in range(ARGON2_SAMPLES):
            started = time.perf_counter()
            if not passwords.verify(stored, PASSWORD):
                raise RuntimeError("nidan's password hashing refused its own hash")
            timings.append(time.perf_counter() - started)
        all_cores_per_s = _hashes_per_second_on_every_core(lambda: passwords.verify(stored, PASSWORD))
        security = runtime.settings.security
    finally:
        runtime.engine.dispose()
    hash_s = statistics.median(timings)
    cores = nb.cores()
    return {
        "hash_ms": round(hash_s * 1000, 2),
        "cores": cores,
        "bound_per_s": round(cores / hash_s, 1),
        "all_cores_per_s": round(all_cores_per_s, 1),
        "samples": ARGON2_SAMPLES,
        "min_ms": round(min(timings) * 1000, 2),
        "max_ms": round(max(timings) * 1000, 2),
        "parameters": {
            "memory_kib": security.argon2_memory_kib,
            "time_cost": security.argon2_time_cost,
            "parallelism": security.argon2_parallelism,
        },
    }


def _hashes_per_second_on_every_core(verify: Callable[[], bool]) -> float:
    """``verify`` run by one thread per core at once (``ARGON2_SAMPLES`` each); the calls go through nidan's own
    hashing pool, whose threads release the GIL while argon2 runs."""
    import threading

    def hash_repeatedly() -> None:
        for _ in range(ARGON2_SAMPLES):
            verify()

    threads = [threading.Thread(target=hash_repeatedly) for _ in range(nb.cores())]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(threads) * ARGON2_SAMPLES / (time.perf_counter() - started)


# --- the systems ----------------------------------------------------------------------------------------------


@dataclass
class Collected:
    runs: list[dict[str, Any]]
    #: Whole systems that could not run (an exception), as sentences.
    failures: list[str]
    database_versions: dict[str, str]
    #: The user-count pair's attempts: duration, and whether a side ran out of codes.
    pair_attempts: list[dict[str, Any]] = field(default_factory=list)


def guarded(what: str, collected: Collected, step: Callable[[], list[dict[str, Any]]]) -> None:
    """Run one part of the matrix; an exception is recorded and the rest goes on (the command fails at the end)."""
    try:
        collected.runs.extend(step())
    except Exception as exc:  # one broken system must not cost the others' results
        detail = "".join(traceback.format_exception_only(exc)).strip()
        collected.failures.append(f"{what}: {detail}")
        print(f"FAILED {what}:\n{traceback.format_exc()}", file=sys.stderr)


def nidan_configs(args: argparse.Namespace, load: nb.Load, run_dir: Path, collected: Collected) -> None:
    scenarios = nb.parse_scenarios(args.scenarios)
    for backend in split(args.backends, ("sqlite", "postgresql")):
        for workers in (int(w) for w in split(args.workers)):
            config = nb.Config(backend, workers, args.users, scenarios, database_url=args.database_url)

            def step(config: nb.Config = config) -> list[dict[str, Any]]:
                result = nb.run_config(config, load, run_dir / f"nidan-{config.backend}-{config.workers}w")
                collected.database_versions[config.backend] = result.database_version
                return result.runs

            guarded(f"nidan {backend} {workers} worker(s)", collected, step)


def pair_pace(args: argparse.Namespace, connections: int) -> tuple[int, int]:
    """(seconds, delay_ms) of the user-count pair's runs: ``--duration`` (at most ``ALIGNED_MAX_SECONDS``) at a set
    pace that the small side's codes carry with a margin (aligned to a step, each of its 950 recorded users has 3
    codes: at 16 connections over 20 s, about 120 requests a second, each connection waiting 130 ms after an answer).

    A set pace, not as fast as the server answers: at full speed 1,000 users' codes last about a second, and the p99
    of a one-second run is its 15th-slowest answer, which one pause of a shared machine moves by tens of percent. At
    a set pace both sides answer the same ~2,400 requests over the whole run, and the p99 is how long a request
    takes at either size, not how long the queue in front of it was."""
    recorded = SMALL_USERS - len(nb.warmup_split({username(i): b"" for i in range(SMALL_USERS)})[0])
    seconds = max(1, min(int(args.duration), ALIGNED_MAX_SECONDS))
    rate = PACED_CODE_SHARE * 3 * recorded / seconds
    return seconds, math.ceil(1000 * connections / rate)


def ran_out(run: dict[str, Any]) -> bool:
    return bool(run.get("exhausted"))


def shorter(duration: int, run: dict[str, Any]) -> int:
    """A duration the run's codes would have lasted. Once they ran out, /healthz answered the rest, faster than a
    verify, so ok ÷ requests of the run's time is at most the time the codes lasted: a safe estimate."""
    lasted = duration * run["ok"] / max(1, run["requests"])
    return max(1, min(duration - 1, int(CODE_MARGIN_RETRY * lasted)))


def user_count_pair(
    args: argparse.Namespace, load: nb.Load, run_dir: Path, collected: Collected
) -> list[dict[str, Any]]:
    """``PAIR_ROUNDS`` rounds of the pair, each on fresh databases, the sides alternating; each run is marked with
    its round."""
    duration, delay_ms = pair_pace(args, load.connections)
    paced = nb.Load(load.threads, load.connections, duration, load.warmup, delay_ms=delay_ms)
    runs: list[dict[str, Any]] = []
    for number in range(1, PAIR_ROUNDS + 1):
        say(f"==> user-count pair, round {number} of {PAIR_ROUNDS}")
        pair = user_count_round(args, paced, run_dir / f"round-{number}", collected, duration)
        runs += [{**run, "round": number} for run in pair]
        duration = min(duration, int(pair[0]["duration_s"])) if pair else duration
    return runs


def user_count_round(
    args: argparse.Namespace, load: nb.Load, run_dir: Path, collected: Collected, duration: int
) -> list[dict[str, Any]]:
    """Both sides with one duration at ``load``'s pace; when a side runs out of codes all the same (the pace is
    approximate), both are run again, shorter, on fresh databases. Attempts are recorded."""
    runs: list[dict[str, Any]] = []
    for attempt in range(1, PAIR_ATTEMPTS + 1):
        say(
            f"==> user-count pair: {SMALL_USERS} vs {args.million_users} users, {duration} s each, aligned to a step, "
            f"each connection waiting {load.delay_ms} ms after an answer"
        )
        attempt_load = nb.Load(load.threads, load.connections, duration, load.warmup, delay_ms=load.delay_ms)
        runs = pair_attempt(args, attempt_load, run_dir, attempt)
        short = next((r for r in runs if ran_out(r)), None)
        collected.pair_attempts.append({"duration_s": duration, "ran_out": short is not None})
        if short is None or duration == 1 or attempt == PAIR_ATTEMPTS:
            break
        duration = shorter(duration, short)
        say(f"    ran out of codes ({short['users']:,} users): again, {duration} s each")
    return runs


def pair_attempt(args: argparse.Namespace, load: nb.Load, run_dir: Path, attempt: int) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for users in (SMALL_USERS, args.million_users):
        config = nb.Config("sqlite", 1, users, ("valid",), sample=SMALL_USERS, align=True, label=USER_COUNT_LABEL)
        runs += nb.run_config(config, load, run_dir / f"nidan-users-{users}-{attempt}").runs
        if any(ran_out(r) for r in runs):
            break  # the large side would need the same shorter duration
    return runs


def random_keys(users: int) -> dict[str, bytes]:
    return {username(i): os.urandom(KEY_BYTES) for i in range(users)}


def peer(args: argparse.Namespace, load: nb.Load, run_dir: Path) -> list[dict[str, Any]]:
    from privacyidea import run_peer  # written alongside; absent until it is

    say(f"==> privacyIDEA, {PEER_WORKERS} workers: valid, wrong")
    result = run_peer(
        run_dir / "privacyidea",
        random_keys(args.users),
        workers=PEER_WORKERS,
        scenarios=["valid", "wrong"],
        threads=load.threads,
        connections=load.connections,
        duration=load.duration,
    )
    runs = []
    for measured in result["scenarios"]:
        runs.append(
            {
                "system": "privacyidea",
                "backend": result.get("backend", "sqlite"),
                "workers": result.get("workers", PEER_WORKERS),
                "users": measured.get("users", args.users),
                **measured,
                "peak_rss_mib_per_worker": result.get("peak_rss_mib_per_worker", []),
                "version": result.get("version"),
                "seed_seconds": result.get("seed_seconds"),
                "config": result.get("config"),
            }
        )
        say("    " + nb.one_line(runs[-1]))
    return runs


def ceilings(args: argparse.Namespace, load: nb.Load, run_dir: Path) -> list[dict[str, Any]]:
    from ceilings import run_ceilings  # written alongside; absent until it is

    say("==> ceilings: bare Starlette, minimal TOTP check")
    runs = run_ceilings(
        run_dir / "ceilings",
        random_keys(args.users),
        threads=load.threads,
        connections=load.connections,
        duration=load.duration,
    )
    for run in runs:
        say(f"    {run['system']} {run['scenario']}: " + nb.one_line(run))
    return runs


# --- targets --------------------------------------------------------------------------------------------------


def pick(runs: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    found = [r for r in runs if all(r.get(k) == v for k, v in match.items())]
    if "label" not in match:  # the user-count runs are a pair of their own, not the configuration's run
        found = [r for r in found if r.get("label") != USER_COUNT_LABEL]
    return found


def target(name: str, measured: float | None, required: float, at_least: bool, text: str) -> dict[str, Any]:
    met = None if measured is None else (measured >= required if at_least else measured <= required)
    return {
        "name": name,
        "measured": None if measured is None else round(measured, 3),
        "required": required,
        "comparison": ">=" if at_least else "<=",
        "met": met,
        "text": text,
    }


def not_measured(name: str, required: float, at_least: bool, what: str) -> dict[str, Any]:
    return target(name, None, required, at_least, f"not measured: {what}")


def peer_targets(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    peer_runs = pick(runs, system="privacyidea", scenario="valid")
    names = ("valid-vs-privacyidea-throughput", "valid-vs-privacyidea-p99")
    if not peer_runs:
        return [not_measured(names[0], 50, True, "no privacyIDEA run"), not_measured(names[1], 0.1, False, "idem")]
    theirs = peer_runs[0]
    ours_runs = pick(runs, system="nidan", backend="sqlite", scenario="valid")
    if not ours_runs:
        what = "no nidan SQLite valid-code run"
        return [not_measured(names[0], 50, True, what), not_measured(names[1], 0.1, False, what)]
    # Each at its best: privacyIDEA as its setup guide runs it (gunicorn, 2 workers), nidan on SQLite with the
    # worker count that answered more (the admin guide advises one: SQLite's writers in separate processes poll).
    ours = max(ours_runs, key=lambda r: r["rps"])
    speed = ours["rps"] / theirs["rps"] if theirs["rps"] else None
    p99 = ours["latency_ms"]["p99"] / theirs["latency_ms"]["p99"] if theirs["latency_ms"]["p99"] else None
    setting = (
        f"valid codes, SQLite, {ours.get('connections', '?')} connections, each at its best: nidan "
        f"{ours['workers']} worker(s), privacyIDEA {theirs['workers']} worker(s)"
    )
    others = [r for r in ours_runs if r is not ours]
    aside = "".join(
        f"; nidan with {r['workers']} worker(s): {r['rps']:.0f} req/s = {r['rps'] / theirs['rps']:.1f}x, p99 "
        f"{r['latency_ms']['p99']:.1f} ms"
        for r in others
        if theirs["rps"]
    )
    return [
        target(
            names[0],
            speed,
            50,
            True,
            f"{setting}: nidan {ours['rps']:.0f} req/s vs privacyIDEA {theirs['rps']:.1f} req/s = "
            f"{speed or 0:.1f}x (required >= 50x){aside}",
        ),
        target(
            names[1],
            p99,
            0.1,
            False,
            f"{setting}: nidan p99 {ours['latency_ms']['p99']:.1f} ms vs privacyIDEA "
            f"{theirs['latency_ms']['p99']:.1f} ms = {p99 or 0:.3f} of it (required <= 0.1){aside}",
        ),
    ]


def ceiling_target(runs: list[dict[str, Any]]) -> dict[str, Any]:
    name = "valid-vs-totp-ceiling"
    ceiling = pick(runs, system="totp-minimal", scenario="valid")
    ours = pick(runs, system="nidan", backend="sqlite", workers=1, scenario="valid")
    if not ceiling or not ours:
        return not_measured(name, 0.5, True, "no totp-minimal run" if not ceiling else "no nidan SQLite 1-worker run")
    share = ours[0]["rps"] / ceiling[0]["rps"] if ceiling[0]["rps"] else None
    return target(
        name,
        share,
        0.5,
        True,
        f"valid codes, SQLite, 1 worker: nidan {ours[0]['rps']:.0f} req/s vs the minimal TOTP check "
        f"{ceiling[0]['rps']:.0f} req/s = {100 * (share or 0):.0f} % (required >= 50 %)",
    )


def signin_target(runs: list[dict[str, Any]], argon2: dict[str, Any] | None) -> dict[str, Any]:
    name = "signin-vs-argon2-bound"
    signins = pick(runs, system="nidan", scenario="signin")
    if not signins or not argon2:
        return not_measured(name, 0.8, True, "no sign-in run")
    best = max(signins, key=lambda r: r["signins_per_s"])
    share = best["signins_per_s"] / argon2["bound_per_s"]
    others = ", ".join(f"{r['backend']} {r['workers']}w {r['signins_per_s']:.1f}/s" for r in signins if r is not best)
    return target(
        name,
        share,
        0.8,
        True,
        f"full sign-in, best of nidan's runs ({best['backend']}, {best['workers']} worker(s)): "
        f"{best['signins_per_s']:.1f} sign-ins/s vs the argon2 bound {argon2['bound_per_s']:.1f}/s "
        f"({argon2['cores']} cores / {argon2['hash_ms']:.1f} ms) = {100 * share:.0f} % (required >= 80 %); "
        f"{100 * best['signins_per_s'] / argon2['all_cores_per_s']:.0f} % of the {argon2['all_cores_per_s']:.1f} "
        "verifies/s every core hashing at once achieved" + (f"; the others: {others}" if others else ""),
    )


def remembered_target(runs: list[dict[str, Any]], argon2: dict[str, Any] | None) -> dict[str, Any]:
    """A sign-in on a remembered device is one request with one argon2id (the password) and no code: it should come
    close to the bound, closer than the two-request sign-in with a TOTP code."""
    name = "remembered-vs-argon2-bound"
    remembered = pick(runs, system="nidan", scenario="remembered")
    if not remembered or not argon2:
        return not_measured(name, 0.9, True, "no remembered-device sign-in run")
    best = max(remembered, key=lambda r: r["signins_per_s"])
    share = best["signins_per_s"] / argon2["bound_per_s"]
    others = ", ".join(
        f"{r['backend']} {r['workers']}w {r['signins_per_s']:.1f}/s" for r in remembered if r is not best
    )
    beside = pick(runs, system="nidan", scenario="signin", backend=best["backend"], workers=best["workers"])
    totp = (
        f"; the password + TOTP sign-in on the same server: {beside[0]['signins_per_s']:.1f}/s"
        if beside and beside[0]["signins_per_s"]
        else ""
    )
    return target(
        name,
        share,
        0.9,
        True,
        f"sign-in on a remembered device (password + device token), best of nidan's runs ({best['backend']}, "
        f"{best['workers']} worker(s)): {best['signins_per_s']:.1f} sign-ins/s vs the argon2 bound "
        f"{argon2['bound_per_s']:.1f}/s = {100 * share:.0f} % (required >= 90 %); "
        f"{100 * best['signins_per_s'] / argon2['all_cores_per_s']:.0f} % of the {argon2['all_cores_per_s']:.1f} "
        f"verifies/s every core hashing at once achieved{totp}" + (f"; the others: {others}" if others else ""),
    )


def user_count_target(runs: list[dict[str, Any]]) -> dict[str, Any]:
    name = "large-vs-small-p99"
    pair = pick(runs, system="nidan", label=USER_COUNT_LABEL)
    sizes = sorted({int(r["users"]) for r in pair})
    if len(sizes) < 2:
        return not_measured(name, 1.2, False, "no user-count pair")
    p99s = {size: [float(r["latency_ms"]["p99"]) for r in pair if int(r["users"]) == size] for size in sizes}
    small, large = sizes[0], sizes[-1]
    medians = {size: statistics.median(values) for size, values in p99s.items()}
    ratio = medians[large] / medians[small] if medians[small] else None
    first = next(r for r in pair if int(r["users"]) == small)

    def listed(size: int) -> str:
        return ", ".join(f"{v:.1f}" for v in p99s[size])

    return target(
        name,
        ratio,
        1.2,
        False,
        f"valid codes, SQLite, 1 worker, {first['users_sampled']:,} users sent to, {first['duration_s']:.0f} s a run "
        f"{_paced(first)}, {len(p99s[small])} rounds: "
        f"median p99 {medians[large]:.1f} ms at {large:,} users ({listed(large)}) vs "
        f"{medians[small]:.1f} ms at {small:,} ({listed(small)}) = {ratio or 0:.2f}x (required <= 1.2x)",
    )


def _paced(run: dict[str, Any]) -> str:
    delay = run.get("delay_ms")
    if not delay:
        return "as fast as answered"
    return f"at a set pace (~{run['rps']:.0f} req/s: each connection waits {delay} ms after an answer)"


MIB = 1024 * 1024 / 1e6  # MB per MiB


def rss_target(runs: list[dict[str, Any]]) -> dict[str, Any]:
    name = "peak-rss-per-worker"
    ours = [r for r in pick(runs, system="nidan") if r.get("peak_rss_mib_per_worker")]
    if not ours:
        return not_measured(name, 120, False, "no nidan run")
    worst = max(ours, key=lambda r: max(r["peak_rss_mib_per_worker"]))
    mib = max(worst["peak_rss_mib_per_worker"])
    by_scenario: dict[str, float] = {}
    for run in ours:
        by_scenario[run["scenario"]] = max(by_scenario.get(run["scenario"], 0), max(run["peak_rss_mib_per_worker"]))
    worst_each = ", ".join(f"{nb.LABELS.get(s, s)} {v:.0f}" for s, v in by_scenario.items())
    return target(
        name,
        mib * MIB,
        120,
        False,
        f"largest peak RSS of a nidan worker: {mib:.0f} MiB = {mib * MIB:.0f} MB ({worst['backend']}, "
        f"{worst['workers']} worker(s), after {nb.LABELS.get(worst['scenario'], worst['scenario'])}; the peak is "
        f"cumulative over the server's runs; MiB by scenario: {worst_each}) (required <= 120 MB)",
    )


def workers_target(runs: list[dict[str, Any]]) -> dict[str, Any]:
    name = "postgresql-2-vs-1-workers"
    one = pick(runs, system="nidan", backend="postgresql", workers=1, scenario="valid")
    two = pick(runs, system="nidan", backend="postgresql", workers=2, scenario="valid")
    if not one or not two:
        return not_measured(name, 1.6, True, "no PostgreSQL valid-code runs with 1 and 2 workers")
    ratio = two[0]["rps"] / one[0]["rps"] if one[0]["rps"] else None
    return target(
        name,
        ratio,
        1.6,
        True,
        f"valid codes, PostgreSQL: 2 workers {two[0]['rps']:.0f} req/s vs 1 worker {one[0]['rps']:.0f} req/s = "
        f"{ratio or 0:.2f}x (required >= 1.6x){cores_busy(one[0], 1)}{cores_busy(two[0], 2)}",
    )


def cores_busy(run: dict[str, Any], workers: int) -> str:
    """How many cores nidan and PostgreSQL kept busy in ``run`` (wrk's share comes on top)."""
    nidan_ms, database_ms = run.get("cpu_ms_per_request"), run.get("database_cpu_ms_per_request")
    if nidan_ms is None or database_ms is None:
        return ""
    cores = (nidan_ms + database_ms) * run["rps"] / 1000
    return (
        f"; {workers} worker(s): nidan {nidan_ms:.2f} + PostgreSQL {database_ms:.2f} ms CPU per request = "
        f"{cores:.2f} cores busy"
    )


def targets(runs: list[dict[str, Any]], argon2: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [
        *peer_targets(runs),
        ceiling_target(runs),
        signin_target(runs, argon2),
        remembered_target(runs, argon2),
        user_count_target(runs),
        rss_target(runs),
        workers_target(runs),
    ]


# --- output ---------------------------------------------------------------------------------------------------


def verdict(t: dict[str, Any]) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[t["met"]]


def markdown(report: dict[str, Any]) -> str:
    m, p, a = report["machine"], report["parameters"], report.get("argon2")
    lines = [
        f"nidan {m['nidan_commit']} on {m['host']} ({m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, "
        f"Python {m['python']}, {m['wrk']}), started {report['started_at']}, took {report.get('took_s', '?')} s.",
        "",
        f"wrk: {p['connections']} connections, {p['threads']} threads (sign-ins: one per connection), "
        f"{p['duration_s']} s per run after {p['warmup_s']} s of warm-up; nidan: {p['users']:,} users per "
        f"configuration" + (", --quick" if p["quick"] else "") + ".",
        "",
    ]
    if a:
        lines += [
            f"argon2 bound: {a['cores']} cores / {a['hash_ms']:.1f} ms per password verify (nidan's defaults, median "
            f"of {a['samples']}) = {a['bound_per_s']:.1f} sign-ins/s; with every core hashing at once the machine "
            f"verified {a['all_cores_per_s']:.1f} a second.",
            "",
        ]
    lines.append(nb.runs_table(report["runs"]))
    pair = pick(report["runs"], system="nidan", label=USER_COUNT_LABEL)
    if pair:
        sizes = " and ".join(f"{size:,}" for size in sorted({int(r["users"]) for r in pair}))
        rounds = max(int(r.get("round", 1)) for r in pair)
        lines += [
            f"The valid-code rows with {sizes} users are the user-count pair, {rounds} round(s) in the order run, "
            f"each on fresh databases: the same {pair[0]['users_sampled']:,} users sent to, "
            f"{pair[0]['duration_s']:.0f} s each {_paced(pair[0])}, started just after a time step began.",
            "",
        ]
    lines += ["| target | measured | required | verdict |", "|---|---:|---:|---|"]
    for t in report["targets"]:
        measured = "" if t["measured"] is None else f"{t['measured']:g}"
        lines.append(f"| {t['text']} | {measured} | {t['comparison']} {t['required']:g} | {verdict(t)} |")
    if report["failures"]:
        lines += ["", "Failures:", *(f"- {f}" for f in report["failures"])]
    return "\n".join(lines) + "\n"


def update_readme(table: str, stem: str, images: list[Path]) -> None:
    """Replaces what is between the README's latest-results markers."""
    pictures = "".join(f"![{image.stem}]({image.relative_to(BENCH).as_posix()})\n\n" for image in images)
    body = (
        f"From [`results/{stem}.json`](results/{stem}.json) ([`.md`](results/{stem}.md)), written by `bench/run`:"
        f"\n\n{table}\n{pictures}"
    )
    content = README.read_text()
    start, end = content.find(README_START), content.find(README_END)
    if start < 0 or end < start:
        raise RuntimeError(f"{README} has no {README_START} ... {README_END} markers")
    README.write_text(content[: start + len(README_START)] + "\n" + body + content[end:])


def plots(report_json: Path, out_dir: Path) -> list[Path]:
    try:
        from plots import render  # written alongside; absent until it is
    except ImportError as exc:
        say(f"plots skipped: bench/plots.py cannot be imported ({exc})")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    return list(render(report_json, out_dir))


def parameters(args: argparse.Namespace, pair: int | None) -> dict[str, Any]:
    return {
        "quick": args.quick,
        "name": args.name,
        "systems": split(args.systems),
        "backends": split(args.backends),
        "workers": [int(w) for w in split(args.workers)],
        "scenarios": split(args.scenarios),
        "users": args.users,
        "connections": args.connections,
        "threads": args.threads,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "database_url": redacted(args.database_url),
        "blocked_users": nb.BLOCKED_USERS,
        "user_shares": nb.SHARES,
        "user_count_pair": {"small": SMALL_USERS, "large": args.million_users, "sent_to": SMALL_USERS}
        if args.million_users
        else None,
        "user_count_pair_duration_s": pair,
        "peer_workers": PEER_WORKERS,
        "server_overrides": nb.server_overrides(args.connections, split(args.scenarios)),
        "argon2": "nidan defaults",
    }


def main() -> int:
    args = arguments()
    try:
        systems = split(args.systems, SYSTEMS)
        nb.parse_scenarios(args.scenarios)
        backends = split(args.backends, ("sqlite", "postgresql"))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "nidan" in systems and "postgresql" in backends and (problem := postgresql_problem(args.database_url)):
        print(
            f"error: PostgreSQL is unreachable at {redacted(args.database_url)}: {problem}\n"
            "Start it, pass --database-url, or leave it out with --backends sqlite.",
            file=sys.stderr,
        )
        return 2
    nb.exit_on_sigterm()
    nb.clear_nidan_environment()
    started = datetime.now(UTC)
    clock = time.monotonic()
    run_dir = nb.WORK / f"matrix-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    run_dir.mkdir(parents=True)
    say(f"==> scratch: {run_dir}")
    load = nb.Load(args.threads, args.connections, args.duration, args.warmup)
    collected = Collected(runs=[], failures=[], database_versions={})
    argon2 = None
    if "nidan" in systems:
        argon2 = measure_argon2(run_dir)
        say(f"==> argon2: {argon2['hash_ms']:.1f} ms per verify, bound {argon2['bound_per_s']:.1f} sign-ins/s")
        nidan_configs(args, load, run_dir, collected)
        if args.million_users:
            guarded("nidan user-count pair", collected, lambda: user_count_pair(args, load, run_dir, collected))
    if "ceilings" in systems:
        guarded("ceilings", collected, lambda: ceilings(args, load, run_dir))
    if "privacyidea" in systems:
        guarded("privacyidea", collected, lambda: peer(args, load, run_dir))
    pair = next((r["duration_s"] for r in collected.runs if r.get("label") == USER_COUNT_LABEL), None)
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "took_s": round(time.monotonic() - clock),
        "machine": {**nb.machine(), "databases": collected.database_versions},
        "parameters": {
            **parameters(args, round(pair) if pair else None),
            "user_count_pair_attempts": collected.pair_attempts,
        },
        "argon2": argon2,
        "runs": collected.runs,
        "targets": targets(collected.runs, argon2),
        "failures": collected.failures,
    }
    return write_outputs(report, args, started, run_dir)


def write_outputs(report: dict[str, Any], args: argparse.Namespace, started: datetime, run_dir: Path) -> int:
    out = run_dir if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d}-{socket.gethostname()}" + ("-quick" if args.quick else "")
    stem += f"-{args.name}" if args.name else ""
    # Only a whole run speaks for the README: a named part (or a smoke run) is written beside it.
    readme = not args.quick and not args.name
    report_json = out / f"{stem}.json"
    report_json.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (out / f"{stem}.md").write_text(table)
    failed = bool(report["failures"])
    images: list[Path] = []
    if not args.skip_plots:
        try:
            images = plots(report_json, out / stem)
        except Exception as exc:  # the results are written; the plots' failure is reported
            failed = True
            print(f"FAILED plots: {exc}\n{traceback.format_exc()}", file=sys.stderr)
    if readme:
        update_readme(table, stem, images)
    print()
    print(table)
    written = [report_json, out / f"{stem}.md", *images] + ([README] if readme else [])
    print("written: " + ", ".join(str(p.relative_to(nb.REPO)) for p in written))
    for t in report["targets"]:
        print(f"{verdict(t).upper():>12}  {t['text']}")
    failed = nb.print_failures(report["runs"]) or failed
    for failure in report["failures"]:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
