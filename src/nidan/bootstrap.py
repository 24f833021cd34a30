"""The composition root: reads settings, wires the real implementations into a ``ServiceContext``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from nidan import __version__
from nidan.adapters import serving_address
from nidan.adapters.archive import TarArchives
from nidan.adapters.argon2_memory import Argon2Memory
from nidan.adapters.clock import SystemClock
from nidan.adapters.clocksync import SystemClockSync
from nidan.adapters.keyfiles import KeyFileDirectory, Keys, create_keys_if_missing, load_keys
from nidan.adapters.password_hashing import ThreadedPasswordHashing
from nidan.config import Settings
from nidan.core.backoff import BackoffPolicy
from nidan.core.keys import HASH_KEY_FILE, PURPOSE_HASH, PURPOSE_PRIMARY, RETIRED_DIR, seal_file
from nidan.core.maintenance_ports import ClockSyncProbe
from nidan.core.passwords import PasswordHashing
from nidan.core.policy import OrgPolicy
from nidan.core.ports import Clock, RandomSource
from nidan.core.recovery import HashParameters
from nidan.core.sealing import fingerprint
from nidan.db import dump as db_dump
from nidan.db import engine as db_engine
from nidan.db.admin import SqlDatabaseAdmin, unusable
from nidan.db.checkpoints import BackgroundCheckpoints
from nidan.db.uow import SqlUnitOfWorkFactory, commit_gate
from nidan.errors import ConfigurationError, HashKeyMismatch, HashKeyMissing, InstanceNotFound, KeyMissing
from nidan.services.context import ServiceContext
from nidan.services.maintenance import MaintenanceContext


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    services: ServiceContext

    @property
    def storage_is_embedded(self) -> bool:
        """SQLite in this process: a query is a function call, not a round trip to a server."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def background_work(self) -> Iterator[None]:
        """What a serving process runs beside its requests while it serves: SQLite's WAL checkpoints."""
        checkpoints = BackgroundCheckpoints(self.engine)
        checkpoints.start()
        try:
            yield
        finally:
            checkpoints.stop()


def prepare_storage(settings: Settings) -> Engine:
    """Create the data directory, and keys for a brand-new instance; apply pending migrations.

    Keys are created only for a brand-new instance (no data, no process has recorded its keys yet, ``keys_dir``
    not set): later, a new ``hash.key`` would silently end every session, and a new sealing key open nothing.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = db_engine.make_engine(
        settings.resolved_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout_seconds,
    )
    try:
        if settings.keys_dir is None:
            with engine.connect() as connection:
                brand_new = db_dump.is_brand_new(connection)
            if brand_new:
                create_keys_if_missing(settings.resolved_keys_dir)
        db_engine.upgrade_unless_current(engine)
    except BaseException:
        engine.dispose()  # a start that fails leaves no connection open behind it (the CLI runs in one process)
        raise
    return engine


def check_keys_cover_data(engine: Engine, keys_dir: Path, now: datetime) -> Keys:
    """Refuse to start with keys that do not fit the data: better than every code being 'wrong'.

    Every sealing key a stored secret names must be in the key directory (or its ``retired/``); ``hash.key`` must
    be there once the instance is in use, and be the one the database is used with; the primary sealing key the
    database names must be here. The first process records its keys' fingerprints. Returns the loaded keys."""
    database = SqlDatabaseAdmin(engine)
    for name, secrets in sorted(database.sealed_counts().items()):
        present = (keys_dir / seal_file(name)).exists() or (keys_dir / RETIRED_DIR / seal_file(name)).exists()
        if not present:  # a damaged file is reported by ``load_keys``, with what is wrong with it
            raise KeyMissing(name, secrets=secrets, keys_dir=str(keys_dir))
    if not (keys_dir / HASH_KEY_FILE).exists() and (database.has_data() or database.recorded_keys()):
        raise HashKeyMissing(str(keys_dir))
    keys = load_keys(keys_dir)
    ours = fingerprint(keys.hash_key)
    recorded = database.record_keys({PURPOSE_HASH: ours, PURPOSE_PRIMARY: keys.ring.primary}, now)
    if recorded.get(PURPOSE_HASH, ours) != ours:
        raise HashKeyMismatch(ours, recorded[PURPOSE_HASH], str(keys_dir))
    primary = recorded.get(PURPOSE_PRIMARY, keys.ring.primary)
    if primary not in keys.ring.fingerprints:
        raise KeyMissing(
            primary,
            keys_dir=str(keys_dir),
            message=f"The database's primary sealing key is {primary} (a key rotation made it), but "
            f"seal-{primary}.key is not in the key directory {keys_dir}. Copy it and `primary` from the host "
            "where the rotation ran (or restore them from your backup) into the key directory and restart nidan.",
        )
    return keys


