"""Queries for remembered browsers and their rotating tokens.

A token is spent by one conditional UPDATE (``... WHERE rotated_at IS NULL``) whose row count tells who won: of two
requests with one token, exactly one rotates it, and the other finds it rotated (DESIGN.md rule 6).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, or_, select, update

from nidan.core.devices import PresentedToken, RememberedDeviceRecord
from nidan.db import tables as t
from nidan.db.prepared import Prepared

_devices = t.remembered_devices
_tokens = t.remembered_device_tokens
_d = _devices.c
_k = _tokens.c

# A remembered sign-in runs these four: prepared, as the sign-in's other hot statements are (``db.prepared``).
_USABLE_DEVICES = select(_d.id).where(
    _d.user_id == bindparam("user_id"),
    _d.revoked_at.is_(None),
    _d.expires_at > bindparam("now"),
    _d.created_at > bindparam("created_after"),
)
_ROTATE_TOKEN = Prepared(
    update(_tokens)
    .where(
        _k.token_hash == bindparam("token_hash"),
        _k.rotated_at.is_(None),
        _k.device_id.in_(_USABLE_DEVICES.scalar_subquery()),
    )
    .values(rotated_at=bindparam("now"))
    .returning(_k.device_id)
)
_DEVICE_BY_ID = Prepared(select(_devices).where(_d.id == bindparam("device_id")))
_INSERT_TOKEN = Prepared(insert(_tokens), columns=("token_hash", "device_id", "issued_at"))
_NOTE_USE = Prepared(
    update(_devices)
    .where(_d.id == bindparam("device_id"))
    .values(last_used_at=bindparam("at"), last_ip=bindparam("ip"))
)


def _device(row: Any) -> RememberedDeviceRecord:
    return RememberedDeviceRecord(
        id=row.id,
        user_id=row.user_id,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        first_ip=row.first_ip,
        last_ip=row.last_ip,
        user_agent=row.user_agent,
    )


class SqlRememberedDeviceRepository:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def add(
        self,
        user_id: int,
        token_hash: bytes,
        at: datetime,
        expires_at: datetime,
        ip: str | None,
        agent: str | None,
    ) -> RememberedDeviceRecord:
        row = self._c.execute(
            insert(_devices)
            .values(
                user_id=user_id,
                created_at=at,
                last_used_at=at,
                expires_at=expires_at,
                first_ip=ip[:64] if ip else None,
                last_ip=ip[:64] if ip else None,
                user_agent=agent[:512] if agent else None,
            )
            .returning(*_devices.c)
        ).one()
        self._c.execute(insert(_tokens).values(token_hash=token_hash, device_id=row.id, issued_at=at))
        return _device(row)

    def rotate(
        self, token_hash: bytes, *, user_id: int, now: datetime, created_after: datetime
    ) -> RememberedDeviceRecord | None:
        parameters = {"token_hash": token_hash, "user_id": user_id, "now": now, "created_after": created_after}
        rotated = _ROTATE_TOKEN.first(self._c, parameters)
        if rotated is None:
            return None
        return _device(_DEVICE_BY_ID.first(self._c, {"device_id": rotated.device_id}))

    def issue(self, device_id: int, token_hash: bytes, at: datetime, ip: str | None) -> None:
        _INSERT_TOKEN.rowcount(self._c, {"token_hash": token_hash, "device_id": device_id, "issued_at": at})
        _NOTE_USE.rowcount(self._c, {"device_id": device_id, "at": at, "ip": ip[:64] if ip else None})

    def find_token(self, token_hash: bytes) -> PresentedToken | None:
        row = self._c.execute(
            select(_devices, _k.rotated_at.label("token_rotated_at"))
            .join(_tokens, _k.device_id == _d.id)
            .where(_k.token_hash == token_hash)
        ).first()
        return PresentedToken(_device(row), row.token_rotated_at) if row else None

    def revoke(self, device_id: int, at: datetime, *, user_id: int | None = None) -> bool:
        conditions = [_d.id == device_id, _d.revoked_at.is_(None)]
        if user_id is not None:
            conditions.append(_d.user_id == user_id)
        return self._c.execute(update(_devices).where(*conditions).values(revoked_at=at)).rowcount == 1

    def revoke_all(self, user_id: int, at: datetime) -> int:
        # Expired ones are left as they are: they admit nobody, and the count tells people what stopped working.
        live = (_d.user_id == user_id, _d.revoked_at.is_(None), _d.expires_at > at)
        return int(self._c.execute(update(_devices).where(*live).values(revoked_at=at)).rowcount)

    def list_live(self, user_id: int, now: datetime) -> Sequence[RememberedDeviceRecord]:
        query = (
            select(_devices)
            .where(_d.user_id == user_id, _d.revoked_at.is_(None), _d.expires_at > now)
            .order_by(func.coalesce(_d.last_used_at, _d.created_at).desc(), _d.id.desc())
        )
        return [_device(row) for row in self._c.execute(query)]

    def delete_dead(self, user_id: int, now: datetime) -> int:
        dead = or_(_d.revoked_at.is_not(None), _d.expires_at <= now)
        # Their tokens go with them (ON DELETE CASCADE; SQLite's foreign keys are on, see ``engine``).
        return int(self._c.execute(delete(_devices).where(_d.user_id == user_id, dead)).rowcount)
