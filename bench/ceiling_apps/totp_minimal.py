"""The minimal honest TOTP check, speaking nidan's verify contract: the practical ceiling for this work in Python.

Per ``POST /api/v1/verify``: the API key (``Authorization: Bearer``) compared in constant time with the one in
``CEILING_API_KEY``; one read of the user's row; RFC 6238 (HMAC-SHA1, 6 digits, 30 s) over the steps now-1 .. now+1;
the replay check (the matching step must be above the user's ``last_used_step``); then one commit holding the
UPDATE of ``last_used_step`` (only when accepted) and one audit INSERT. SQLite in WAL mode, synchronous=NORMAL, the
database file in ``CEILING_DB`` (seeded by ``seed_database``). Served by ``bench/ceilings.py`` as
``uvicorn totp_minimal:app`` from this directory.

``CEILING_TOTP_MODE`` picks how the blocking SQLite work is run (measured on the 2-core bench VM, see
``bench/ceilings.py``): ``inline`` (the default, the faster) does it in the async endpoint itself, on one
connection, under a per-process lock: each check takes tens of microseconds, less than a thread hand-off costs.
``threadpool`` runs it in Starlette's thread pool, one connection per thread, writes serialised by the same lock
(without it, SQLite's busy handler makes waiting writers sleep).
"""

from __future__ import annotations

import hmac
import json
import os
import sqlite3
import struct
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

PERIOD = 30
DIGITS = 6
#: Steps accepted either side of the current one, as nidan (without its learned drift).
WINDOW = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    totp_key BLOB NOT NULL,
    last_used_step INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    username TEXT NOT NULL,
    outcome TEXT NOT NULL,
    step INTEGER
);
"""

ACCEPTED = {"ok": True, "method": "totp"}
REFUSED = {"ok": False, "error": {"code": "invalid_code"}}


def connect(path: Path | str) -> sqlite3.Connection:
    # Autocommit mode: transactions are opened explicitly, so the read is not inside the write transaction.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


def seed_database(path: Path, keys: Mapping[str, bytes]) -> None:
    """A fresh database at ``path`` with one row per user (no code used yet)."""
    path.unlink(missing_ok=True)
    connection = connect(path)
    try:
        connection.executescript(SCHEMA)
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO users (username, totp_key, last_used_step) VALUES (?, ?, NULL)", keys.items()
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


def hotp(key: bytes, counter: int) -> str:
    mac = hmac.digest(key, struct.pack(">Q", counter), "sha1")
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(binary % 10**DIGITS).zfill(DIGITS)


def matching_step(key: bytes, code: str, now_step: int, last_used_step: int | None) -> int | None:
    """The lowest unused step in the window whose code is ``code``; every step is computed (no early exit)."""
    found = None
    for step in range(now_step - WINDOW, now_step + WINDOW + 1):
        matches = hmac.compare_digest(hotp(key, step), code)
        if matches and found is None and (last_used_step is None or step > last_used_step):
            found = step
    return found


def read_user(connection: sqlite3.Connection, username: str) -> tuple[bytes, int | None] | None:
    row = connection.execute("SELECT totp_key, last_used_step FROM users WHERE username = ?", (username,)).fetchone()
    return None if row is None else (row[0], row[1])


def record(connection: sqlite3.Connection, username: str, step: int | None) -> bool:
    """One commit: the step (when one matched) and the audit row. False when the step was used meanwhile."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        if step is not None:
            # Conditional: a concurrent check of the same user that got in first makes this one a replay.
            updated = connection.execute(
                "UPDATE users SET last_used_step = ? WHERE username = ? "
                "AND (last_used_step IS NULL OR last_used_step < ?)",
                (step, username, step),
            )
            if updated.rowcount != 1:
                step = None
        outcome = "ok" if step is not None else "invalid_code"
        connection.execute(
            "INSERT INTO audit (at, username, outcome, step) VALUES (?, ?, ?, ?)",
            (time.time(), username, outcome, step),
        )
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return step is not None


class Checker:
    """The SQLite side of a check, in one of the two modes (see the module's docstring)."""

    def __init__(self, path: str, mode: str) -> None:
        if mode not in ("inline", "threadpool"):
            raise ValueError(f"CEILING_TOTP_MODE must be inline or threadpool, not {mode!r}")
        self.path = path
        self.mode = mode
        self.lock = threading.Lock()
        self.shared = connect(path)
        self.local = threading.local()

    def connection(self) -> sqlite3.Connection:
        if self.mode == "inline":
            return self.shared
        connection: sqlite3.Connection | None = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = connect(self.path)
        return connection

    def check(self, username: str, code: str) -> bool:
        if self.mode == "inline":
            with self.lock:
                return self._check(username, code, self.shared)
        return self._check(username, code, self.connection())

    def _check(self, username: str, code: str, connection: sqlite3.Connection) -> bool:
        user = read_user(connection, username)
        step = None if user is None else matching_step(user[0], code, int(time.time()) // PERIOD, user[1])
        if self.mode == "inline":
            return record(connection, username, step)
        with self.lock:
            return record(connection, username, step)


def authorised(request: Request, api_key: bytes) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key)


def well_formed(body: Any) -> tuple[str, str] | None:
    if not isinstance(body, dict):
        return None
    username, code = body.get("username"), body.get("code")
    if not isinstance(username, str) or not isinstance(code, str):
        return None
    return username, code


async def verify(request: Request) -> Response:
    state = request.app.state
    if not authorised(request, state.api_key):
        return JSONResponse({"ok": False, "error": {"code": "unauthorized"}}, status_code=401)
    try:
        fields = well_formed(await request.json())
    except json.JSONDecodeError:
        fields = None
    if fields is None:
        return JSONResponse({"ok": False, "error": {"code": "invalid_request"}}, status_code=400)
    checker: Checker = state.checker
    if checker.mode == "inline":
        accepted = checker.check(*fields)
    else:
        accepted = await run_in_threadpool(checker.check, *fields)
    return JSONResponse(ACCEPTED if accepted else REFUSED)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Read at start-up, not import: bench/ceilings.py imports this module for seed_database.
    app.state.api_key = os.environ["CEILING_API_KEY"].encode()
    app.state.checker = Checker(os.environ["CEILING_DB"], os.environ.get("CEILING_TOTP_MODE", "inline"))
    yield


app = Starlette(
    routes=[Route("/api/v1/verify", verify, methods=["POST"]), Route("/healthz", healthz)], lifespan=lifespan
)
