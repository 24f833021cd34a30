"""Alembic environment: the engine comes from ``nidan.db.engine.alembic_config``, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from nidan.db.tables import metadata

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)

#: Any constant will do; processes starting together on one PostgreSQL database queue on it to migrate one by one.
MIGRATION_LOCK = 7255100542

with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
