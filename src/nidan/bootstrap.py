"""The composition root: reads settings, wires the real implementations into a ``ServiceContext``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from nidan.adapters.clock import SystemClock
from nidan.adapters.keyfiles import Keys, create_keys_if_missing, load_keys
from nidan.config import Settings
from nidan.core.backoff import BackoffPolicy
from nidan.core.passwords import PasswordHashing
from nidan.core.ports import Clock, RandomSource
from nidan.core.recovery import HashParameters
from nidan.db import engine as db_engine
from nidan.db import tables
from nidan.db.uow import SqlUnitOfWorkFactory
from nidan.errors import ConfigurationError, KeyMissing
from nidan.services.context import ServiceContext


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    services: ServiceContext


def prepare_storage(settings: Settings) -> Engine:
    """Create the data directory and keys on first start, and apply pending migrations."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if settings.keys_dir is None:
        create_keys_if_missing(settings.resolved_keys_dir)
    engine = db_engine.make_engine(settings.resolved_database_url)
    db_engine.upgrade(engine)
    return engine


def check_keys_cover_data(engine: Engine, keys: Keys) -> None:
    """Refuse to start when sealed data names a key we lack: better than every code being 'wrong'."""
    query = select(tables.totp_credentials.c.key_fingerprint).distinct()
    with engine.connect() as connection:
        named = {row[0] for row in connection.execute(query)}
    missing = sorted(named - keys.ring.fingerprints)
    if missing:
        raise KeyMissing(missing[0])


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, random_bytes: RandomSource | None = None
) -> Runtime:
    """Everything a face needs; an unusable database or data directory is a ``ConfigurationError`` that says so."""
    try:
        engine = prepare_storage(settings)
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(
            f"The database cannot be used: {reason}. Check NIDAN_DATABASE_URL (or database_url in nidan.toml) "
            "and that the database server is running."
        ) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"The data directory {settings.data_dir} cannot be prepared: {exc}. Check the path and its permissions."
        ) from exc
    keys = load_keys(settings.resolved_keys_dir)
    check_keys_cover_data(engine, keys)
    security = settings.security
    limits = settings.rate_limit
    cost = HashParameters(
        time_cost=security.argon2_time_cost,
        memory_cost_kib=security.argon2_memory_kib,
        parallelism=security.argon2_parallelism,
    )
    services = ServiceContext(
        uow=SqlUnitOfWorkFactory(engine),
        clock=clock or SystemClock(),
        random_bytes=random_bytes or os.urandom,
        keyring=keys.ring,
        hash_key=keys.hash_key,
        passwords=PasswordHashing(cost),
        recovery_hash=cost,
        issuer=security.issuer,
        session_lifetime=timedelta(hours=security.session_lifetime_hours),
        mfa_token_lifetime=timedelta(seconds=security.mfa_token_lifetime_seconds),
        mfa_token_max_attempts=security.mfa_token_max_attempts,
        step_up_window=timedelta(minutes=security.step_up_minutes),
        backoff=BackoffPolicy(limits.tolerated_failures, limits.max_block_seconds, limits.hard_limit),
        # Passwords are never hard-locked: anyone who knows a username could lock its owner out that way.
        password_backoff=BackoffPolicy(limits.tolerated_failures, limits.max_block_seconds, None),
        address_backoff=BackoffPolicy(limits.ip_tolerated_failures, limits.max_block_seconds, None),
    )
    return Runtime(settings=settings, engine=engine, services=services)
