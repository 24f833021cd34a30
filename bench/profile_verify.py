"""Where a verify request's CPU goes: nidan's ASGI app driven in process, no sockets, one request at a time.

    .venv/bin/python bench/profile_verify.py [--users 2000] [--requests 3000] [--together 16] [--profile]

Seeds a fresh SQLite instance in ``bench/.work/profile-<pid>`` (as the bench does), then sends valid first-use
codes straight to the ASGI app (so uvicorn and the kernel are left out) and prints the CPU time per request; with
``--profile``, cProfile's top functions by cumulative and by own time, and the Python calls and SQL statements per
request (counts: the machine's noise does not move them). Every answer is checked. Another tree's code:
``PYTHONPATH=<tree>/src .venv/bin/python bench/profile_verify.py ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import time
from pathlib import Path
from typing import Any

from seeding import seed

from nidan.bootstrap import build_runtime
from nidan.config import Settings
from nidan.core.totp import PERIOD, hotp
from nidan.web.app import create_app

WORK = Path(__file__).resolve().parent / ".work"


async def call(app: Any, body: bytes, api_key: str) -> tuple[int, bytes]:
    return await post(app, "/api/v1/verify", body, [(b"authorization", f"Bearer {api_key}".encode())])


async def post(
    app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]], port: int = 40000
) -> tuple[int, bytes]:
    """A JSON POST of ``body`` to ``path`` straight to the ASGI ``app``, from 127.0.0.1:``port``: (status, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", port),
        "server": ("127.0.0.1", 8000),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


async def drive(app: Any, bodies: list[bytes], api_key: str, together: int = 1) -> None:
    for start in range(0, len(bodies), together):
        group = bodies[start : start + together]
        answers = await asyncio.gather(*(call(app, body, api_key) for body in group))
        for body, (status, answer) in zip(group, answers, strict=True):
            if status != 200 or b'"ok":true' not in answer:
                raise SystemExit(f"unexpected answer {status} {answer!r} to {body!r}")


def counts_per_request(stats: pstats.Stats, requests: int) -> str:
    """Python calls and SQL statements per request: what a change costs, counted, which the machine's noise does
    not move (compare two trees with ``PYTHONPATH=<tree>/src``)."""
    entries: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    calls = sum(entry[1] for entry in entries.values())
    statements = sum(
        entry[1] for key, entry in entries.items() if key[2] == "<method 'execute' of 'sqlite3.Cursor' objects>"
    )
    return f"per request: {calls / requests:.0f} Python calls, {statements / requests:.2f} SQL statements"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--together", type=int, default=1, help="calls sent at once (16: as wrk's connections, checked as groups)"
    )
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith("NIDAN_"):
            del os.environ[name]
    data_dir = WORK / f"profile-{os.getpid()}"
    try:
        seeded = seed(data_dir, None, args.users)
        app = create_app(build_runtime(Settings(data_dir=data_dir)))
        step = int(time.time()) // PERIOD
        names = list(seeded.keys)
        bodies = [
            json.dumps({"username": names[i % len(names)], "code": hotp(seeded.keys[names[i % len(names)]], step)})
            .replace(" ", "")
            .encode()
            for i in range(min(args.requests, len(names)))
        ]
        asyncio.run(drive(app, bodies[:200], seeded.api_key))  # warm-up: imports, statement caches
        measured = bodies[200:]
        profiler = cProfile.Profile() if args.profile else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        asyncio.run(drive(app, measured, seeded.api_key, args.together))
        if profiler:
            profiler.disable()
        cpu = time.process_time() - started
        at_once = "one at a time" if args.together == 1 else f"{args.together} at a time"
        print(f"{len(measured)} requests, {1000 * cpu / len(measured):.3f} ms CPU per request ({at_once})")
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
            print(counts_per_request(stats, len(measured)))
            if os.environ.get("PROFILE_DUMP"):  # for comparing two trees function by function
                stats.dump_stats(os.environ["PROFILE_DUMP"])
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
