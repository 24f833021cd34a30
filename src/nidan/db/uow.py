"""The unit of work: one connection, one transaction, one commit per use case; and the shared transaction, in which
several use cases each run in a savepoint of their own and commit together (group commit)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from nidan.core import ports
from nidan.db import repositories as r
from nidan.db import sessions
from nidan.db.access_tokens import SqlAccessTokenRepository, SqlApplicationRepository
from nidan.db.audit import SqlAuditRepository
from nidan.db.devices import SqlRememberedDeviceRepository
from nidan.db.dialects import take_sqlite_write_lock
from nidan.db.organisations import SqlOrganisationRepository
from nidan.db.prepared import Prepared
from nidan.db.schema_watch import SchemaWatch, missing_schema
from nidan.db.throttles import SqlThrottleRepository
from nidan.errors import DatabaseNotMigrated, DatabaseUnavailable

log = logging.getLogger("nidan.db")


class _Repositories:
    """Every repository, on one connection. They hold nothing but the connection."""

    users: ports.UserRepository
    organisations: ports.OrganisationRepository
    totp: ports.TotpRepository
    recovery_codes: ports.RecoveryCodeRepository
    sessions: ports.SessionRepository
    mfa_challenges: ports.MfaChallengeRepository
    setup_tokens: ports.SetupTokenRepository
    clock_observations: ports.ClockObservationRepository
    throttles: ports.ThrottleRepository
    audit: ports.AuditRepository
    access_tokens: ports.AccessTokenRepository
    applications: ports.ApplicationRepository
    recovery_links: ports.RecoveryLinkRepository
    remembered_devices: ports.RememberedDeviceRepository

    def _attach(self, connection: Connection) -> None:
        self.users = r.SqlUserRepository(connection)
        self.organisations = SqlOrganisationRepository(connection)
        self.totp = r.SqlTotpRepository(connection)
        self.recovery_codes = r.SqlRecoveryCodeRepository(connection)
        self.sessions = sessions.SqlSessionRepository(connection)
        self.mfa_challenges = sessions.SqlMfaChallengeRepository(connection)
        self.setup_tokens = sessions.SqlSetupTokenRepository(connection)
        self.clock_observations = r.SqlClockObservationRepository(connection)
        self.throttles = SqlThrottleRepository(connection)
        self._audit = SqlAuditRepository(connection)
        self.audit = self._audit
        self.access_tokens = SqlAccessTokenRepository(connection)
        self.applications = SqlApplicationRepository(connection)
        self.recovery_links = sessions.SqlRecoveryLinkRepository(connection)
        self.remembered_devices = SqlRememberedDeviceRepository(connection)


def _connect(engine: Engine) -> Connection:
    try:
        connection = engine.connect()
    except (OperationalError, PoolTimeout) as exc:
        # Refused (the server's connection limit, or down) or no pooled connection came free: nothing has been
        # read or written, so the client may simply try again. A failure inside a transaction stays a 500.
        log.warning("no database connection: %s", str(exc).splitlines()[0])
        raise DatabaseUnavailable() from exc
    connection.begin()
    return connection


def _end(connection: Connection, error: object, schema: SchemaWatch) -> None:
    """Roll back what was not committed and give the connection back; a lost connection is ``DatabaseUnavailable``,
    a missing table or column ``DatabaseNotMigrated`` (the one place either is told from another database error,
    for SQLAlchemy's statements and ``Prepared`` ones alike)."""
    database_error = error if isinstance(error, DBAPIError) else None
    not_migrated: DatabaseNotMigrated | None = None
    try:
        if connection.in_transaction():
            connection.rollback()
        if error is None:
            schema.ended_well(connection)
        elif (
            database_error is not None
            and not database_error.connection_invalidated
            and missing_schema(connection.dialect, database_error)
        ):
            # Emptied, recreated or at an older migration under us: every request would fail alike, so it is
            # answered 503 with what to do and logged once (SchemaWatch), not traced as a 500 each time.
            not_migrated = schema.not_migrated(connection, database_error)
    finally:
        connection.close()
    if not_migrated is not None:
        raise not_migrated from database_error
    if database_error is not None and database_error.connection_invalidated:
        # The database server went away under this connection (a restart, a failover, a killed backend): the
        # transaction was lost whole, and the pool now reconnects. Try again, not a 500.
        log.warning("database connection lost: %s", str(database_error).splitlines()[0])
        raise DatabaseUnavailable() from database_error


class SqlUnitOfWork(_Repositories):
    def __init__(
        self, engine: Engine, before_commit: Callable[[], None] | None = None, schema: SchemaWatch | None = None
    ) -> None:
        self._engine = engine
        self._before_commit = before_commit
        self._schema = schema or SchemaWatch.of(engine)
        self._connection: Connection | None = None

    def __enter__(self) -> SqlUnitOfWork:
        self._connection = _connect(self._engine)
        self._attach(self._connection)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._connection is not None
        connection, self._connection = self._connection, None
        _end(connection, exc_info[1] if exc_info else None, self._schema)

    def commit(self) -> None:
        assert self._connection is not None
        if self._before_commit is not None:
            self._before_commit()
        self._connection.commit()


_SAVEPOINT = Prepared(text("SAVEPOINT nidan_unit"))
_RELEASE = Prepared(text("RELEASE SAVEPOINT nidan_unit"))
_ROLLBACK_TO = Prepared(text("ROLLBACK TO SAVEPOINT nidan_unit"))


class SqlSharedTransaction:
    """One transaction for several use cases (``ports.SharedTransaction``, group commit): each use case's unit of
    work is a savepoint in it, handed out one after the other.

    On SQLite the write lock is taken as it opens: every unit may write, and a transaction that has read under a
    shared lock cannot always take the write lock later. The repositories hold nothing but the connection, so one
    set serves every unit."""

    def __init__(
        self, engine: Engine, before_commit: Callable[[], None] | None = None, schema: SchemaWatch | None = None
    ) -> None:
        self._engine = engine
        self._before_commit = before_commit
        self._schema = schema or SchemaWatch.of(engine)
        self._unit: _SavepointUnit | None = None

    def units(self) -> _SavepointUnit:
        assert self._unit is not None, "units are handed out inside the shared transaction"
        return self._unit

    def __enter__(self) -> SqlSharedTransaction:
        connection = _connect(self._engine)
        try:
            if connection.dialect.name == "sqlite":
                take_sqlite_write_lock(connection)
        except BaseException as error:
            _end(connection, error, self._schema)
            raise
        self._unit = _SavepointUnit(connection)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._unit is not None
        unit, self._unit = self._unit, None
        _end(unit.connection, exc_info[1] if exc_info else None, self._schema)

    def commit(self) -> None:
        assert self._unit is not None
        if self._before_commit is not None:
            self._before_commit()
        self._unit.connection.commit()


class _SavepointUnit(_Repositories):
    """A unit of work inside a ``SqlSharedTransaction``: ``SAVEPOINT`` as it opens; ``commit`` releases it (kept
    until the shared transaction commits); leaving without it rolls back to it, undoing this unit's work only."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._open = False
        self._committed = False
        self._attach(connection)

    def __enter__(self) -> _SavepointUnit:
        assert not self._open, "one unit of a shared transaction at a time"
        _SAVEPOINT.rowcount(self.connection)
        self._open, self._committed = True, False
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._open = False
        if not self._committed:
            self._audit.forget_head()  # an append this unit made is undone
            _ROLLBACK_TO.rowcount(self.connection)
            _RELEASE.rowcount(self.connection)

    def commit(self) -> None:
        assert self._open and not self._committed
        _RELEASE.rowcount(self.connection)
        self._committed = True


class SqlUnitOfWorkFactory:
    def __init__(self, engine: Engine, before_commit: Callable[[], None] | None = None) -> None:
        self.engine = engine
        #: TEST ONLY (fault injection, see ``commit_gate``); ``None`` in every real deployment.
        self.before_commit = before_commit
        self.schema = SchemaWatch.of(engine)

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, self.before_commit, self.schema)

    def shared(self) -> SqlSharedTransaction:
        return SqlSharedTransaction(self.engine, self.before_commit, self.schema)


#: The longest a gated commit waits for the test, so a forgotten gate never hangs a process for good.
GATE_TIMEOUT_SECONDS = 60.0


def commit_gate(gate: Path) -> Callable[[], None]:
    """TEST ONLY: before each commit, create the file ``gate`` and wait until it is removed (at most a minute).

    Set by ``NIDAN_TEST_COMMIT_GATE`` (read only by the composition root), so that a test can look at the database
    while a use case's transaction is open, then SIGKILL the process inside it or let it commit by removing the
    file. Never set it in production: every commit would wait.
    """

    def hold() -> None:
        gate.touch()
        deadline = time.monotonic() + GATE_TIMEOUT_SECONDS
        while gate.exists() and time.monotonic() < deadline:
            time.sleep(0.005)

    return hold
