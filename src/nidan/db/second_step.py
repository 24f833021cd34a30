"""The statement that reads a name's second step for the verify API: the user, their active authenticator and the
backoff counting for them, in one row, built so that the database and this process do the same work whether the
name is a user with an authenticator, a user without one, or nobody's.

It always returns exactly one row: a one-row derived table outer-joined to the user by name, their active
authenticator, and the backoff counter whose key is the user's id or, for a name nobody has, ``:unknown_key``. The
user's and the authenticator's columns come back filled with stand-in values when there is no such row
(``known_user_id`` / ``known_totp_id`` tell which; a real row's NULLs stay NULL), so that the driver builds, and
``repositories`` converts, the same kind of values either way: a row of NULLs cost a fraction of a real one, and
the difference told an application who exists and who has 2FA (issue 14).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    LargeBinary,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.sql.elements import ColumnClause

from nidan.core.models import ThrottleScope
from nidan.db import tables as t
from nidan.db.prepared import Prepared
from nidan.db.tables import UtcDateTime

ACTIVE = "active"

_users = t.users.c
_totps = t.totp_credentials.c
_throttles = t.throttles.c

#: Stand-in values, spelt the same in SQLite and PostgreSQL, of the kind and about the size of a real value
#: (PostgreSQL reads an untyped literal as the type of the column beside it in the CASE).
_STAND_IN_TIME: ColumnClause[Any] = literal_column("'2000-01-01 00:00:00.000000'")
_STAND_IN_NUMBER: ColumnClause[Any] = literal_column("0")
#: CAST gives bytes in both databases: a sealed seed's size (nonce, 20-byte key, tag).
_STAND_IN_SEALED = cast(literal_column("'" + "0" * 48 + "'"), LargeBinary)
_STAND_IN_BY_NAME: dict[str, Any] = {
    "role": literal_column("'member'"),  # read as an InstanceRole, as a real row's is
    "state": literal_column(f"'{ACTIVE}'"),
    "sealed_secret": _STAND_IN_SEALED,
}
_STAND_IN_TEXT: ColumnClause[Any] = literal_column("'" + "0" * 16 + "'")
#: Nullable columns that a user with an authenticator has filled in all the same: they signed in to set it up, and
#: activating it set its first step. The other nullable columns are NULL for such a user, and stay so.
_FILLED_FOR_A_REAL_ONE = frozenset({"last_sign_in_at", "activated_at", "last_used_step"})


def _filled(column: Column[Any], missing: ColumnElement[bool], label: str) -> Any:
    """``column``, or a stand-in of its kind when its row is ``missing`` (never in place of a real row's NULL)."""
    if column.nullable and column.key not in _FILLED_FOR_A_REAL_ONE:
        return column.label(label)
    stand_in = _STAND_IN_BY_NAME.get(column.key)
    if stand_in is None:
        if isinstance(column.type, UtcDateTime):
            stand_in = _STAND_IN_TIME
        elif isinstance(column.type, Integer):
            stand_in = _STAND_IN_NUMBER
        elif isinstance(column.type, String):
            stand_in = _STAND_IN_TEXT
        else:  # a new kind of column: give it a stand-in, or a name without the row would be read faster again
            raise TypeError(f"no stand-in value for {column} ({column.type})")
    # Typed as the column, so that the stand-in is converted as a real value is (a SQLite timestamp is text). A NOT
    # NULL column is NULL only when its row is missing: COALESCE says it in fewer steps than CASE.
    filled = func.coalesce(column, stand_in) if not column.nullable else case((missing, stand_in), else_=column)
    return type_coerce(filled, column.type).label(label)


_one = select(literal_column("1").label("one")).subquery("one")
_COLUMNS = (
    _users.id.label("known_user_id"),
    _totps.id.label("known_totp_id"),
    *(_filled(column, _users.id.is_(None), column.key) for column in t.users.c),
    *(_filled(column, _totps.id.is_(None), f"totp_{column.key}") for column in t.totp_credentials.c),
    *(
        _throttles[name].label(f"backoff_{name}")
        for name in ("id", "failures", "blocked_until", "locked_at", "version")
    ),
)
#: Parameters: ``key`` (a username key, or NULL: nobody) and ``unknown_key`` (the backoff key of a name nobody has).
SECOND_STEP = Prepared(
    select(*_COLUMNS).select_from(
        _one.outerjoin(t.users, _users.username_key == bindparam("key", type_=String))
        .outerjoin(t.totp_credentials, and_(_totps.user_id == _users.id, _totps.state == ACTIVE))
        .outerjoin(
            t.throttles,
            and_(
                _throttles.scope == ThrottleScope.SECOND_FACTOR.value,
                _throttles.key == func.coalesce(cast(_users.id, String), bindparam("unknown_key", type_=String)),
            ),
        )
    )
)
#: PostgreSQL locks the user's row on its own first (see ``SqlUserRepository.lock_for_second_step``).
LOCK_USER_BY_KEY = Prepared(select(_users.id).where(_users.username_key == bindparam("key")).with_for_update())
