"""Seeding N users with an active authenticator in bulk, through nidan's own storage (not N argon2 hashes).

Each user has a random key of its own, sealed with the instance's keyring exactly as enrollment seals it; the rows
go in with the DB-API's ``executemany`` on a statement SQLAlchemy compiled once (bound values converted once, not
per row), which is what makes a million users take about a minute on SQLite.

Run as a program (``python bench/seeding.py --data-dir D --users N --out seeded.json``), it seeds with the nidan
found first on ``sys.path``: ``bench/side_by_side.py`` runs it with an older tree's ``src`` on ``PYTHONPATH``, so
each tree creates, migrates and fills its own database with its own code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, insert, select

import nidan
from nidan.bootstrap import build_runtime
from nidan.config import PolicySettings, Settings
from nidan.core.models import ClientInfo, InstanceRole, OrgRole, ThrottleScope
from nidan.core.organisations import DEFAULT_SLUG
from nidan.core.sealing import KeyRing
from nidan.db import tables as t
from nidan.services import applications

try:  # the second-step engine's tree keeps the TOTP method's helpers with the method
    from nidan.services.methods.totp import totp_context
except ImportError:  # trees before it (the side-by-side comparison seeds an older commit with its own code)
    from nidan.services.factors import totp_context  # type: ignore[attr-defined,no-redef]

BATCH = 20_000
KEY_BYTES = 20
#: Every seeded user has this password (hashed once, the hash shared): only the full sign-in scenario needs it.
PASSWORD = "bench correct horse battery"  # noqa: S105 - a benchmark fixture
#: How long the blocked users stay blocked: far longer than any run, so every attempt meets the block.
BLOCK = timedelta(hours=1)
#: Their failure count: enough for a long block (tolerated 1 by default), far below the hard limit (100).
BLOCKED_FAILURES = 13
#: The instance's ``policy.remember_device_days`` for the remembered-device scenario (seeding and the server).
REMEMBER_DEVICE_DAYS = 30


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


def remember_devices(data_dir: Path, database_url: str | None, names: Iterable[str]) -> dict[str, str]:
    """A remembered browser for each user named, as a full sign-in with "remember this device" leaves it
    (``devices.remember`` under the user's lock, one transaction each, audited): username -> its first device token.

    In process, not through POST /api/v1/auth/mfa: that would be a password hash and a code per user. The runtime
    must allow remembering (``policy.remember_device_days``), as the bench's server does."""
    # Imported here: trees before remembered devices (seeded by side_by_side.py) have no such module.
    from nidan.core.usernames import username_key
    from nidan.services import devices

    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        policy=PolicySettings(remember_device_days=REMEMBER_DEVICE_DAYS),
    )
    runtime = build_runtime(settings)
    ctx = runtime.services
    client = ClientInfo(ip="127.0.0.1", user_agent="wrk (nidan bench)")
    tokens: dict[str, str] = {}
    try:
        for name in names:
            with ctx.uow() as uow:
                key = username_key(name)
                user = uow.users.get_by_username_key(key) if key else None
                if user is None:
                    raise RuntimeError(f"seeded user {name} not found")
                uow.users.lock(user.id)
                remembered = devices.remember(ctx, uow, user, client)
                if remembered is None:
                    raise RuntimeError(f"{name}'s browser was not remembered: policy.remember_device_days is 0?")
                uow.commit()
            tokens[name] = remembered.token
    finally:
        runtime.engine.dispose()
    return tokens


def schema_revision(data_dir: Path, database_url: str | None) -> str:
    """The Alembic revision the seeded database is at (what the tree that seeded it migrated it to)."""
    from sqlalchemy import create_engine

    engine = create_engine(Settings(data_dir=data_dir, database_url=database_url).resolved_database_url)
    try:
        with engine.connect() as connection:
            return ",".join(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all())
    finally:
        engine.dispose()


def main() -> int:
    """Seed as ``seed`` does and write what the load needs, with where nidan came from, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database-url", help="PostgreSQL (an existing, empty database); default: SQLite")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--blocked", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="the JSON written")
    args = parser.parse_args()
    seeded = seed(args.data_dir, args.database_url, args.users, blocked=args.blocked)
    args.out.write_text(
        json.dumps(
            {
                "keys": {name: key.hex() for name, key in seeded.keys.items()},
                "blocked": seeded.blocked,
                "api_key": seeded.api_key,
                "users": seeded.users,
                "seconds": round(seeded.seconds, 1),
                # Which tree did the work: the caller checks it is the one it meant.
                "nidan_file": str(Path(nidan.__file__).resolve()),
                "schema_revision": schema_revision(args.data_dir, args.database_url),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
