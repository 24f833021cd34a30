"""One nidan scenario on two source trees in ONE run, interleaved: an older commit against the working tree.

    bench/run --compare REV [--against REV2] [--scenario valid] [--rounds 3] [--duration 10] [--warmup 2]
                            [--users 40000] [--workers 1] [--database-url URL] [--pin] [--name side-by-side]

The old side is REV checked out with ``git worktree add --detach`` under ``bench/.work/`` (removed at the end, on
failure and on bench/run's time limit too); the new side is a copy of the working tree's ``src`` taken at the start
(edits made meanwhile do not land in the middle of the comparison; its fingerprint is recorded), or REV2 checked
out the same way. Both run with the same venv, each with its own ``src`` first on ``PYTHONPATH`` (ahead of the
venv's editable install), and each side's seeding and server say which nidan they imported: the run stops unless
it is the side's own tree.

Each round, each side seeds a fresh database of its own with its own code (``seeding.py`` run as a program: its
own migrations, its own schema revision, recorded) with ``--users`` users: no database weighs on more than one
round, and no code spent in one round meets another. Then old then new in odd rounds and new then old in even
ones: start that side's server (after ``sync``, so the other side's writes are not flushed during this run), warm
up, the recorded wrk run, stop the server. The same scenario, load, duration and user count on both sides; with
``--pin`` the server runs on one CPU and wrk on the others. Reported: every round of each side, each side's median,
and new ÷ old of the medians and round by round (req/s, or sign-ins/s for a sign-in scenario; CPU ms per request
and p99 beside it), against a tolerance (default 5 %).

Writes ``bench/results/<UTC date>-<host>-<name>.json`` and ``.md`` and prints the table. Exits non-zero when a
run had an error (wrong answers, socket errors, codes run out) or the new side is slower than the tolerance allows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nidan_bench as nb
from loadgen import SIGNIN_SCENARIOS
from serving import NidanServer

RESULTS = nb.BENCH / "results"
#: Scenarios both trees can run (the remembered-device sign-in needs the tree that remembers devices).
COMPARABLE = ("valid", "wrong", "blocked", "signin")
SEED_TIMEOUT = 900


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", required=True, metavar="REV", help="the old side: a commit (e.g. HEAD, 7a7106b)")
    parser.add_argument(
        "--against",
        metavar="REV|DIR",
        help="the new side: a commit, or a directory holding src/nidan used as it is (a patched copy); default: the "
        "working tree's src, copied at the start",
    )
    parser.add_argument("--scenario", default="valid", choices=COMPARABLE, help="what to measure (default valid)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side, interleaved old, new, old, ... (3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per recorded run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up before each run (default 2)")
    parser.add_argument(
        "--users", type=int, default=40_000, help="users per round and side, seeded fresh each round (default 40000)"
    )
    parser.add_argument("--workers", type=int, default=1, help="nidan serve --workers (default 1)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2; sign-in: one per connection)")
    parser.add_argument("--database-url", help="PostgreSQL server (a fresh database per side); default: SQLite")
    parser.add_argument(
        "--pin", action="store_true", help="the server on one CPU, wrk on the others (default: both anywhere)"
    )
    parser.add_argument("--tolerance", type=float, default=0.05, help="new may be this much slower (default 0.05)")
    parser.add_argument(
        "--name", default="side-by-side", help="results file: <date>-<host>-NAME (default side-by-side)"
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.users < 100:
        parser.error("--rounds must be at least 1 and --users at least 100")
    return args


def say(message: str) -> None:
    print(message, flush=True)


def git(*arguments: str) -> str:
    command = ["git", *arguments]
    done = subprocess.run(  # noqa: S603 - git with our own arguments
        command, cwd=nb.REPO, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


# --- the two trees --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    side: str  # "old" or "new"
    #: Put first on PYTHONPATH: the nidan package this side runs is ``src / "nidan"``.
    src: Path
    #: What the side is, for the report: a commit, or the working tree on top of one.
    description: str
    commit: str


def fingerprint(src: Path) -> str:
    """sha256 of every file of the tree (path and content), so a report names exactly the code it measured."""
    digest = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextmanager
def commit_tree(side: str, rev: str, scratch: Path) -> Iterator[Tree]:
    """``rev`` in a detached worktree under the scratch directory; removed afterwards whatever happened."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    where = scratch / side
    git("worktree", "add", "--detach", str(where), commit)
    try:
        named = "" if commit.startswith(rev) else f" ({rev})"
        yield Tree(side, where / "src", f"{commit[:7]}{named}", commit)
    finally:
        try:
            git("worktree", "remove", "--force", str(where))
        except RuntimeError:  # half made, or already gone: forget it in git's books either way
            shutil.rmtree(where, ignore_errors=True)
            git("worktree", "prune")


