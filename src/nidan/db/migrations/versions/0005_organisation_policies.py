"""organisation policies, managed memberships, enrolment sessions, grace periods and break-glass links

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (SQLite too): no table rebuild, so no row referring to these tables is touched.
    op.add_column("organisations", sa.Column("grace_period_days", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "organisations",
        sa.Column("allowed_methods", sa.String(length=64), nullable=False, server_default="totp recovery_code"),
    )
    op.add_column("organisations", sa.Column("tolerated_failures", sa.Integer(), nullable=True))
    op.add_column("users", sa.Column("two_factor_grace_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("users", sa.Column("registration_required_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("memberships", sa.Column("managed", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column("sessions", sa.Column("purpose", sa.String(length=16), nullable=False, server_default="full"))
    op.create_table(
        "recovery_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recovery_links_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_recovery_links_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("recovery_links")
    op.drop_column("sessions", "purpose")
    op.drop_column("memberships", "managed")
    op.drop_column("users", "registration_required_at")
    op.drop_column("users", "two_factor_grace_started_at")
    op.drop_column("organisations", "tolerated_failures")
    op.drop_column("organisations", "allowed_methods")
    op.drop_column("organisations", "grace_period_days")
