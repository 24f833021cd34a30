"""Does the verify API's answer time tell who has 2FA? Wrong codes for three kinds of name, timed in process.

    .venv/bin/python bench/timing_oracle.py [--samples 1000] [--code totp|recovery|malformed]
                                            [--database-url postgresql+psycopg://...] [--json PATH]

A holder of an application key can send a wrong code for any name and time the answer. This seeds a fresh
instance (SQLite in ``bench/.work/oracle-<pid>``, or a fresh PostgreSQL database next to ``--database-url``,
dropped afterwards) with users who have an authenticator (used before, as every activated one is, and a set of
recovery codes) and users who have none, then sends the ASGI app (the fast path, no sockets) one wrong code per
name, for ``--samples`` names of each kind: with 2FA, without 2FA, unknown. The calls are interleaved at random,
one at a time, each name used once (so no name's backoff ever blocks, and each call counts a name's first
failure, whatever its kind), after a warm-up on names of their own. Every answer must be 200
``{"ok": false, ... "invalid_code"}``.

Printed: each kind's answer times, then for each pair of kinds the two-sample Kolmogorov-Smirnov statistic (the
largest gap between the two distributions: 0 when they are the same), its asymptotic p-value, the statistic's 5 %
critical value for these sample sizes, and the difference of the medians. A statistic well above the critical
value is an oracle. Codes: ``totp``: a random 6-digit code; ``recovery``: a well-formed recovery code (one
argon2id a call: use fewer samples); ``malformed``: text that is taken for a recovery code but cannot be one.

Not a test: timings move with the machine's load; the counts that make the work equal are asserted by
``tests/integration/test_verify_timing.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import shutil
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nidan_bench import database
from profile_verify import call
from seeding import seed
from sqlalchemy import delete, insert, select, update

from nidan.bootstrap import build_runtime
from nidan.config import Settings
from nidan.core import recovery
from nidan.core.totp import PERIOD, SKEW_SEARCH_STEPS, hotp
from nidan.db import tables as t
from nidan.web.app import create_app

WORK = Path(__file__).resolve().parent / ".work"
KINDS = ("2fa", "no_2fa", "unknown")
LABELS = {"2fa": "user with 2FA", "no_2fa": "user without 2FA", "unknown": "unknown name"}
#: Steps back an authenticator was last used (a day): every activated authenticator has one.
LAST_USED_STEPS_AGO = 2880


@dataclass(frozen=True)
class Population:
    api_key: str
    names: dict[str, list[str]]
    #: The TOTP keys of the users with 2FA, so that no code sent to them is right by chance.
    keys: dict[str, bytes]


def prepare(data_dir: Path, url: str | None, per_kind: int) -> Population:
    """``per_kind`` names of each kind; the users with 2FA have used their authenticator and hold recovery codes."""
    seeded = seed(data_dir, url, 2 * per_kind)
    names = list(seeded.keys)
    with_2fa, without = names[:per_kind], names[per_kind:]
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=url))
    ctx = runtime.services
    # One set of recovery codes, hashed once and given to every user with 2FA (the check hashes the typed code
    # with the set's salt, whoever holds it).
    salt = ctx.random_bytes(recovery.SALT_BYTES)
    codes = recovery.generate_codes(ctx.random_bytes)
    digests = [recovery.digest(recovery.normalize(code) or "", salt, ctx.recovery_hash) for code in codes]
    now = datetime.now(UTC)
    try:
        with runtime.engine.begin() as connection:
            found = connection.execute(select(t.users.c.username, t.users.c.id).where(t.users.c.username.in_(names)))
            ids: dict[str, int] = {name: user_id for name, user_id in found}
            totp = t.totp_credentials.c
            connection.execute(delete(t.totp_credentials).where(totp.user_id.in_([ids[n] for n in without])))
            last_used = int(time.time()) // PERIOD - LAST_USED_STEPS_AGO
            connection.execute(
                update(t.totp_credentials)
                .where(totp.user_id.in_([ids[n] for n in with_2fa]))
                .values(last_used_step=last_used)
            )
            parameters = recovery.encode_parameters(ctx.recovery_hash)
            for name in with_2fa:
                set_id = connection.execute(
                    insert(t.recovery_code_sets)
                    .values(user_id=ids[name], salt=salt, hash_parameters=parameters, created_at=now)
                    .returning(t.recovery_code_sets.c.id)
                ).scalar_one()
                connection.execute(
                    insert(t.recovery_codes),
                    [{"set_id": set_id, "position": i, "digest": d} for i, d in enumerate(digests, start=1)],
                )
    finally:
        runtime.engine.dispose()
    unknown = [f"nobody{i:07d}" for i in range(per_kind)]
    names_by_kind = {"2fa": with_2fa, "no_2fa": without, "unknown": unknown}
    return Population(seeded.api_key, names_by_kind, {name: seeded.keys[name] for name in with_2fa})


def wrong_code(kind: str, rng: random.Random, key: bytes | None) -> str:
    """A wrong code of the kind asked for; for a user with 2FA, a TOTP code none of the steps within
    ±SKEW_SEARCH_STEPS of now gives (never right, and no clock offset found: an attacker guessing rarely is)."""
    if kind == "totp":
        now_step = int(time.time()) // PERIOD
        near = range(now_step - SKEW_SEARCH_STEPS - 2, now_step + SKEW_SEARCH_STEPS + 3)
        taken = {hotp(key, step) for step in near} if key is not None else set()
        while (code := f"{rng.randrange(10**6):06d}") in taken:
            pass
        return code
    if kind == "recovery":
        chars = "".join(rng.choice(recovery.ALPHABET) for _ in range(recovery.CODE_LENGTH))
        return f"{chars[:5]}-{chars[5:]}"
    return "not a code"


async def timed(
    app: Any, api_key: str, calls: list[tuple[str, str, str]]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each call's answer time and the process's CPU time for it, in microseconds, by kind; one call at a time."""
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for kind, name, code in calls:
        body = json.dumps({"username": name, "code": code}, separators=(",", ":")).encode()
        cpu_started = time.process_time_ns()
        started = time.perf_counter_ns()
        status, answer = await call(app, body, api_key)
        took = time.perf_counter_ns() - started
        cpu_took = time.process_time_ns() - cpu_started
        if status != 200 or b'"ok":false' not in answer or b"invalid_code" not in answer:
            raise SystemExit(f"unexpected answer {status} {answer!r} for {kind} {name!r}")
        times[kind].append(took / 1000)
        cpu[kind].append(cpu_took / 1000)
    return times, cpu


