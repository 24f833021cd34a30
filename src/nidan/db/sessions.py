"""The short-lived, single-use records of signing in: sessions, the step between password and code, the setup link
and administrators' recovery links. Each is used once by one conditional UPDATE whose row count tells who won."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, insert, or_, select, update

from nidan.core.models import LinkPurpose, MfaChallenge, OneTimeLink, SessionRecord
from nidan.db import tables as t
from nidan.db.prepared import Prepared
from nidan.db.repositories import Repository

_sessions = t.sessions.c
_challenges = t.mfa_challenges.c
_INSERT_SESSION = Prepared(
    insert(t.sessions).returning(_sessions.id),
    columns=(
        "user_id",
        "token_hash",
        "created_at",
        "expires_at",
        "client_ip",
        "user_agent",
        "verified_at",
        "purpose",
        "last_seen_at",
    ),
)
_LIVE_SESSION = (_sessions.token_hash == bindparam("session_hash"), _sessions.revoked_at.is_(None))
_VALID_SESSION = Prepared(
    select(
        _sessions.id,
        _sessions.user_id,
        _sessions.created_at,
        _sessions.expires_at,
        _sessions.verified_at,
        _sessions.purpose,
        _sessions.last_seen_at,
    ).where(*_LIVE_SESSION, _sessions.expires_at > bindparam("now"))
)
_REVOKE_SESSION = Prepared(update(t.sessions).where(*_LIVE_SESSION).values(revoked_at=bindparam("at")))
_INSERT_CHALLENGE = Prepared(
    insert(t.mfa_challenges), columns=("user_id", "token_hash", "created_at", "expires_at", "attempts")
)
_VALID_CHALLENGE = (
    _challenges.token_hash == bindparam("challenge_hash"),
    _challenges.used_at.is_(None),
    _challenges.expires_at > bindparam("now"),
    _challenges.attempts < bindparam("max_attempts"),
)
_CHALLENGE_COLUMNS = (_challenges.id, _challenges.user_id, _challenges.expires_at, _challenges.attempts)
_GET_CHALLENGE = Prepared(select(*_CHALLENGE_COLUMNS).where(*_VALID_CHALLENGE))
_CLAIM_ATTEMPT = Prepared(
    update(t.mfa_challenges)
    .where(*_VALID_CHALLENGE)
    .values(attempts=_challenges.attempts + 1)
    .returning(*_CHALLENGE_COLUMNS)
)
_CONSUME_CHALLENGE = Prepared(
    update(t.mfa_challenges)
    .where(_challenges.id == bindparam("challenge_id"), _challenges.used_at.is_(None))
    .values(used_at=bindparam("at"))
)


class SqlSessionRepository(Repository):
    def add(
        self,
        user_id: int,
        token_hash: bytes,
        at: datetime,
        expires_at: datetime,
        ip: str | None,
        agent: str | None,
        purpose: str = "full",
        *,
        verified: bool = True,
    ) -> int:
        row = {
            "user_id": user_id,
            "token_hash": token_hash,
            "created_at": at,
            "expires_at": expires_at,
            "client_ip": ip,
            "user_agent": agent[:512] if agent else None,
            # A remembered browser's sign-in proved no second step now: it must not count as a recent verification.
            "verified_at": at if verified else None,
            "purpose": purpose,
            "last_seen_at": at,
        }
        return int(_INSERT_SESSION.first(self._c, row).id)

    def get_valid(self, token_hash: bytes, now: datetime) -> SessionRecord | None:
        row = _VALID_SESSION.first(self._c, {"session_hash": token_hash, "now": now})
        if row is None:
            return None
        return SessionRecord(
            id=row.id,
            user_id=row.user_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            verified_at=row.verified_at,
            purpose=row.purpose,
            last_seen_at=row.last_seen_at,
        )

    def revoke(self, token_hash: bytes, at: datetime) -> bool:
        return _REVOKE_SESSION.rowcount(self._c, {"session_hash": token_hash, "at": at}) == 1

    def list_live(self, user_id: int, now: datetime) -> Sequence[SessionRecord]:
        c = t.sessions.c
        rows = self._c.execute(
            select(t.sessions)
            .where(c.user_id == user_id, c.revoked_at.is_(None), c.expires_at > now)
            .order_by(c.created_at.desc(), c.id.desc())
        )
        return [
            SessionRecord(
                id=row.id,
                user_id=row.user_id,
                created_at=row.created_at,
                expires_at=row.expires_at,
                verified_at=row.verified_at,
                purpose=row.purpose,
                client_ip=row.client_ip,
                user_agent=row.user_agent,
                last_seen_at=row.last_seen_at,
            )
            for row in rows
        ]

    def touch(self, session_id: int, at: datetime, *, not_since: datetime) -> None:
        c = t.sessions.c
        seen_long_ago = or_(c.last_seen_at.is_(None), c.last_seen_at < not_since)
        self._c.execute(update(t.sessions).where(c.id == session_id, seen_long_ago).values(last_seen_at=at))

    def revoke_others(self, user_id: int, keep_session_id: int, at: datetime) -> int:
        c = t.sessions.c
        others = (c.user_id == user_id, c.id != keep_session_id, c.revoked_at.is_(None), c.expires_at > at)
        return self._c.execute(update(t.sessions).where(*others).values(revoked_at=at)).rowcount

    def revoke_of_user(self, user_id: int, session_id: int, at: datetime) -> bool:
        c = t.sessions.c
        mine = (c.id == session_id, c.user_id == user_id, c.revoked_at.is_(None))
        return self._c.execute(update(t.sessions).where(*mine).values(revoked_at=at)).rowcount == 1

    def revoke_by_id(self, session_id: int, at: datetime) -> bool:
        c = t.sessions.c
        result = self._c.execute(
            update(t.sessions).where(c.id == session_id, c.revoked_at.is_(None)).values(revoked_at=at)
        )
        return result.rowcount == 1

    def revoke_enrolments(self, user_id: int, at: datetime) -> int:
        """End the user's enrolment-only sessions (2FA is set up: none may set it up again)."""
        c = t.sessions.c
        live = (c.user_id == user_id, c.purpose == "enrolment", c.revoked_at.is_(None))
        return self._c.execute(update(t.sessions).where(*live).values(revoked_at=at)).rowcount

    def revoke_all_for_user(self, user_id: int, at: datetime) -> int:
        c = t.sessions.c
        live = (c.user_id == user_id, c.revoked_at.is_(None), c.expires_at > at)
        return self._c.execute(update(t.sessions).where(*live).values(revoked_at=at)).rowcount


