"""remembered browsers and their rotating tokens, organisations' remember-device policy, users' preferred method

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs (SQLite too): no table rebuild, so no row referring to these tables is touched.
    op.add_column("organisations", sa.Column("remember_device_days", sa.Integer(), nullable=True))
    op.add_column("users", sa.Column("default_method", sa.String(length=32), nullable=True))
    op.create_table(
        "remembered_devices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_ip", sa.String(length=64), nullable=True),
        sa.Column("last_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_remembered_devices_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remembered_devices")),
        # Ids are never handed out twice (SQLite reuses a deleted highest one otherwise): the audit log names them.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_remembered_devices_user_id", "remembered_devices", ["user_id"])
    op.create_table(
        "remembered_device_tokens",
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["remembered_devices.id"],
            name=op.f("fk_remembered_device_tokens_device_id_remembered_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_remembered_device_tokens")),
    )
    op.create_index("ix_remembered_device_tokens_device_id", "remembered_device_tokens", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_remembered_device_tokens_device_id", table_name="remembered_device_tokens")
    op.drop_table("remembered_device_tokens")
    op.drop_index("ix_remembered_devices_user_id", table_name="remembered_devices")
    op.drop_table("remembered_devices")
    op.drop_column("users", "default_method")
    op.drop_column("organisations", "remember_device_days")
