"""Seeding N users with an active authenticator in bulk, through nidan's own storage (not N argon2 hashes).

Each user has a random key of its own, sealed with the instance's keyring exactly as enrollment seals it; the rows
go in with the DB-API's ``executemany`` on a statement SQLAlchemy compiled once (bound values converted once, not
per row), which is what makes a million users take about a minute on SQLite.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, insert, select

from nidan.bootstrap import build_runtime
from nidan.config import Settings
from nidan.core.models import ClientInfo, InstanceRole, OrgRole, ThrottleScope
from nidan.core.organisations import DEFAULT_SLUG
from nidan.core.sealing import KeyRing
from nidan.db import tables as t
from nidan.services import applications
from nidan.services.factors import totp_context

BATCH = 20_000
KEY_BYTES = 20
#: Every seeded user has this password (hashed once, the hash shared): only the full sign-in scenario needs it.
PASSWORD = "bench correct horse battery"  # noqa: S105 - a benchmark fixture
#: How long the blocked users stay blocked: far longer than any run, so every attempt meets the block.
BLOCK = timedelta(hours=1)
#: Their failure count: enough for a long block (tolerated 1 by default), far below the hard limit (100).
BLOCKED_FAILURES = 13


@dataclass(frozen=True)
class Seeded:
    #: username -> raw TOTP key, for the sampled users (every user unless a sample was asked for), random order
    keys: dict[str, bytes]
    #: users put into a long second-factor block (not in ``keys``); the API key's application verifies for them
    blocked: list[str]
    api_key: str
    users: int
    seconds: float


def username(index: int) -> str:
    return f"u{index:07d}"


class BulkInsert:
    """``INSERT INTO table (columns)`` compiled once for the connection's dialect; rows are plain tuples whose
    values need no conversion, except the columns named in ``convert`` (done once per distinct value by the
    caller through ``bind``)."""

    def __init__(self, connection: Connection, table: Table, columns: Sequence[str]) -> None:
        compiled = insert(table).compile(dialect=connection.dialect, column_keys=list(columns))
        self._connection = connection
        self._sql = compiled.string
        self._columns = list(columns)
        self._positional = [str(name) for name in compiled.positiontup or ()] if compiled.positional else None
        self._table = table

    def bind(self, column: str, value: Any) -> Any:
        """``value`` as the driver must receive it for ``column`` (e.g. a UTC datetime as SQLite's text)."""
        process = self._table.c[column].type.bind_processor(self._connection.dialect)
        return process(value) if process else value

    def rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        if self._positional is not None:
            at = [self._columns.index(name) for name in self._positional]
            params: list[Any] = [tuple(row[i] for i in at) for row in rows]
        else:
            params = [dict(zip(self._columns, row, strict=True)) for row in rows]
        if params:
            self._connection.exec_driver_sql(self._sql, params)


def seed(
    data_dir: Path, database_url: str | None, users: int, *, sample: int | None = None, blocked: int = 0
) -> Seeded:
    """A fresh instance in ``data_dir`` (and ``database_url``) with ``users`` members of the default organisation,
    each with an ACTIVE authenticator, and one registered application. Returns the keys of ``sample`` users chosen
    at random (all the others when None) and the names of ``blocked`` other users, who are in a one-hour
    second-factor block (counted among ``users``)."""
    started = time.monotonic()
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url))
    ctx = runtime.services
    blocked_indexes = random.sample(range(users), blocked)
    others = sorted(set(range(users)) - set(blocked_indexes))
    chosen = random.sample(others, len(others) if sample is None else min(sample, len(others)))
    kept = set(chosen)
    try:
        password_hash = ctx.passwords.hash(PASSWORD)
        with runtime.engine.begin() as connection:
            raw_keys = _insert_users(connection, ctx.keyring, users, password_hash, kept)
            blocked_names = [username(i) for i in blocked_indexes]
            _block(connection, blocked_names)
        registered = applications.add(ctx, name="bench", actor=None, client=ClientInfo())
    finally:
        runtime.engine.dispose()
    keys = {username(i): raw_keys[i] for i in chosen}
    return Seeded(
        keys=keys,
        blocked=blocked_names,
        api_key=registered.api_key,
        users=users,
        seconds=time.monotonic() - started,
    )


def _insert_users(
    connection: Connection, keyring: KeyRing, users: int, password_hash: str, kept: set[int]
) -> dict[int, bytes]:
    """users, memberships and totp_credentials rows in batches; returns the raw keys of the ``kept`` indexes."""
    now = datetime.now(UTC)
    organisation_id = connection.execute(
        select(t.organisations.c.id).where(t.organisations.c.slug == DEFAULT_SLUG)
    ).scalar_one()
    user_rows = BulkInsert(
        connection, t.users, ["username", "username_key", "email", "role", "password_hash", "created_at"]
    )
    member_rows = BulkInsert(connection, t.memberships, ["organisation_id", "user_id", "role", "created_at"])
    totp_rows = BulkInsert(
        connection,
        t.totp_credentials,
        ["user_id", "state", "key_fingerprint", "sealed_secret", "created_at", "activated_at", "drift_steps"],
    )
    created = user_rows.bind("created_at", now)
    kept_keys: dict[int, bytes] = {}
    last_id = 0
    for start in range(0, users, BATCH):
        indexes = range(start, min(start + BATCH, users))
        user_rows.rows(
            (name, name, f"{name}@bench.invalid", InstanceRole.MEMBER.value, password_hash, created)
            for name in map(username, indexes)
        )
        # One writer in a fresh database: the batch's ids are the ones above the last batch's, in insertion order.
        ids = dict(
            connection.execute(
                select(t.users.c.username, t.users.c.id).where(t.users.c.id > last_id).order_by(t.users.c.id)
            )
            .tuples()
            .all()
        )
        last_id = max(ids.values())
        members = []
        credentials = []
        for index in indexes:
            user_id = ids[username(index)]
            key = os.urandom(KEY_BYTES)
            if index in kept:
                kept_keys[index] = key
            sealed = keyring.seal(key, context=totp_context(user_id), random_bytes=os.urandom)
            members.append((organisation_id, user_id, OrgRole.MEMBER.value, created))
            credentials.append((user_id, "active", sealed.key_fingerprint, sealed.blob, created, created, 0))
        member_rows.rows(members)
        totp_rows.rows(credentials)
    return kept_keys


def _block(connection: Connection, names: list[str]) -> None:
    """A second-factor throttle row per user, as the backoff leaves it after many wrong codes: blocked for BLOCK."""
    if not names:
        return
    now = datetime.now(UTC)
    ids = connection.execute(select(t.users.c.id).where(t.users.c.username.in_(names))).scalars().all()
    connection.execute(
        insert(t.throttles),
        [
            {
                "scope": ThrottleScope.SECOND_FACTOR.value,
                "key": str(user_id),  # throttling.second_factor: the user's id
                "failures": BLOCKED_FAILURES,
                "blocked_until": now + BLOCK,
                "locked_at": None,
                "version": 1,
                "updated_at": now,
            }
            for user_id in ids
        ],
    )
