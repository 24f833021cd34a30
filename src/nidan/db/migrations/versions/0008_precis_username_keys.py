"""users.username_key by the PRECIS rule (RFC 8265 UsernameCaseMapped) instead of NFKC + case folding

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10

Every user's key is recomputed from their stored name with the rule of ``nidan.core.usernames``, the one sign-in
looks names up with. For the names the ASCII rule allowed (every name so far) the key stays what it was, except
that ``ß`` is kept, not folded to ``ss`` (Unicode lower case, as RFC 8265 asks). Names that would clash (one key
for two users) or that the rule refuses can only come from rows nidan did not write: the upgrade then stops,
naming them, and changes nothing; rename them in the database and upgrade again.

No schema change: the column keeps its type and its unique constraint.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from nidan.core.usernames import username_key
from nidan.errors import ConfigurationError

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_users = sa.table("users", sa.column("id", sa.Integer), sa.column("username", sa.String), sa.column("username_key"))


def _old_key(username: str) -> str:
    """The key before this revision (0001 to 0007), frozen here: NFKC, spaces around dropped, case folded."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


def upgrade() -> None:
    _rekey(username_key, "the PRECIS rule (RFC 8265)")


def downgrade() -> None:
    # Names only the new rule allows (田中) get a key the older code never looks up: they cannot sign in there.
    _rekey(_old_key, "the rule before revision 0008")


def _rekey(key_of: Callable[[str], str | None], rule: str) -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(_users.c.id, _users.c.username, _users.c.username_key)).all()
    by_key: defaultdict[str, list[str]] = defaultdict(list)
    refused: list[str] = []
    changed: dict[int, str] = {}
    for user_id, username, stored in rows:
        key = key_of(username)
        if key is None:
            refused.append(f"{username!r} (id {user_id})")
            continue
        by_key[key].append(f"{username!r} (id {user_id})")
        if key != stored:
            changed[user_id] = key
    clashes = [" and ".join(names) for names in by_key.values() if len(names) > 1]
    if refused or clashes:
        # Loud, and before anything is written: which users, and what to do (the transaction is rolled back).
        problems = []
        if clashes:
            problems.append(f"these users would have the same username: {'; '.join(clashes)}")
        if refused:
            problems.append(f"these usernames are not valid: {', '.join(refused)}")
        raise ConfigurationError(
            f"Cannot recompute the usernames' keys with {rule}: {'. Also, '.join(problems)}. Give those users other "
            "usernames in the database (the users table's username column), then run the upgrade again."
        )
    # Two steps, so that no intermediate state holds one key twice (a user taking a key another gives up).
    for user_id in changed:
        connection.execute(sa.update(_users).where(_users.c.id == user_id).values(username_key=f"~{user_id}"))
    for user_id, key in changed.items():
        connection.execute(sa.update(_users).where(_users.c.id == user_id).values(username_key=key))