def ks_statistic(a: list[float], b: list[float]) -> float:
    """The largest distance between the two samples' empirical distribution functions."""
    xs, ys = sorted(a), sorted(b)
    i = j = 0
    largest = 0.0
    while i < len(xs) and j < len(ys):
        value = min(xs[i], ys[j])
        while i < len(xs) and xs[i] == value:
            i += 1
        while j < len(ys) and ys[j] == value:
            j += 1
        largest = max(largest, abs(i / len(xs) - j / len(ys)))
    return largest


def ks_p_value(statistic: float, n: int, m: int) -> float:
    """The asymptotic p-value of a two-sample KS statistic (Stephens' correction for the sample sizes)."""
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * statistic
    if lam < 0.2:
        return 1.0
    total = math.fsum((1.0 if k % 2 else -1.0) * math.exp(-2 * k * k * lam * lam) for k in range(1, 101))
    return max(0.0, min(1.0, 2 * total))


def critical_value(n: int, m: int, c_alpha: float = 1.358) -> float:
    """The statistic above which the two samples differ at the 5 % level."""
    return c_alpha * math.sqrt((n + m) / (n * m))


def summary(times: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict[str, Any]:
    kinds = {
        kind: {
            "n": len(values),
            "cpu_median_us": statistics.median(cpu[kind]),
            "median_us": statistics.median(values),
            "p10_us": statistics.quantiles(values, n=10)[0],
            "p90_us": statistics.quantiles(values, n=10)[-1],
            "mean_us": statistics.fmean(values),
        }
        for kind, values in times.items()
    }
    pairs = []
    for a, b in (("2fa", "unknown"), ("no_2fa", "unknown"), ("2fa", "no_2fa")):
        d = ks_statistic(times[a], times[b])
        n, m = len(times[a]), len(times[b])
        pairs.append(
            {
                "a": a,
                "b": b,
                "ks": d,
                "p_value": ks_p_value(d, n, m),
                "critical_5pct": critical_value(n, m),
                "median_diff_us": kinds[a]["median_us"] - kinds[b]["median_us"],
            }
        )
    return {"kinds": kinds, "pairs": pairs}


def table(result: dict[str, Any]) -> str:
    lines = [
        "| kind | n | median µs | p10 µs | p90 µs | mean µs | CPU median µs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, row in result["kinds"].items():
        lines.append(
            f"| {LABELS[kind]} | {row['n']} | {row['median_us']:.1f} | {row['p10_us']:.1f} | "
            f"{row['p90_us']:.1f} | {row['mean_us']:.1f} | {row['cpu_median_us']:.1f} |"
        )
    lines += ["", "| pair | KS | p-value | 5 % critical | median difference µs |", "|---|---:|---:|---:|---:|"]
    for pair in result["pairs"]:
        lines.append(
            f"| {LABELS[pair['a']]} vs {LABELS[pair['b']]} | {pair['ks']:.3f} | {pair['p_value']:.3g} | "
            f"{pair['critical_5pct']:.3f} | {pair['median_diff_us']:+.1f} |"
        )
    return "\n".join(lines)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="timed calls per kind of name")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per kind first, on names of their own")
    parser.add_argument("--code", choices=("totp", "recovery", "malformed"), default="totp")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server (default: SQLite)")
    parser.add_argument("--seed", type=int, default=None, help="the order of the calls and the codes")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args()


def main() -> None:
    args = arguments()
    for name in list(os.environ):
        if name.startswith("NIDAN_"):
            del os.environ[name]
    rng = random.Random(args.seed)  # noqa: S311 - the order of the calls and the wrong codes: no secret
    data_dir = WORK / f"oracle-{os.getpid()}"
    try:
        with database(args.database_url) as url:
            population = prepare(data_dir, url, args.samples + args.warmup)
            runtime = build_runtime(Settings(data_dir=data_dir, database_url=url))
            try:
                app = create_app(runtime)
                keys = population.keys
                warm = [
                    (k, n, wrong_code(args.code, rng, keys.get(n)))
                    for k in KINDS
                    for n in population.names[k][: args.warmup]
                ]
                measured = [
                    (k, n, wrong_code(args.code, rng, keys.get(n)))
                    for k in KINDS
                    for n in population.names[k][args.warmup :]
                ]
                rng.shuffle(warm)
                rng.shuffle(measured)
                asyncio.run(timed(app, population.api_key, warm))
                gc.collect()
                times, cpu = asyncio.run(timed(app, population.api_key, measured))
            finally:
                runtime.engine.dispose()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    result = summary(times, cpu)
    backend = "postgresql" if args.database_url else "sqlite"
    print(f"wrong {args.code} codes, {backend}, {args.samples} calls per kind, interleaved, one at a time\n")
    print(table(result))
    if args.json is not None:
        report = {
            "code": args.code,
            "backend": backend,
            "samples": args.samples,
            **result,
            "times_us": times,
            "cpu_us": cpu,
        }
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
