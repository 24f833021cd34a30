"""Where a remembered-device sign-in's CPU goes besides its password hash: nidan's ASGI app driven in process.

    .venv/bin/python bench/profile_signin.py [--users 300] [--rounds 3] [--together 16] [--profile]

Seeds a fresh SQLite instance in ``bench/.work/profile-signin-<pid>`` (as the bench does: ``seeding.seed``, then a
remembered browser per user), then sends ``POST /api/v1/auth/login`` with the password and the device token straight
to the ASGI app, each user's next sign-in with the token its last answer gave, and prints the CPU time per sign-in
next to one argon2id password verify timed the same way (the difference is what nidan spends besides the hash:
what keeps a sign-in from the argon2 bound). With ``--profile``, cProfile's top functions of the event loop's thread
(the hash runs on the hashing threads and is left out) and the Python calls and SQL statements per sign-in. Every
answer is checked. Another tree's code: ``PYTHONPATH=<tree>/src .venv/bin/python bench/profile_signin.py ...``.
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

from profile_verify import counts_per_request, post
from seeding import PASSWORD, REMEMBER_DEVICE_DAYS, remember_devices, seed

from nidan.bootstrap import build_runtime
from nidan.config import PolicySettings, Settings
from nidan.web.app import create_app

WORK = Path(__file__).resolve().parent / ".work"


async def sign_in(app: Any, username: str, token: str | None, port: int) -> str | None:
    """One remembered sign-in: the device's next token (without ``token``, the password step alone: ``None``)."""
    fields = {"username": username, "password": PASSWORD} | ({"device_token": token} if token else {})
    body = json.dumps(fields).encode()
    status, raw = await post(app, "/api/v1/auth/login", body, [], port)
    answer = json.loads(raw)
    if token is None and status == 200 and answer.get("status") == "mfa_required":
        return None
    if status != 200 or answer.get("second_factor") != "remembered_device":
        raise SystemExit(f"unexpected answer {status} {answer!r} for {username}")
    return str(answer["device_token"])


async def drive(app: Any, tokens: dict[str, str | None], together: int) -> None:
    names = list(tokens)
    for start in range(0, len(names), together):
        group = names[start : start + together]
        answers = await asyncio.gather(*(sign_in(app, n, tokens[n], 40000 + i) for i, n in enumerate(group)))
        tokens.update(zip(group, answers, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="sign-ins per user")
    parser.add_argument("--together", type=int, default=16, help="sign-ins sent at once (as wrk's connections)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--password-only", action="store_true", help="no device token: the password step (mfa_required) alone"
    )
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith("NIDAN_"):
            del os.environ[name]
    data_dir = WORK / f"profile-signin-{os.getpid()}"
    try:
        seeded = seed(data_dir, None, args.users)
        tokens: dict[str, str | None] = (
            dict.fromkeys(seeded.keys) if args.password_only else dict(remember_devices(data_dir, None, seeded.keys))
        )
        # Trees before remembered devices know no such setting: the password step alone needs none.
        remembering = PolicySettings(remember_device_days=REMEMBER_DEVICE_DAYS)
        settings = Settings(data_dir=data_dir, **({} if args.password_only else {"policy": remembering}))
        runtime = build_runtime(settings)
        app = create_app(runtime)
        stored = runtime.services.passwords.hash(PASSWORD)
        started = time.process_time()
        for _ in range(20):
            runtime.services.passwords.verify(stored, PASSWORD)
        hash_ms = 1000 * (time.process_time() - started) / 20
        warm = dict(list(tokens.items())[:50])
        asyncio.run(drive(app, warm, args.together))  # warm-up: imports, statement caches
        tokens.update(warm)  # those devices' next tokens
        profiler = cProfile.Profile() if args.profile else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        for _ in range(args.rounds):
            asyncio.run(drive(app, tokens, args.together))
        if profiler:
            profiler.disable()
        cpu_ms = 1000 * (time.process_time() - started) / (args.rounds * len(tokens))
        print(
            f"{args.rounds * len(tokens)} sign-ins, {args.together} at a time: {cpu_ms:.2f} ms CPU per sign-in, "
            f"{hash_ms:.2f} ms of it one password verify: {cpu_ms - hash_ms:.2f} ms besides the hash"
        )
        if profiler:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(45)
            stats.sort_stats("tottime").print_stats(30)
            print(counts_per_request(stats, args.rounds * len(tokens)).replace("request", "sign-in"))
            if os.environ.get("PROFILE_DUMP"):  # for comparing two trees function by function
                stats.dump_stats(os.environ["PROFILE_DUMP"])
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