class SqlMfaChallengeRepository(Repository):
    def add(self, user_id: int, token_hash: bytes, at: datetime, expires_at: datetime) -> None:
        _INSERT_CHALLENGE.rowcount(
            self._c,
            {"user_id": user_id, "token_hash": token_hash, "created_at": at, "expires_at": expires_at, "attempts": 0},
        )

    def get_valid(self, token_hash: bytes, now: datetime, max_attempts: int) -> MfaChallenge | None:
        row = _GET_CHALLENGE.first(self._c, {"challenge_hash": token_hash, "now": now, "max_attempts": max_attempts})
        if row is None:
            return None
        return MfaChallenge(id=row.id, user_id=row.user_id, expires_at=row.expires_at, attempts=row.attempts)

    def claim_attempt(self, token_hash: bytes, now: datetime, max_attempts: int) -> MfaChallenge | None:
        row = _CLAIM_ATTEMPT.first(self._c, {"challenge_hash": token_hash, "now": now, "max_attempts": max_attempts})
        if row is None:
            return None
        return MfaChallenge(id=row.id, user_id=row.user_id, expires_at=row.expires_at, attempts=row.attempts)

    def consume(self, challenge_id: int, at: datetime) -> bool:
        return _CONSUME_CHALLENGE.rowcount(self._c, {"challenge_id": challenge_id, "at": at}) == 1


class SqlSetupTokenRepository(Repository):
    def replace(self, token_hash: bytes, at: datetime, expires_at: datetime) -> None:
        c = t.setup_tokens.c
        self._c.execute(update(t.setup_tokens).where(c.used_at.is_(None)).values(used_at=at))
        self._c.execute(insert(t.setup_tokens).values(token_hash=token_hash, created_at=at, expires_at=expires_at))

    def is_valid(self, token_hash: bytes, now: datetime) -> bool:
        c = t.setup_tokens.c
        query = select(c.id).where(c.token_hash == token_hash, c.used_at.is_(None), c.expires_at > now)
        return self._c.execute(query).first() is not None

    def consume(self, token_hash: bytes, now: datetime) -> bool:
        c = t.setup_tokens.c
        result = self._c.execute(
            update(t.setup_tokens)
            .where(c.token_hash == token_hash, c.used_at.is_(None), c.expires_at > now)
            .values(used_at=now)
        )
        return result.rowcount == 1


class SqlRecoveryLinkRepository(Repository):
    def add(
        self,
        user_id: int,
        token_hash: bytes,
        at: datetime,
        expires_at: datetime,
        *,
        purpose: LinkPurpose = LinkPurpose.RECOVERY,
    ) -> None:
        c = t.recovery_links.c
        # The earlier ones expire now (rather than count as used: nobody used them, and their holder is told so).
        self._c.execute(
            update(t.recovery_links)
            .where(c.user_id == user_id, c.purpose == purpose.value, c.used_at.is_(None), c.expires_at > at)
            .values(expires_at=at)
        )
        self._c.execute(
            insert(t.recovery_links).values(
                user_id=user_id, token_hash=token_hash, created_at=at, expires_at=expires_at, purpose=purpose.value
            )
        )

    def consume(self, token_hash: bytes, now: datetime, *, purpose: LinkPurpose = LinkPurpose.RECOVERY) -> int | None:
        c = t.recovery_links.c
        row = self._c.execute(
            update(t.recovery_links)
            .where(c.token_hash == token_hash, c.purpose == purpose.value, c.used_at.is_(None), c.expires_at > now)
            .values(used_at=now)
            .returning(c.user_id)
        ).first()
        return int(row.user_id) if row else None

    def is_valid(self, token_hash: bytes, now: datetime, *, purpose: LinkPurpose = LinkPurpose.RECOVERY) -> bool:
        c = t.recovery_links.c
        query = select(c.id).where(
            c.token_hash == token_hash, c.purpose == purpose.value, c.used_at.is_(None), c.expires_at > now
        )
        return self._c.execute(query).first() is not None

    def find(self, token_hash: bytes, *, purpose: LinkPurpose) -> OneTimeLink | None:
        c = t.recovery_links.c
        query = select(c.user_id, c.created_at, c.expires_at, c.used_at).where(
            c.token_hash == token_hash, c.purpose == purpose.value
        )
        row = self._c.execute(query).first()
        if row is None:
            return None
        return OneTimeLink(row.user_id, purpose, row.created_at, row.expires_at, row.used_at)
