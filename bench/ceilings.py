"""The ceilings: what Python does on this machine with nidan's verify contract, under the same wrk script.

Two apps in ``ceiling_apps/``, each served by one uvicorn worker and driven by ``wrk/verify.lua`` unchanged:

- ``starlette-bare``: the HTTP + JSON ceiling (parses the body, answers ``{"ok":true,...}``, no database);
  valid-code scenario only.
- ``totp-minimal``: the minimal honest TOTP check (one SQLite read, the ±1-step HMAC-SHA1 window, the replay check,
  one UPDATE + one audit INSERT in one commit, WAL, synchronous=NORMAL); valid and wrong codes.

Used by the matrix runner through ``run_ceilings``; on its own:
``.venv/bin/python bench/ceilings.py --users 20000 --duration 10``. Scratch files go to
``bench/.work/ceilings-<time>-<pid>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.util
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from ceiling_apps.totp_minimal import seed_database
from loadgen import record_of, run_wrk, write_valid_codes, write_wrong_codes
from serving import free_port, group_processes, peak_rss_mib

BENCH = Path(__file__).resolve().parent
APPS = BENCH / "ceiling_apps"
WORK = BENCH / ".work"
KEY_BYTES = 20
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
#: How the minimal app runs its SQLite work; "inline" measured faster than "threadpool" (see totp_minimal.py).
DEFAULT_TOTP_MODE = "inline"
#: Throughputs no ceiling run reaches here (about 1.6x and 2x what the peer notes measured on this machine kind):
#: enough users are generated that wrk cannot run out of first-use codes below them.
RPS_BUDGET = {"starlette-bare": 40_000, "totp-minimal": 15_000}
#: wrong mode: the minimal app has no backoff, so a user's wrong code may be sent any number of times.
UNLIMITED_WRONG = {"BENCH_MAX_WRONG": str(10**9)}
WARM_UP_REQUESTS = 200


def uvicorn_options() -> list[str]:
    """uvloop + httptools when the venv has them (the fastest uvicorn can be), else uvicorn's defaults."""
    if importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools"):
        return ["--loop", "uvloop", "--http", "httptools"]
    return []


def users_needed(system: str, duration: int) -> int:
    """Users for a valid-code run at the system's budget, with a 20 % margin. wrk's script offers each user 3
    first-use codes in a run of up to 35 s (now-1 .. now+1, one more when the step turns, but now-1 is skipped in a
    step's last 5 s) and one more per further 30 s; in the worst phase only 2 until the step turns, 5 s later."""
    budget = RPS_BUDGET[system]
    codes = 3 + max(0, (duration - 5) // 30)
    return math.ceil(max(1.2 * budget * duration / codes, 2.5 * budget))


def padded(keys: Mapping[str, bytes], count: int) -> dict[str, bytes]:
    """``keys`` plus random users (names ``c…``, not taken) up to ``count`` users."""
    out = dict(keys)
    index = 0
    while len(out) < count:
        name = f"c{index:07d}"
        index += 1
        if name not in out:
            out[name] = os.urandom(KEY_BYTES)
    return out


class UvicornApp:
    """``uvicorn MODULE:app`` from ``ceiling_apps/`` on 127.0.0.1, one worker, in its own process group; the
    group is killed on exit, whatever happened."""

    def __init__(self, module: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.options = uvicorn_options()
        self.log_path = log_dir / f"{module}-{self.port}.log"
        self._log = self.log_path.open("w")
        command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir", str(APPS)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log", "--log-level", "warning"]
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [*command, *self.options],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        self.pgid = self.process.pid  # a new session: its leader's pid is the group id

    def __enter__(self) -> UvicornApp:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def describe(self) -> str:
        return " ".join(["uvicorn", "--workers 1", *self.options])

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:  # noqa: S310 - loopback
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"uvicorn was not healthy within {START_TIMEOUT:.0f} s:\n{self.log_path.read_text()}")

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds for p in group_processes(self.pgid))

    def peak_rss(self) -> list[float]:
        rss = peak_rss_mib(self.pgid)  # one worker: the server process itself serves
        return [] if rss is None else [round(rss, 1)]

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self._log.close()


def warm_up(app: UvicornApp, api_key: str) -> None:
    """A few requests on one connection before measuring (imports, JSON, SQLite's statement cache); an unknown
    user, so no code is used up."""
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    body = json.dumps({"username": "warm-up", "code": "000000"})
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    try:
        for _ in range(WARM_UP_REQUESTS):
            connection.request("POST", "/api/v1/verify", body=body, headers=headers)
            connection.getresponse().read()
    finally:
        connection.close()


@dataclass(frozen=True)
class Load:
    """wrk's side of every run: the same for every system."""

    threads: int
    connections: int
    duration: int