#: TEST ONLY: a file path that makes every commit wait until a test removes it (see ``nidan.db.uow.commit_gate``),
#: so a test can SIGKILL a real process inside an open transaction.
COMMIT_GATE_VARIABLE = "NIDAN_TEST_COMMIT_GATE"


def serving_services(runtime: Runtime) -> ServiceContext:
    """The services a web process serves requests with: the runtime's, plus the test-only commit gate when set
    (start-up work such as migrations and the setup link is never held by it)."""
    gate = os.environ.get(COMMIT_GATE_VARIABLE)
    if not gate:
        return runtime.services
    gated = SqlUnitOfWorkFactory(runtime.engine, before_commit=commit_gate(Path(gate)))
    return replace(runtime.services, uow=gated, shared=gated.shared)


#: glibc's ``M_ARENA_MAX`` (``<malloc.h>``): how many malloc arenas the process's threads may use.
M_ARENA_MAX = -8


def share_one_malloc_arena() -> bool:
    """On glibc, make every thread allocate from one malloc arena; returns whether it did.

    glibc gives each thread that allocates an arena of its own (up to 8 per core) and keeps what a thread freed in
    that arena. Each password hash allocates argon2's buffer (its memory cost, 7 MiB by default) on a hashing
    thread: with an arena per hashing thread a worker keeps every buffer for good after its first sign-ins (2,
    sometimes 3 of them on two cores: +38 to +57 MiB at 19 MiB each), plus what each request thread's arena kept.
    Sharing one arena, a worker's peak after a run of sign-ins is about 4 MiB lower, the buffers often go back to the
    system when the run ends (when none is in use and they lie at the top of the heap), and a hash takes as long as
    before (it allocates once). Call it before the threads start: a thread keeps the arena it first allocated from.
    Nothing changes where the C library is not glibc (musl, macOS, Windows) or where the operator chose an arena
    count (``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``).
    """
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (macOS, musl)
        return False
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1))
    except (OSError, AttributeError):
        return False


def password_hashing(cost: HashParameters, threads: int) -> PasswordHashing:
    """Password checks on ``threads`` hashing threads of their own, each keeping its argon2 buffer (where cffi can
    make libargon2's allocation callbacks; a system that forbids them checks the usual way)."""
    try:
        memory: Argon2Memory | None = Argon2Memory()
    except (MemoryError, RuntimeError, SystemError):  # cffi could not build a callback here (no writable code)
        memory = None
    initializer = memory.keep_in_this_thread if memory is not None else None
    hashers = ThreadPoolExecutor(threads, "argon2", initializer=initializer)
    return ThreadedPasswordHashing(cost, hashers=hashers, memory=memory)


def hashing_threads(cpus: int | None, workers: int) -> int:
    """Password-hashing threads for one of ``workers`` processes: one per core between them. Each thread that has
    hashed keeps an argon2 buffer of the memory cost, and more hashes at once than cores only share the cores."""
    return max(1, (cpus or 1) // workers)


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, random_bytes: RandomSource | None = None
) -> Runtime:
    """Everything a face needs; an unusable database or data directory is a ``ConfigurationError`` that says so."""
    try:
        clock = clock or SystemClock()
        engine = prepare_storage(settings)
        try:
            keys = check_keys_cover_data(engine, settings.resolved_keys_dir, clock.now())
        except BaseException:
            engine.dispose()  # keys that do not fit the data: refused, with no connection left open
            raise
    except SQLAlchemyError as exc:
        raise unusable(exc) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"The data directory {settings.data_dir} cannot be prepared: {exc}. Check the path and its permissions."
        ) from exc
    security = settings.security
    limits = settings.rate_limit
    share_one_malloc_arena()  # before the hashing and request threads start
    cost = HashParameters(
        time_cost=security.argon2_time_cost,
        memory_cost_kib=security.argon2_memory_kib,
        parallelism=security.argon2_parallelism,
    )
    units = SqlUnitOfWorkFactory(engine)
    services = ServiceContext(
        uow=units,
        shared=units.shared,
        clock=clock,
        random_bytes=random_bytes or os.urandom,
        keyring=keys.ring,
        hash_key=keys.hash_key,
        passwords=password_hashing(cost, hashing_threads(os.cpu_count(), settings.server.workers)),
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
        token_max_lifetime_days=security.token_max_lifetime_days,
        password_authentication_for_git=security.password_authentication_for_git,
        default_org_policy=OrgPolicy(
            two_factor=settings.policy.two_factor,
            grace_period_days=settings.policy.grace_period_days,
            allowed_methods=frozenset(settings.policy.allowed_methods),
            tolerated_failures=settings.policy.tolerated_failures,
        ),
        remember_device_days=settings.policy.remember_device_days,
    )
    return Runtime(settings=settings, engine=engine, services=services)


