"""Every query nidan makes, one repository per aggregate, all on one transaction's connection.

Single-use things are consumed by one conditional UPDATE whose row count tells who won (DESIGN.md rule 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from nidan.core.backoff import ThrottleState
from nidan.core.models import (
    ClockObservation,
    InstanceRole,
    NewUser,
    RecoveryCodeSet,
    TotpCredential,
    User,
)
from nidan.core.ports import SecondStep
from nidan.core.sealing import Sealed
from nidan.db import tables as t
from nidan.db.dialects import take_sqlite_write_lock
from nidan.db.prepared import Prepared
from nidan.db.second_step import ACTIVE, LOCK_USER_BY_KEY, SECOND_STEP
from nidan.errors import UsernameTaken

PENDING = "pending"

# The statements of the verify path, built once with bound parameters and run as ``Prepared`` statements (the
# driver's own execute: SQLAlchemy's execution layer was half of a verify's CPU).
_users = t.users.c
_totps = t.totp_credentials.c
_USER_BY_ID = Prepared(select(t.users).where(_users.id == bindparam("user_id")))
_SELECT_USER_BY_KEY = select(t.users).where(_users.username_key == bindparam("key"))
_USER_BY_KEY = Prepared(_SELECT_USER_BY_KEY)
_USER_BY_KEY_FOR_UPDATE = Prepared(_SELECT_USER_BY_KEY.with_for_update())
_LOCK_USER_ROW = Prepared(select(_users.id).where(_users.id == bindparam("user_id")).with_for_update())
_TOTP_IN_STATE = Prepared(
    select(t.totp_credentials).where(_totps.user_id == bindparam("user_id"), _totps.state == bindparam("state"))
)
_CONSUME_STEP = Prepared(
    update(t.totp_credentials)
    .where(
        _totps.id == bindparam("credential_id"),
        _totps.state == ACTIVE,
        _totps.last_used_step.is_(None) | (_totps.last_used_step < bindparam("step")),
    )
    .values(last_used_step=bindparam("step"), drift_steps=bindparam("drift"))
)

# The sign-in path's statements, built once likewise (half of a sign-in's CPU outside argon2 went to building
# them). In an UPDATE, bound names differ from column names: those are reserved for its SET clause.
_codes = t.recovery_codes.c
_code_sets = t.recovery_code_sets.c
_RECORD_SIGN_IN = Prepared(
    update(t.users).where(_users.id == bindparam("user_id")).values(last_sign_in_at=bindparam("at"))
)
_COUNT_UNUSED_CODES = Prepared(
    select(func.count().label("unused"))
    .select_from(t.recovery_codes.join(t.recovery_code_sets, _codes.set_id == _code_sets.id))
    .where(_code_sets.user_id == bindparam("user_id"), _code_sets.revoked_at.is_(None), _codes.used_at.is_(None))
)
_INSERT_CLOCK_OBSERVATION = insert(t.clock_observations)


def user_from_row(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        email=row.email,
        role=InstanceRole(row.role),
        password_hash=row.password_hash,
        created_at=row.created_at,
        last_sign_in_at=row.last_sign_in_at,
        two_factor_grace_started_at=row.two_factor_grace_started_at,
        registration_required_at=row.registration_required_at,
        default_method=row.default_method,
        locale=row.locale,
        time_zone=row.time_zone,
        disabled_at=row.disabled_at,
        disabled_reason=row.disabled_reason,
    )


def _second_step(row: Any) -> SecondStep:
    """``SECOND_STEP``'s row. The user and the authenticator are built even from its stand-in values (discarded
    then), so that converting the row costs the same whether or not they exist."""
    user = user_from_row(row)
    authenticator = TotpCredential(
        id=row.totp_id,
        user_id=row.totp_user_id,
        active=True,
        key_fingerprint=row.totp_key_fingerprint,
        sealed_secret=row.totp_sealed_secret,
        created_at=row.totp_created_at,
        activated_at=row.totp_activated_at,
        last_used_step=row.totp_last_used_step,
        drift_steps=row.totp_drift_steps,
    )
    backoff = None
    if row.backoff_id is not None:
        backoff = ThrottleState(
            failures=row.backoff_failures,
            blocked_until=row.backoff_blocked_until,
            locked_at=row.backoff_locked_at,
            version=row.backoff_version,
        )
    known = row.known_user_id is not None
    return SecondStep(
        user if known else None, authenticator if known and row.known_totp_id is not None else None, backoff
    )


def _totp(row: Any) -> TotpCredential:
    return TotpCredential(
        id=row.id,
        user_id=row.user_id,
        active=row.state == ACTIVE,
        key_fingerprint=row.key_fingerprint,
        sealed_secret=row.sealed_secret,
        created_at=row.created_at,
        activated_at=row.activated_at,
        last_used_step=row.last_used_step,
        drift_steps=row.drift_steps,
    )


class Repository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def _lock_user(self, user_id: int) -> None:
        """Serialise a user's read-then-write changes ("replace everything", "count, then add"): on PostgreSQL a
        READ COMMITTED statement does not see rows another transaction inserts meanwhile, so the user's row is
        locked FOR UPDATE. SQLite has no FOR UPDATE: its one write lock is taken instead, before anything is read
        (``take_sqlite_write_lock``)."""
        if self._c.dialect.name == "sqlite":
            take_sqlite_write_lock(self._c)
        else:
            _LOCK_USER_ROW.first(self._c, {"user_id": user_id})


class SqlUserRepository(Repository):
    def add(self, user: NewUser) -> User:
        values = {
            "username": user.username,
            "username_key": user.username_key,
            "email": user.email,
            "role": user.role.value,
            "password_hash": user.password_hash,
            "created_at": user.created_at,
        }
        try:
            # No savepoint (pysqlite would commit on its release): a lost race ends the whole use case anyway.
            new_id = self._c.execute(insert(t.users).values(**values).returning(t.users.c.id)).scalar_one()
        except IntegrityError as exc:
            raise UsernameTaken() from exc
        found = self.get(new_id)
        assert found is not None
        return found

    def get(self, user_id: int) -> User | None:
        row = _USER_BY_ID.first(self._c, {"user_id": user_id})
        return user_from_row(row) if row else None

    def get_by_username_key(self, username_key: str) -> User | None:
        row = _USER_BY_KEY.first(self._c, {"key": username_key})
        return user_from_row(row) if row else None

    def lock_by_username_key(self, username_key: str) -> User | None:
        """The user, locked as ``lock`` locks, found and locked in one step; ``None`` when nobody has that name
        (on SQLite the write lock is taken all the same, so what the caller does next is serialised either way)."""
        if self._c.dialect.name == "sqlite":
            take_sqlite_write_lock(self._c)
            return self.get_by_username_key(username_key)
        row = _USER_BY_KEY_FOR_UPDATE.first(self._c, {"key": username_key})
        return user_from_row(row) if row else None

    def lock_for_second_step(self, username_key: str | None, unknown_key: str) -> SecondStep:
        # The same statements, whoever has the name or not (db/second_step.py says why).
        if self._c.dialect.name == "sqlite":
            take_sqlite_write_lock(self._c)  # nobody else writes until this transaction ends
        # PostgreSQL locks the user's row first, on its own: one statement that locked it and read the rest would
        # see the authenticator and backoff rows as they were before it waited for the lock (READ COMMITTED
        # re-reads only the locked rows then), and a concurrent wrong code would go uncounted. Nobody locked:
        # nobody is read either, even a user who took the name a moment ago.
        elif LOCK_USER_BY_KEY.first(self._c, {"key": username_key}) is None:
            username_key = None
        return _second_step(SECOND_STEP.first(self._c, {"key": username_key, "unknown_key": unknown_key}))

    def list_all(self) -> Sequence[User]:
        return [user_from_row(r) for r in self._c.execute(select(t.users).order_by(t.users.c.username_key))]

    def count_with_role(self, role: InstanceRole) -> int:
        query = select(func.count()).select_from(t.users).where(t.users.c.role == role.value)
        return int(self._c.execute(query).scalar_one())

    def lock_enabled_with_role(self, role: InstanceRole) -> int:
        """Lock every user of ``role`` (SQLite: its write lock) and count those not disabled."""
        if self._c.dialect.name == "sqlite":
            take_sqlite_write_lock(self._c)
            query = select(t.users.c.disabled_at).where(t.users.c.role == role.value)
        else:
            query = (
                select(t.users.c.disabled_at)
                .where(t.users.c.role == role.value)
                .order_by(t.users.c.id)
                .with_for_update()
            )
        return sum(1 for disabled_at in self._c.execute(query).scalars() if disabled_at is None)

    def set_disabled(self, user_id: int, at: datetime | None, reason: str | None) -> None:
        self._c.execute(update(t.users).where(t.users.c.id == user_id).values(disabled_at=at, disabled_reason=reason))

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        self._c.execute(update(t.users).where(t.users.c.id == user_id).values(password_hash=password_hash))

    def delete(self, user_id: int) -> bool:
        # ON DELETE CASCADE takes every row referring to the user along (SQLite: foreign_keys=ON on every
        # connection, ``db.engine``); the audit events name users without a foreign key and stay.
        return self._c.execute(delete(t.users).where(t.users.c.id == user_id)).rowcount == 1

    def set_preferences(self, user_id: int, locale: str | None, time_zone: str | None) -> None:
        self._c.execute(update(t.users).where(t.users.c.id == user_id).values(locale=locale, time_zone=time_zone))

    def set_default_method(self, user_id: int, method: str | None) -> None:
        self._c.execute(update(t.users).where(t.users.c.id == user_id).values(default_method=method))

    def record_sign_in(self, user_id: int, at: datetime) -> None:
        _RECORD_SIGN_IN.rowcount(self._c, {"user_id": user_id, "at": at})

    def lock(self, user_id: int) -> None:
        self._lock_user(user_id)

    def start_grace(self, user_id: int, at: datetime) -> None:
        c = t.users.c
        self._c.execute(
            update(t.users)
            .where(c.id == user_id, c.two_factor_grace_started_at.is_(None))
            .values(two_factor_grace_started_at=at)
        )

    def require_registration(self, user_id: int, at: datetime | None) -> None:
        self._c.execute(update(t.users).where(t.users.c.id == user_id).values(registration_required_at=at))

    def registered(self, user_id: int) -> None:
        """2FA was set up: no grace period runs and no registration is asked for any more."""
        self._c.execute(
            update(t.users)
            .where(t.users.c.id == user_id)
            .values(two_factor_grace_started_at=None, registration_required_at=None)
        )


class SqlTotpRepository(Repository):
    def _get(self, user_id: int, state: str) -> TotpCredential | None:
        row = _TOTP_IN_STATE.first(self._c, {"user_id": user_id, "state": state})
        return _totp(row) if row else None

    def get_active(self, user_id: int) -> TotpCredential | None:
        return self._get(user_id, ACTIVE)

    def get_pending(self, user_id: int) -> TotpCredential | None:
        return self._get(user_id, PENDING)

    def replace_pending(self, user_id: int, sealed: Sealed, at: datetime) -> None:
        c = t.totp_credentials.c
        self._lock_user(user_id)
        self._c.execute(delete(t.totp_credentials).where(c.user_id == user_id, c.state == PENDING))
        self._c.execute(
            insert(t.totp_credentials).values(
                user_id=user_id,
                state=PENDING,
                key_fingerprint=sealed.key_fingerprint,
                sealed_secret=sealed.blob,
                created_at=at,
                drift_steps=0,
            )
        )

    def consume_step(self, credential_id: int, step: int, drift_steps: int) -> bool:
        changed = _CONSUME_STEP.rowcount(self._c, {"credential_id": credential_id, "step": step, "drift": drift_steps})
        return changed == 1

    def activate(self, credential_id: int, step: int, drift_steps: int, at: datetime) -> bool:
        c = t.totp_credentials.c
        result = self._c.execute(
            update(t.totp_credentials)
            .where(c.id == credential_id, c.state == PENDING)
            .values(state=ACTIVE, activated_at=at, last_used_step=step, drift_steps=drift_steps)
        )
        return result.rowcount == 1

    def delete_active(self, user_id: int) -> int:
        c = t.totp_credentials.c
        return self._c.execute(delete(t.totp_credentials).where(c.user_id == user_id, c.state == ACTIVE)).rowcount

    def delete_all(self, user_id: int) -> int:
        return self._c.execute(delete(t.totp_credentials).where(t.totp_credentials.c.user_id == user_id)).rowcount

    def count_by_key(self) -> Mapping[str, int]:
        c = t.totp_credentials.c
        rows = self._c.execute(select(c.key_fingerprint, func.count()).group_by(c.key_fingerprint))
        return {str(name): int(count) for name, count in rows}

    def sealed_elsewhere(self, key_fingerprint: str, *, after_id: int, limit: int) -> Sequence[TotpCredential]:
        c = t.totp_credentials.c
        query = (
            select(t.totp_credentials)
            .where(c.key_fingerprint != key_fingerprint, c.id > after_id)
            .order_by(c.id)
            .limit(limit)
        )
        return [_totp(row) for row in self._c.execute(query)]

    def reseal(self, credential_id: int, expected_key: str, sealed: Sealed) -> bool:
        c = t.totp_credentials.c
        result = self._c.execute(
            update(t.totp_credentials)
            .where(c.id == credential_id, c.key_fingerprint == expected_key)
            .values(key_fingerprint=sealed.key_fingerprint, sealed_secret=sealed.blob)
        )
        return result.rowcount == 1


class SqlRecoveryCodeRepository(Repository):
    def get_current(self, user_id: int) -> RecoveryCodeSet | None:
        # One statement, whether or not the user has a set: the verify API reads it for names without one too.
        s = t.recovery_code_sets.c
        r = t.recovery_codes.c
        current = select(func.max(s.id)).where(s.user_id == user_id, s.revoked_at.is_(None)).scalar_subquery()
        rows = self._c.execute(
            select(s.id, s.user_id, s.salt, s.hash_parameters, s.created_at, r.position, r.digest)
            .select_from(t.recovery_code_sets.outerjoin(t.recovery_codes, (r.set_id == s.id) & r.used_at.is_(None)))
            .where(s.id == current)
            .order_by(r.position)
        ).all()
        if not rows:
            return None
        row = rows[0]
        return RecoveryCodeSet(
            id=row.id,
            user_id=row.user_id,
            salt=row.salt,
            hash_parameters=row.hash_parameters,
            created_at=row.created_at,
            unused=tuple((code.position, code.digest) for code in rows if code.position is not None),
        )

    def replace(self, user_id: int, salt: bytes, hash_parameters: str, digests: Sequence[bytes], at: datetime) -> None:
        self._lock_user(user_id)
        self.revoke_all(user_id, at)
        set_id = self._c.execute(
            insert(t.recovery_code_sets)
            .values(user_id=user_id, salt=salt, hash_parameters=hash_parameters, created_at=at)
            .returning(t.recovery_code_sets.c.id)
        ).scalar_one()
        self._c.execute(
            insert(t.recovery_codes),
            [{"set_id": set_id, "position": i, "digest": d} for i, d in enumerate(digests, start=1)],
        )

    def consume(self, set_id: int, position: int, at: datetime) -> bool:
        r = t.recovery_codes.c
        s = t.recovery_code_sets.c
        live_set = select(s.id).where(s.id == set_id, s.revoked_at.is_(None)).scalar_subquery()
        result = self._c.execute(
            update(t.recovery_codes)
            .where(r.set_id == live_set, r.position == position, r.used_at.is_(None))
            .values(used_at=at)
        )
        return result.rowcount == 1

    def revoke_all(self, user_id: int, at: datetime) -> int:
        s = t.recovery_code_sets.c
        return self._c.execute(
            update(t.recovery_code_sets).where(s.user_id == user_id, s.revoked_at.is_(None)).values(revoked_at=at)
        ).rowcount

    def count_unused(self, user_id: int) -> int:
        return int(_COUNT_UNUSED_CODES.first(self._c, {"user_id": user_id}).unused)


class SqlClockObservationRepository(Repository):
    def add(self, user_id: int, observation: ClockObservation) -> None:
        self._c.execute(
            _INSERT_CLOCK_OBSERVATION,
            {
                "user_id": user_id,
                "observed_at": observation.observed_at,
                "offset_seconds": observation.offset_seconds,
                "context": observation.context,
            },
        )

    def recent(self, user_id: int, since: datetime) -> Sequence[ClockObservation]:
        c = t.clock_observations.c
        rows = self._c.execute(
            select(c.observed_at, c.offset_seconds, c.context)
            .where(c.user_id == user_id, c.observed_at >= since)
            .order_by(c.observed_at.desc())
            .limit(20)
        )
        return [ClockObservation(r.observed_at, r.offset_seconds, r.context) for r in rows]
