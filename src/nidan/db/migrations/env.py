"""Alembic environment: the engine comes from ``nidan.db.engine.alembic_config``, never from an ini file."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, text

from nidan.db.tables import metadata

engine = context.config.attributes["engine"]
assert isinstance(engine, Engine)

#: Any constant will do; processes starting together on one PostgreSQL database queue on it to migrate one by one.
MIGRATION_LOCK = 7255100542

with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a table (copy, DROP, rename): with foreign keys on, that DROP would cascade
        # and delete every row referring to it (a user's authenticator, sessions, memberships ...). The pragma only
        # takes effect outside a transaction, so it is set before the migration's transaction begins.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
    try:
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.configure(
                connection=connection,
                target_metadata=metadata,
                render_as_batch=sqlite,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
