"""The unit of work: one connection, one transaction, one commit per use case."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from nidan.core import ports
from nidan.db import repositories as r
from nidan.db.access_tokens import SqlAccessTokenRepository, SqlApplicationRepository
from nidan.db.audit import SqlAuditRepository
from nidan.db.organisations import SqlOrganisationRepository
from nidan.db.throttles import SqlThrottleRepository
from nidan.errors import DatabaseUnavailable

log = logging.getLogger("nidan.db")


class SqlUnitOfWork:
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

    def __init__(self, engine: Engine, before_commit: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._before_commit = before_commit
        self._connection: Connection | None = None

    def __enter__(self) -> SqlUnitOfWork:
        try:
            connection = self._engine.connect()
        except (OperationalError, PoolTimeout) as exc:
            # Refused (the server's connection limit, or down) or no pooled connection came free: nothing has been
            # read or written, so the client may simply try again. A failure inside a transaction stays a 500.
            log.warning("no database connection: %s", str(exc).splitlines()[0])
            raise DatabaseUnavailable() from exc
        connection.begin()
        self._connection = connection
        self.users = r.SqlUserRepository(connection)
        self.organisations = SqlOrganisationRepository(connection)
        self.totp = r.SqlTotpRepository(connection)
        self.recovery_codes = r.SqlRecoveryCodeRepository(connection)
        self.sessions = r.SqlSessionRepository(connection)
        self.mfa_challenges = r.SqlMfaChallengeRepository(connection)
        self.setup_tokens = r.SqlSetupTokenRepository(connection)
        self.clock_observations = r.SqlClockObservationRepository(connection)
        self.throttles = SqlThrottleRepository(connection)
        self.audit = SqlAuditRepository(connection)
        self.access_tokens = SqlAccessTokenRepository(connection)
        self.applications = SqlApplicationRepository(connection)
        self.recovery_links = r.SqlRecoveryLinkRepository(connection)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._connection is not None
        error = exc_info[1] if exc_info else None
        try:
            if self._connection.in_transaction():
                self._connection.rollback()
        finally:
            self._connection.close()
            self._connection = None
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            # The database server went away under this connection (a restart, a failover, a killed backend): the
            # transaction was lost whole, and the pool now reconnects. Try again, not a 500.
            log.warning("database connection lost: %s", str(error).splitlines()[0])
            raise DatabaseUnavailable() from error

    def commit(self) -> None:
        assert self._connection is not None
        if self._before_commit is not None:
            self._before_commit()
        self._connection.commit()


class SqlUnitOfWorkFactory:
    def __init__(self, engine: Engine, before_commit: Callable[[], None] | None = None) -> None:
        self.engine = engine
        #: TEST ONLY (fault injection, see ``commit_gate``); ``None`` in every real deployment.
        self.before_commit = before_commit

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, self.before_commit)


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
