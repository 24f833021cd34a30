"""user ids never handed out twice (accounts can be deleted), and one-time links to set a password

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-16
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _users_autoincrement(on: bool) -> None:
    """SQLite hands a deleted highest rowid out again unless the table says AUTOINCREMENT; the audit log, the
    backoff counters and the security log's pages name users by id after the account is gone, so a new account
    must never get an old one's id. Only a rebuild changes that (env.py turns the foreign keys off around it, so
    no row referring to a user goes with the old table). PostgreSQL's sequences never go back: nothing to do."""
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("users", recreate="always", table_kwargs={"sqlite_autoincrement": on}):
        pass


def upgrade() -> None:
    _users_autoincrement(True)
    # Every link so far was printed by `nidan admin recover`.
    op.add_column(
        "recovery_links",
        sa.Column("purpose", sa.String(length=16), nullable=False, server_default=sa.text("'recovery'")),
    )


def downgrade() -> None:
    # The revision before knew only recovery links: a set-password link would not work as one anyway (its token
    # is hashed for its own purpose), so it goes.
    op.execute("DELETE FROM recovery_links WHERE purpose <> 'recovery'")
    with op.batch_alter_table("recovery_links") as batch:
        batch.drop_column("purpose")
    _users_autoincrement(False)