def measure(
    app: UvicornApp, name: str, keys: Mapping[str, bytes], api_key: str, load: Load, prefix: Path
) -> dict[str, Any]:
    """One wrk run of scenario ``name`` against ``app``, with the server's CPU time around it."""
    bodies = prefix.with_name(f"{prefix.name}-{name}.bodies")
    if name == "valid":
        write_valid_codes(bodies, dict(keys), load.duration)
    else:
        write_wrong_codes(bodies, dict(keys), load.duration)
    cpu_before = app.cpu_seconds()
    result = run_wrk(
        url=app.url,
        mode=name,
        bodies=bodies,
        api_key=api_key,
        threads=load.threads,
        connections=load.connections,
        duration=load.duration,
        log=prefix.with_name(f"{prefix.name}-{name}.wrk.log"),
        extra_env=UNLIMITED_WRONG if name == "wrong" else None,
    )
    return record_of(name, result, app.cpu_seconds() - cpu_before)


@dataclass(frozen=True)
class System:
    name: str
    module: str
    backend: str
    scenarios: tuple[str, ...]


BARE = System("starlette-bare", "bare", "none", ("valid",))
MINIMAL = System("totp-minimal", "totp_minimal", "sqlite", ("valid", "wrong"))


def run_system(
    system: System, keys: Mapping[str, bytes], env: Mapping[str, str], api_key: str, load: Load, run_dir: Path
) -> list[dict[str, Any]]:
    """Start the system's app, warm it up, run its scenarios one after the other, stop it."""
    runs = []
    with UvicornApp(system.module, env, run_dir) as app:
        app.wait_until_healthy()
        warm_up(app, api_key)
        for name in system.scenarios:
            scenario = measure(app, name, keys, api_key, load, run_dir / system.name)
            runs.append(
                {
                    "system": system.name,
                    "workers": 1,
                    "backend": system.backend,
                    **scenario,
                    "peak_rss_mib_per_worker": app.peak_rss(),
                    "users": len(keys),
                    "server": app.describe(),
                }
            )
            time.sleep(1)  # let the last connections close before the next run
    return runs


def run_ceilings(
    work_dir: Path,
    keys: dict[str, bytes],
    *,
    threads: int,
    connections: int,
    duration: int,
    totp_mode: str = DEFAULT_TOTP_MODE,
) -> list[dict[str, Any]]:
    """Both ceilings, one after the other: ``starlette-bare`` (valid) then ``totp-minimal`` (valid, wrong).

    ``keys`` (username -> raw TOTP key) seed the minimal app; when they are too few for a ceiling's throughput,
    random users are added (each run's ``users`` says how many it had). Returns one dict per run:
    ``system``, ``workers`` (1), ``backend`` ("none" / "sqlite"), the keys of ``nidan_bench.scenario``,
    ``peak_rss_mib_per_worker``, ``users``, ``server`` (the uvicorn options)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    api_key = secrets.token_urlsafe(32)
    load = Load(threads=threads, connections=connections, duration=duration)
    bare_keys = padded(keys, users_needed(BARE.name, duration))
    runs = run_system(BARE, bare_keys, {}, api_key, load, work_dir)
    minimal_keys = padded(keys, users_needed(MINIMAL.name, duration))
    database = work_dir / "totp-minimal.sqlite3"
    seed_database(database, minimal_keys)
    env = {"CEILING_DB": str(database), "CEILING_API_KEY": api_key, "CEILING_TOTP_MODE": totp_mode}
    return runs + run_system(MINIMAL, minimal_keys, env, api_key, load, work_dir)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000, help="users with a random TOTP key (default 20000)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario (default 10)")
    parser.add_argument(
        "--totp-mode",
        choices=["inline", "threadpool"],
        default=DEFAULT_TOTP_MODE,
        help=f"how totp-minimal runs its SQLite work (default {DEFAULT_TOTP_MODE})",
    )
    return parser.parse_args()


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| system | backend | scenario | users | req/s | p50 ms | p90 ms | p99 ms | errors | CPU ms/req "
        "| peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lat = run["latency_ms"]
        errors = run["errors"] + run["exhausted"] + sum(run["socket_errors"].values())
        rss = " / ".join(f"{x:.0f}" for x in run["peak_rss_mib_per_worker"]) or "?"
        lines.append(
            f"| {run['system']} | {run['backend']} | {run['scenario']} | {run['users']} | {run['rps']:.0f} | "
            f"{lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {errors} | {run['cpu_ms_per_request']} | "
            f"{rss} |"
        )
    return "\n".join(lines)


def main() -> int:
    args = arguments()
    if shutil.which("wrk") is None:
        print("wrk is not installed (bench/run installs it)", file=sys.stderr)
        return 2
    run_dir = WORK / f"ceilings-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"
    keys = {f"u{i:07d}": os.urandom(KEY_BYTES) for i in range(args.users)}
    print(f"==> ceilings: {' '.join(['uvicorn', *uvicorn_options()])}, totp-minimal {args.totp_mode}; {run_dir}")
    runs = run_ceilings(
        run_dir,
        keys,
        threads=args.threads,
        connections=args.connections,
        duration=args.duration,
        totp_mode=args.totp_mode,
    )
    (run_dir / "ceilings.json").write_text(json.dumps(runs, indent=2) + "\n")
    print(table(runs))
    failed = False
    for run in runs:
        for failure in run["failures"]:
            failed = True
            print(f"FAILED {run['system']} {run['scenario']}: {failure}", file=sys.stderr)
        for sample in run["error_samples"]:
            print(f"    status, body: {sample}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