@dataclass(frozen=True)
class Maintenance:
    settings: Settings
    engine: Engine
    services: MaintenanceContext


def build_maintenance(
    settings: Settings,
    *,
    clock: Clock | None = None,
    clock_sync: ClockSyncProbe | None = None,
    create_data_dir: bool = False,
) -> Maintenance:
    """What ``doctor``, ``backup``, ``restore`` and ``keys`` need, read-only: unlike ``build_runtime`` this creates
    no keys and applies no migration (``create_data_dir`` only makes the directory a restore writes into)."""
    if create_data_dir:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigurationError(
                f"The data directory {settings.data_dir} cannot be created: {exc.strerror}. Check the path."
            ) from exc
    engine = db_engine.make_engine(
        settings.resolved_database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout_seconds,
    )
    services = MaintenanceContext(
        database=SqlDatabaseAdmin(engine),
        keys=KeyFileDirectory(settings.resolved_keys_dir),
        archives=TarArchives(),
        clock_sync=clock_sync or SystemClockSync(),
        clock=clock or SystemClock(),
        random_bytes=os.urandom,
        uow=SqlUnitOfWorkFactory(engine),
        version=__version__,
    )
    return Maintenance(settings=settings, engine=engine, services=services)


# -- the instance a command is pointed at --------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where a command looks for its instance, in words for the person at the terminal (no password shown)."""

    data_dir: str
    database: str

    def __str__(self) -> str:
        return f"data directory {self.data_dir}; database {self.database}"


def place_of(settings: Settings) -> Place:
    """The data directory as configured (``./nidan-data`` for a relative one: relative to the working directory)
    and the database: SQLite's file, or the server's URL without its password."""
    data_dir = settings.data_dir
    shown = str(data_dir) if data_dir.is_absolute() or str(data_dir).startswith(".") else f"./{data_dir}"
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        database = f"SQLite, {url.database}"
    else:
        database = f"PostgreSQL, {url.render_as_string(hide_password=True)}"
    return Place(data_dir=shown, database=database)


def instance_missing(settings: Settings) -> bool:
    """Whether there is certainly no nidan instance where ``settings`` point: no SQLite file, or a database that
    nidan never set up (no schema revision). Only reads: it creates no file, no directory, no key. A database that
    cannot be reached is not "missing": the command goes on and reports why it cannot be used."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return False
        if not Path(url.database).exists():
            return True
    engine = create_engine(url, poolclass=NullPool)  # no PRAGMAs: the file is looked at, not set up
    try:
        with engine.connect() as connection:
            return db_dump.current_revision(connection) is None
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def require_instance(settings: Settings) -> None:
    """Refuse (``instance_not_found``) unless an instance is where ``settings`` point: every command but ``nidan
    serve``, ``nidan init`` and ``nidan restore`` uses an instance; none of them creates one on the way."""
    if instance_missing(settings):
        place = place_of(settings)
        raise InstanceNotFound(place.data_dir, place.database)


def record_serving_address(settings: Settings, host: str, port: int) -> Path:
    """Note in the data directory where ``nidan serve`` listens, for links other commands print later."""
    address = serving_address.ServingAddress(host=host, port=port, started_at=datetime.now(UTC))
    return serving_address.record(settings.data_dir, address)


def recorded_serving_address(settings: Settings) -> tuple[str, int] | None:
    """The host and port the last ``nidan serve`` on this data directory listened on, or ``None``."""
    address = serving_address.recorded(settings.data_dir)
    return None if address is None else (address.host, address.port)
