"""The unit of work: one connection, one transaction, one commit per use case."""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from nidan.core import ports
from nidan.db import repositories as r
from nidan.db.audit import SqlAuditRepository
from nidan.db.throttles import SqlThrottleRepository


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

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def __enter__(self) -> SqlUnitOfWork:
        connection = self._engine.connect()
        connection.begin()
        self._connection = connection
        self.users = r.SqlUserRepository(connection)
        self.organisations = r.SqlOrganisationRepository(connection)
        self.totp = r.SqlTotpRepository(connection)
        self.recovery_codes = r.SqlRecoveryCodeRepository(connection)
        self.sessions = r.SqlSessionRepository(connection)
        self.mfa_challenges = r.SqlMfaChallengeRepository(connection)
        self.setup_tokens = r.SqlSetupTokenRepository(connection)
        self.clock_observations = r.SqlClockObservationRepository(connection)
        self.throttles = SqlThrottleRepository(connection)
        self.audit = SqlAuditRepository(connection)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._connection is not None
        try:
            if self._connection.in_transaction():
                self._connection.rollback()
        finally:
            self._connection.close()
            self._connection = None

    def commit(self) -> None:
        assert self._connection is not None
        self._connection.commit()


class SqlUnitOfWorkFactory:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine)
