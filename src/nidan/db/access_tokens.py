"""Queries for access tokens (personal access tokens, app passwords) and relying applications' API keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from nidan.core.access_tokens import AccessToken, Application, Scope, TokenKind, decode_scopes, encode_scopes
from nidan.db import tables as t
from nidan.db.prepared import Prepared
from nidan.errors import ApplicationExists

_tokens = t.access_tokens
_apps = t.applications
#: Built once (bound parameter): every verify call looks its application up.
_APP_BY_KEY = Prepared(select(_apps).where(_apps.c.key_hash == bindparam("key_hash")))


def _token(row: Any) -> AccessToken:
    return AccessToken(
        id=row.id,
        user_id=row.user_id,
        kind=TokenKind(row.kind),
        name=row.name,
        scopes=decode_scopes(row.scopes),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _application(row: Any) -> Application:
    return Application(
        id=row.id, name=row.name, created_at=row.created_at, created_by=row.created_by, last_used_at=row.last_used_at
    )


class SqlAccessTokenRepository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(
        self,
        user_id: int,
        kind: TokenKind,
        name: str,
        token_hash: bytes,
        scopes: Sequence[Scope],
        at: datetime,
        expires_at: datetime | None,
    ) -> AccessToken:
        row = self._c.execute(
            insert(_tokens)
            .values(
                user_id=user_id,
                kind=kind.value,
                name=name,
                token_hash=token_hash,
                scopes=encode_scopes(scopes),
                created_at=at,
                expires_at=expires_at,
            )
            .returning(*_tokens.c)
        ).one()
        return _token(row)

    def find(self, token_hash: bytes) -> AccessToken | None:
        row = self._c.execute(select(_tokens).where(_tokens.c.token_hash == token_hash)).first()
        return _token(row) if row else None

    def list_live(self, user_id: int) -> Sequence[AccessToken]:
        query = (
            select(_tokens)
            .where(_tokens.c.user_id == user_id, _tokens.c.revoked_at.is_(None))
            .order_by(_tokens.c.created_at.desc(), _tokens.c.id.desc())
        )
        return [_token(row) for row in self._c.execute(query)]

    def count_live(self, user_id: int, now: datetime) -> int:
        query = (
            select(func.count())
            .select_from(_tokens)
            .where(
                _tokens.c.user_id == user_id,
                _tokens.c.revoked_at.is_(None),
                or_(_tokens.c.expires_at.is_(None), _tokens.c.expires_at > now),
            )
        )
        return int(self._c.execute(query).scalar_one())

    def revoke(self, user_id: int, token_id: int, at: datetime) -> AccessToken | None:
        row = self._c.execute(
            update(_tokens)
            .where(_tokens.c.id == token_id, _tokens.c.user_id == user_id, _tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
            .returning(*_tokens.c)
        ).first()
        return _token(row) if row else None

    def revoke_all(self, user_id: int, at: datetime) -> int:
        revoked = self._c.execute(
            update(_tokens)
            .where(_tokens.c.user_id == user_id, _tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
            .returning(_tokens.c.id)
        ).all()
        return len(revoked)

    def touch(self, token_id: int, at: datetime, *, not_since: datetime) -> None:
        self._c.execute(
            update(_tokens)
            .where(
                _tokens.c.id == token_id,
                or_(_tokens.c.last_used_at.is_(None), _tokens.c.last_used_at < not_since),
            )
            .values(last_used_at=at)
        )


class SqlApplicationRepository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(self, name: str, name_key: str, key_hash: bytes, at: datetime, created_by: str | None) -> Application:
        values = {"name": name, "name_key": name_key, "key_hash": key_hash, "created_at": at, "created_by": created_by}
        try:
            # No savepoint (pysqlite would commit on its release): a lost race ends the use case anyway.
            row = self._c.execute(insert(_apps).values(**values).returning(*_apps.c)).one()
        except IntegrityError as exc:
            raise ApplicationExists() from exc
        return _application(row)

    def find_by_key(self, key_hash: bytes) -> Application | None:
        row = _APP_BY_KEY.first(self._c, {"key_hash": key_hash})
        return _application(row) if row else None

    def list_all(self) -> Sequence[Application]:
        return [_application(row) for row in self._c.execute(select(_apps).order_by(_apps.c.name_key))]

    def remove(self, name_key: str) -> Application | None:
        row = self._c.execute(delete(_apps).where(_apps.c.name_key == name_key).returning(*_apps.c)).first()
        return _application(row) if row else None

    def touch(self, application_id: int, at: datetime, *, not_since: datetime) -> None:
        self._c.execute(
            update(_apps)
            .where(_apps.c.id == application_id, or_(_apps.c.last_used_at.is_(None), _apps.c.last_used_at < not_since))
            .values(last_used_at=at)
        )
