"""Migrations: upgrade, downgrade and upgrade again on each back end, and the result equals the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from nidan.db import engine as db_engine
from nidan.db import tables


def test_round_trip_and_schema_matches_models(database_url: str) -> None:
    engine = db_engine.make_engine(database_url)
    try:
        db_engine.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db_engine.upgrade(engine)
        assert db_engine.pending_migrations(engine) == []
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), tables.metadata)
            default_org = connection.execute(select(tables.organisations.c.slug)).scalars().all()
        assert differences == []
        assert default_org == ["default"]
    finally:
        engine.dispose()


def test_a_fresh_database_reports_pending_migrations(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/empty.db")
    assert db_engine.pending_migrations(engine) != []
    engine.dispose()
