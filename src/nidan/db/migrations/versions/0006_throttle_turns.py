"""throttles: attempts in flight apart from failures; usernames keyed by their keyed hash, never as typed

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

The rows keyed by a username as typed (a password typed into the username field lands there) are deleted, not
rewritten: the keyed hash needs the instance's hashing key, which lives in the key directory, not in the database,
and a migration runs before the keys are loaded (and from tools that have none). What is lost is harmless:

- ``password`` and ``gate`` (a username from one address) have no hard limit, so nothing is locked: at most a block
  of ``max_block_seconds`` and the next block's length start again, once, at the upgrade. Every failure those rows
  counted was also counted per address (``password_ip``, ``gate_ip``, kept: keyed by the address alone), so a
  guesser from that address is still slowed by it.
- ``second_factor`` rows whose key starts with ``~`` belong to names nobody has (the verify API counts those so
  that a refusal does not tell who exists): no account's counter is touched; the users' rows (keyed by id) are kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_throttles = sa.table("throttles", sa.column("scope", sa.String), sa.column("key", sa.String))
#: Rows keyed by a username: as typed before this revision, by its keyed hash after it.
_BY_USERNAME = sa.or_(
    _throttles.c.scope.in_(["password", "gate"]),
    sa.and_(_throttles.c.scope == "second_factor", _throttles.c.key.startswith("~")),
)


def upgrade() -> None:
    # Plain ADD COLUMNs (SQLite too): no table rebuild.
    op.add_column("throttles", sa.Column("pending", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("throttles", sa.Column("pending_until", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.delete(_throttles).where(_BY_USERNAME))


def downgrade() -> None:
    # The older code would look these up by the name as typed: they would only linger, unreachable.
    op.execute(sa.delete(_throttles).where(_BY_USERNAME))
    op.drop_column("throttles", "pending_until")
    op.drop_column("throttles", "pending")
