"""wrk as the load generator: the input files for the ``wrk/*.lua`` scripts, one run, and what it printed."""

from __future__ import annotations

import json
import math
import os
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nidan.core.totp import PERIOD, hotp

SCRIPTS = Path(__file__).resolve().parent / "wrk"
SCRIPT = SCRIPTS / "verify.lua"
#: Password, then TOTP: run with as many wrk threads as connections (see its header).
SIGNIN_SCRIPT = SCRIPTS / "signin.lua"
#: Password and a remembered device's rotating token, one request: also one wrk thread per connection.
REMEMBERED_SCRIPT = SCRIPTS / "remembered.lua"
#: The scenarios whose unit of work is a sign-in (their runs also record sign-ins/s).
SIGNIN_SCENARIOS = ("signin", "remembered")
#: The 429 fast path: users in a long block, every answer must be 429 with Retry-After.
BLOCKED_SCRIPT = SCRIPTS / "blocked.lua"
#: Steps either side of a code whose codes must differ from it (the server's window is ±1, plus learned drift).
NEIGHBOURHOOD = 3
#: Extra seconds of codes beyond the run (wrk's start, a step boundary).
MARGIN_SECONDS = 15


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    ok: int
    rejected: int
    throttled: int
    errors: int
    exhausted: int
    socket_errors: dict[str, int]
    non_2xx: int
    latency_ms: dict[str, float]
    samples: list[str] = field(default_factory=list)
    #: signin.lua: sign-ins completed (the mfa step gave a session) and logins that asked for the mfa step;
    #: remembered.lua: sign-ins a remembered device completed (logins stays 0).
    signins: int = 0
    logins: int = 0

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def write_valid_codes(path: Path, keys: dict[str, bytes], duration: int) -> int:
    """Every user's codes for the steps that can be current during a run of ``duration`` s starting now (one step
    earlier, one later); a code equal to a neighbour step's is written as ``-``. Returns the base step."""
    now_step = int(time.time()) // PERIOD
    base = now_step - 1
    steps = math.ceil((duration + MARGIN_SECONDS) / PERIOD) + 3
    with path.open("w") as out:
        out.write(f"# base {base}\n")
        for name, key in keys.items():
            first = base - NEIGHBOURHOOD
            window = [hotp(key, s) for s in range(first, base + steps + NEIGHBOURHOOD)]
            row = []
            for k in range(steps):
                at = k + NEIGHBOURHOOD
                code = window[at]
                neighbours = window[at - NEIGHBOURHOOD : at] + window[at + 1 : at + 1 + NEIGHBOURHOOD]
                row.append("-" if code in neighbours else code)
            out.write(f"{name} {' '.join(row)}\n")
    return base


def write_device_tokens(path: Path, tokens: dict[str, str]) -> None:
    """remembered.lua's input: each user's current device token (its first, as seeding remembered it)."""
    with path.open("w") as out:
        out.writelines(f"{name} {token}\n" for name, token in tokens.items())


def write_wrong_codes(path: Path, keys: dict[str, bytes], duration: int) -> None:
    """One wrong code per user: none of the user's codes for the steps around the run."""
    now_step = int(time.time()) // PERIOD
    span = math.ceil((duration + MARGIN_SECONDS) / PERIOD) + 2 * NEIGHBOURHOOD
    with path.open("w") as out:
        for name, key in keys.items():
            taken = {hotp(key, s) for s in range(now_step - span, now_step + span + 1)}
            code = f"{secrets.randbelow(10**6):06d}"
            while code in taken:
                code = f"{secrets.randbelow(10**6):06d}"
            out.write(f"{name} {code}\n")


def run_wrk(
    *,
    url: str,
    mode: str,
    bodies: Path,
    api_key: str,
    threads: int,
    connections: int,
    duration: int,
    log: Path,
    script: Path = SCRIPT,
    extra_env: dict[str, str] | None = None,
) -> WrkResult:
    """One wrk run of ``script`` (default ``wrk/verify.lua``); ``extra_env`` reaches the script as os.getenv."""
    env = {
        **os.environ,
        "BENCH_MODE": mode,
        "BENCH_BODIES": str(bodies),
        "BENCH_API_KEY": api_key,
        "BENCH_THREADS": str(threads),
        "BENCH_LUA_DIR": str(SCRIPT.parent),  # codes.lua and report.lua, which the scripts load
        **(extra_env or {}),
    }
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "10s"]
    command += ["-s", str(script), url]
    completed = subprocess.run(  # noqa: S603 - wrk with our own arguments
        command, capture_output=True, text=True, env=env, timeout=duration + 120, check=False
    )
    log.write_text(f"$ {' '.join(command)}\n{completed.stdout}\n--- stderr\n{completed.stderr}")
    if completed.returncode != 0:
        raise RuntimeError(f"wrk exited with {completed.returncode}; see {log}:\n{completed.stderr[-2000:]}")
    return parse(completed.stdout, log)


def parse(stdout: str, log: Path) -> WrkResult:
    data: dict[str, Any] | None = None
    samples = []
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line.removeprefix("BENCH_JSON "))
        elif line.startswith("BENCH_SAMPLE "):
            samples.append(line.removeprefix("BENCH_SAMPLE "))
    if data is None:
        raise RuntimeError(f"wrk printed no BENCH_JSON line; see {log}")
    latency = {name: value / 1000 for name, value in data["latency_us"].items()}
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        ok=data["ok"],
        rejected=data["rejected"],
        throttled=data["throttled"],
        errors=data["errors"],
        exhausted=data["exhausted"],
        socket_errors=data["socket_errors"],
        non_2xx=data["non_2xx"],
        latency_ms=latency,
        samples=samples,
        signins=data.get("signins", 0),
        logins=data.get("logins", 0),
    )


def failures_of(name: str, result: WrkResult) -> list[str]:
    failures = []
    if result.exhausted and name == "remembered":
        failures.append(f"no user with a working device token left, {result.exhausted} times (see the errors)")
    elif result.exhausted:
        failures.append(f"ran out of usable codes {result.exhausted} times (raise --users)")
    if result.errors and result.exhausted and name in ("valid", "wrong"):
        # verify.lua counts the /healthz answers to the requests sent without a code among its errors.
        failures.append(f"{result.errors} answers not accepted, the /healthz ones included")
    elif result.errors:
        throttled = f" ({result.throttled} of them 429)" if name in SIGNIN_SCENARIOS and result.throttled else ""
        failures.append(f"{result.errors} wrong answers{throttled}")
    if any(result.socket_errors.values()):
        failures.append(f"socket errors {result.socket_errors}")
    return failures


def record_of(name: str, result: WrkResult, cpu: float) -> dict[str, Any]:
    """What a run records, the same for every system (nidan, the peer, the ceilings)."""
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
        "failures": failures_of(name, result),
    }
