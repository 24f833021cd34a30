"""Seeding N users with an active authenticator in bulk, through nidan's own storage (not N argon2 hashes)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from nidan.bootstrap import build_runtime
from nidan.config import Settings
from nidan.core.models import ClientInfo, InstanceRole, OrgRole
from nidan.core.organisations import DEFAULT_SLUG
from nidan.db import tables as t
from nidan.services import applications
from nidan.services.factors import totp_context

BATCH = 5_000
KEY_BYTES = 20
#: Every seeded user has this password (hashed once, the hash shared): only the full sign-in scenario needs it.
PASSWORD = "bench correct horse battery"  # noqa: S105 - a benchmark fixture


@dataclass(frozen=True)
class Seeded:
    #: username -> raw TOTP key
    keys: dict[str, bytes]
    api_key: str
    seconds: float


def username(index: int) -> str:
    return f"u{index:07d}"


def seed(data_dir: Path, database_url: str | None, users: int) -> Seeded:
    """A fresh instance in ``data_dir`` (and ``database_url``) with ``users`` members of the default organisation,
    each with an ACTIVE authenticator, and one registered application; returns the keys and the API key."""
    started = time.monotonic()
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=database_url))
    ctx = runtime.services
    try:
        now = datetime.now(UTC)
        password_hash = ctx.passwords.hash(PASSWORD)
        names = [username(i) for i in range(users)]
        with runtime.engine.begin() as connection:
            organisation_id = connection.execute(
                select(t.organisations.c.id).where(t.organisations.c.slug == DEFAULT_SLUG)
            ).scalar_one()
            for start in range(0, users, BATCH):
                rows = [
                    {
                        "username": name,
                        "username_key": name,
                        "email": f"{name}@bench.invalid",
                        "role": InstanceRole.MEMBER.value,
                        "password_hash": password_hash,
                        "created_at": now,
                    }
                    for name in names[start : start + BATCH]
                ]
                connection.execute(insert(t.users), rows)
            ids = dict(connection.execute(select(t.users.c.username, t.users.c.id)).tuples().all())
            keys: dict[str, bytes] = {}
            for start in range(0, users, BATCH):
                memberships = []
                credentials = []
                for name in names[start : start + BATCH]:
                    user_id = ids[name]
                    key = os.urandom(KEY_BYTES)
                    keys[name] = key
                    sealed = ctx.keyring.seal(key, context=totp_context(user_id), random_bytes=os.urandom)
                    memberships.append(
                        {
                            "organisation_id": organisation_id,
                            "user_id": user_id,
                            "role": OrgRole.MEMBER.value,
                            "created_at": now,
                        }
                    )
                    credentials.append(
                        {
                            "user_id": user_id,
                            "state": "active",
                            "key_fingerprint": sealed.key_fingerprint,
                            "sealed_secret": sealed.blob,
                            "created_at": now,
                            "activated_at": now,
                            "last_used_step": None,
                            "drift_steps": 0,
                        }
                    )
                connection.execute(insert(t.memberships), memberships)
                connection.execute(insert(t.totp_credentials), credentials)
        registered = applications.add(ctx, name="bench", actor=None, client=ClientInfo())
    finally:
        runtime.engine.dispose()
    return Seeded(keys=keys, api_key=registered.api_key, seconds=time.monotonic() - started)