def new_tree(scratch: Path) -> Tree:
    """A copy of the working tree's ``src`` (tracked changes and new files alike), taken now."""
    head = git("rev-parse", "HEAD")
    where = scratch / "new" / "src"
    shutil.copytree(nb.REPO / "src", where, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    changed = len(git("status", "--porcelain", "--", "src").splitlines())
    description = (
        f"{head[:7]} + working tree ({changed} changed or new paths under src/, sha256 {fingerprint(where)[:12]})"
    )
    return Tree("new", where, description, head)


def directory_tree(where: Path) -> Tree:
    """A tree on disk used as it is (a patched copy, to try a change before committing it): ``where/src/nidan``."""
    src = where.resolve() / "src"
    return Tree("new", src, f"{where} (sha256 {fingerprint(src)[:12]})", "none")


def new_side(against: str | None, scratch: Path, stack: ExitStack) -> Tree:
    """The working tree's copy, a directory holding ``src/nidan``, or a commit (checked out until ``stack`` ends)."""
    if against is None:
        return new_tree(scratch)
    if (Path(against) / "src" / "nidan").is_dir():
        return directory_tree(Path(against))
    return stack.enter_context(commit_tree("new", against, scratch))


def assert_from(tree: Tree, nidan_file: Path | None, what: str) -> None:
    """The run is meaningless unless ``what`` imported the side's own nidan: stop it otherwise."""
    expected = (tree.src / "nidan" / "__init__.py").resolve()
    if nidan_file is None or nidan_file.resolve() != expected:
        raise RuntimeError(f"{tree.side} side: {what} imported nidan from {nidan_file}, not from {expected}")


# --- one side's database for one round --------------------------------------------------------------------------


@dataclass(frozen=True)
class SideData:
    tree: Tree
    data_dir: Path
    database_url: str | None
    #: The round's users: username -> raw TOTP key, in random order.
    keys: dict[str, bytes]
    blocked: list[str]
    api_key: str
    users: int
    seed_seconds: float
    schema_revision: str
    nidan_file: str


def clean_environment(tree: Tree) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_")}
    env["PYTHONPATH"] = str(tree.src)
    return env


def seed_side(tree: Tree, side_dir: Path, url: str | None, args: argparse.Namespace) -> SideData:
    """A fresh database of the side's own, seeded by ``seeding.py`` run with the side's ``src`` first on the path."""
    side_dir.mkdir(parents=True, exist_ok=True)
    out = side_dir / "seeded.json"
    blocked = nb.BLOCKED_USERS if args.scenario == "blocked" else 0
    command = [sys.executable, str(nb.BENCH / "seeding.py"), "--data-dir", str(side_dir / "data")]
    command += ["--users", str(args.users), "--blocked", str(blocked), "--out", str(out)]
    if url is not None:
        command += ["--database-url", url]
    say(f"==> {tree.side}: seeding {args.users:,} users with {tree.description}")
    with (side_dir / "seeding.log").open("w") as log:
        done = subprocess.run(  # noqa: S603 - our own interpreter and script
            command,
            env=clean_environment(tree),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=SEED_TIMEOUT,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{tree.side} side: seeding failed; see {side_dir / 'seeding.log'}")
    seeded = json.loads(out.read_text())
    assert_from(tree, Path(seeded["nidan_file"]), "seeding")
    say(f"    {seeded['seconds']:.1f} s, schema revision {seeded['schema_revision']}, nidan {seeded['nidan_file']}")
    return SideData(
        tree=tree,
        data_dir=side_dir / "data",
        database_url=url,
        keys={name: bytes.fromhex(key) for name, key in seeded["keys"].items()},
        blocked=seeded["blocked"],
        api_key=seeded["api_key"],
        users=seeded["users"],
        seed_seconds=seeded["seconds"],
        schema_revision=seeded["schema_revision"],
        nidan_file=seeded["nidan_file"],
    )


# --- the rounds -----------------------------------------------------------------------------------------------


def sides_in_order(sides: list[SideData], number: int) -> list[SideData]:
    """Old then new in odd rounds, new then old in even ones (old, new, new, old, old, new, ...): whatever the
    order itself costs (the previous run's writes still being flushed, a neighbour's burst) falls on both sides."""
    return sides if number % 2 else sides[::-1]


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Processes started inside run on ``cpus`` (they inherit this process's affinity); None: no change."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def placement(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(the server's CPUs, wrk's CPUs): with ``--pin``, the server on the first usable CPU and wrk on the others,
    so that neither is moved onto the other's core by the scheduler; else both anywhere."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def measure(side: SideData, number: int, args: argparse.Namespace, load: nb.Load, run_dir: Path) -> dict[str, Any]:
    """One recorded run of the side: its server started fresh on its database, then stopped."""
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = nb.server_overrides(load.connections, (args.scenario,))
    env = nb.server_env(side.data_dir, side.database_url, overrides)
    server_cpus, load_cpus = placement(args.pin)
    os.sync()  # the other side's last run's writes reach the disk now, not during this run
    with pinned(server_cpus):
        started = NidanServer(env, args.workers, run_dir, python_path=side.tree.src)
    with started as server:
        server.wait_until_healthy()
        assert_from(side.tree, server.nidan_file(), "the server")
        say(f"==> round {number}, {side.tree.side} ({side.tree.description}): {nb.LABELS[args.scenario]}")
        with pinned(load_cpus):
            measured = nb.scenario(args.scenario, server, side.keys, side.blocked, side.api_key, load, run_dir)
        rss = server.peak_rss()
    say("    " + nb.one_line(measured))
    return {
        "side": side.tree.side,
        "round": number,
        **measured,
        "peak_rss_mib_per_worker": [round(x, 1) for x in rss],
        "server_overrides": overrides,
    }


def sorted_or_none(cpus: set[int] | None) -> list[int] | None:
    return None if cpus is None else sorted(cpus)


def metric_of(scenario: str) -> str:
    """What a round is judged by: sign-ins a second for a sign-in, requests a second otherwise."""
    return "signins_per_s" if scenario in SIGNIN_SCENARIOS else "rps"


def summary(runs: list[dict[str, Any]], scenario: str, tolerance: float) -> dict[str, Any]:
    """Each side's rounds and medians, and new ÷ old: of the medians, and round by round."""
    metric = metric_of(scenario)
    sides: dict[str, dict[str, Any]] = {}
    for side in ("old", "new"):
        mine = sorted((r for r in runs if r["side"] == side), key=lambda r: r["round"])
        cpu = [r["cpu_ms_per_request"] for r in mine if r.get("cpu_ms_per_request") is not None]
        sides[side] = {
            metric: [r[metric] for r in mine],
            "cpu_ms_per_request": cpu,
            "p99_ms": [r["latency_ms"]["p99"] for r in mine],
            f"median_{metric}": statistics.median(r[metric] for r in mine) if mine else None,
            "median_cpu_ms_per_request": statistics.median(cpu) if cpu else None,
            "median_p99_ms": statistics.median(r["latency_ms"]["p99"] for r in mine) if mine else None,
        }
    old, new = sides["old"], sides["new"]

    def ratio(key: str) -> float | None:
        return round(new[key] / old[key], 4) if old[key] and new[key] is not None else None

    by_round = [round(n / o, 4) if o else None for o, n in zip(old[metric], new[metric], strict=False)]
    speed = ratio(f"median_{metric}")
    return {
        "metric": metric,
        "old": old,
        "new": new,
        "ratio": speed,
        "ratio_by_round": by_round,
        "ratio_cpu_ms_per_request": ratio("median_cpu_ms_per_request"),
        "ratio_p99": ratio("median_p99_ms"),
        "tolerance": tolerance,
        "within_tolerance": None if speed is None else speed >= 1 - tolerance,
    }


# --- output ---------------------------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    m, p, s = report["machine"], report["parameters"], report["summary"]
    old, new = report["sides"]["old"], report["sides"]["new"]
    unit = "sign-ins/s" if s["metric"] == "signins_per_s" else "req/s"
    lines = [
        f"Side by side on {m['host']} ({m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"{m['wrk']}), started {report['started_at']}, took {report['took_s']} s.",
        "",
        f"- old: {old['tree']}, schema {old['schema_revision']}, nidan from `{old['nidan_file']}`",
        f"- new: {new['tree']}, schema {new['schema_revision']}, nidan from `{new['nidan_file']}`",
        "",
        f"{nb.LABELS[p['scenario']]}, {p['backend']}, {p['workers']} worker(s); wrk {p['connections']} connections, "
        f"{p['duration_s']} s per run after {p['warmup_s']} s of warm-up; {p['users_per_round']:,} users per round "
        f"and side ({p['rounds']} rounds, a fresh database of its own each); order: {p['order']}"
        + (
            ""
            if p["pinned"]["server_cpus"] is None
            else f"; server on CPU {p['pinned']['server_cpus']}, wrk on {p['pinned']['wrk_cpus']}"
        )
        + ".",
        "",
        f"| round | old {unit} | new {unit} | new / old | old CPU ms/req | new CPU ms/req | old p99 ms | new p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = {(r["side"], r["round"]): r for r in report["runs"]}
    for number in range(1, p["rounds"] + 1):
        o, n = runs.get(("old", number)), runs.get(("new", number))
        if o is None or n is None:
            continue
        share = f"{n[s['metric']] / o[s['metric']]:.3f}" if o[s["metric"]] else ""
        lines.append(
            f"| {number} | {o[s['metric']]:.1f} | {n[s['metric']]:.1f} | {share} | {o['cpu_ms_per_request']:.3f} "
            f"| {n['cpu_ms_per_request']:.3f} | {o['latency_ms']['p99']:.1f} | {n['latency_ms']['p99']:.1f} |"
        )
    metric = s["metric"]
    lines.append(
        f"| **median** | **{s['old'][f'median_{metric}']:.1f}** | **{s['new'][f'median_{metric}']:.1f}** "
        f"| **{s['ratio']:.3f}** | {s['old']['median_cpu_ms_per_request']:.3f} "
        f"| {s['new']['median_cpu_ms_per_request']:.3f} | {s['old']['median_p99_ms']:.1f} "
        f"| {s['new']['median_p99_ms']:.1f} |"
    )
    verdict = "within" if s["within_tolerance"] else "NOT within"
    lines += [
        "",
        f"new / old, medians: {unit} {s['ratio']:.3f} ({verdict} {100 * s['tolerance']:.0f} %: required >= "
        f"{1 - s['tolerance']:.2f}); CPU ms per request {s['ratio_cpu_ms_per_request']:.3f}; p99 "
        f"{s['ratio_p99']:.3f}. Round by round: {', '.join(f'{r:.3f}' for r in s['ratio_by_round'] if r)}.",
    ]
    if report["failures"]:
        lines += ["", "Failures:", *(f"- {f}" for f in report["failures"])]
    return "\n".join(lines) + "\n"


def write_outputs(report: dict[str, Any], started: datetime, name: str) -> tuple[Path, Path, str]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d}-{socket.gethostname()}-{name}"
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    md_path.write_text(table)
    return json_path, md_path, table


def relative(path: Path) -> str:
    return str(path.relative_to(nb.REPO)) if path.is_relative_to(nb.REPO) else str(path)


def side_record(data: SideData) -> dict[str, Any]:
    return {
        "tree": data.tree.description,
        "commit": data.tree.commit,
        "src": relative(data.tree.src),
        "nidan_file": relative(Path(data.nidan_file)),
        "schema_revision": data.schema_revision,
        "database": nb.database_version(data.database_url),
        "users": data.users,
        "seed_seconds": data.seed_seconds,
    }


def compare(args: argparse.Namespace, scratch: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The rounds, each on fresh databases; returns (the sides' records, the runs)."""
    load = nb.Load(args.threads, args.connections, args.duration, args.warmup)
    with ExitStack() as stack:
        trees = [stack.enter_context(commit_tree("old", args.compare, scratch)), new_side(args.against, scratch, stack)]
        records: dict[str, dict[str, Any]] = {}
        runs = []
        for number in range(1, args.rounds + 1):
            with ExitStack() as round_stack:
                sides = [round_side(tree, number, args, scratch, round_stack) for tree in trees]
                if not records:  # the same trees every round: the first round's seeding describes them
                    records = {side.tree.side: side_record(side) for side in sides}
                for side in sides_in_order(sides, number):
                    runs.append(measure(side, number, args, load, scratch / side.tree.side / f"round-{number}"))
                    time.sleep(1)  # the last connections close before the next server starts
        return records, runs


def round_side(tree: Tree, number: int, args: argparse.Namespace, scratch: Path, stack: ExitStack) -> SideData:
    """The side's fresh database for round ``number`` (a PostgreSQL one is dropped when ``stack`` ends). Fresh each
    round, as the matrix's user-count pair: whatever one database happens to be like (its file's place on the
    disk, its pages in the cache) would otherwise weigh on every round of that side alike."""
    url = stack.enter_context(nb.database(args.database_url))
    return seed_side(tree, scratch / tree.side / f"round-{number}", url, args)


def main() -> int:
    args = arguments()
    nb.exit_on_sigterm()  # bench/run's time limit unwinds: servers stopped, worktree removed, databases dropped
    nb.clear_nidan_environment()
    started = datetime.now(UTC)
    clock = time.monotonic()
    scratch = nb.WORK / f"side-by-side-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    scratch.mkdir(parents=True)
    say(f"==> scratch: {scratch}")
    sides, runs = compare(args, scratch)
    failures = [f"{r['side']} round {r['round']}: {f}" for r in runs for f in r["failures"]]
    report: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "took_s": round(time.monotonic() - clock),
        "machine": nb.machine(),
        "parameters": {
            "compare": args.compare,
            "against": args.against or "the working tree",
            "scenario": args.scenario,
            "backend": "sqlite" if args.database_url is None else "postgresql",
            "workers": args.workers,
            "rounds": args.rounds,
            "users_per_round": args.users,
            "connections": args.connections,
            "threads": args.threads,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "order": "old, new, new, old, old, new, ...",
            "pinned": dict(zip(("server_cpus", "wrk_cpus"), map(sorted_or_none, placement(args.pin)), strict=True)),
        },
        "sides": sides,
        "runs": runs,
        "summary": summary(runs, args.scenario, args.tolerance),
        "failures": failures,
    }
    json_path, md_path, table = write_outputs(report, started, args.name)
    print()
    print(table)
    print(f"written: {json_path.relative_to(nb.REPO)}, {md_path.relative_to(nb.REPO)}")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures or not report["summary"]["within_tolerance"] else 0


if __name__ == "__main__":
    sys.exit(main())
