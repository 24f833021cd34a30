"""Migrations: upgrade, downgrade and upgrade again on each back end, and the result equals the models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
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


def test_head_revision_is_alembics_head(database_url: str) -> None:
    """The one-query "is it current?" check at start-up compares against HEAD_REVISION: a new migration must move it."""
    engine = db_engine.make_engine(database_url)
    try:
        script = ScriptDirectory.from_config(db_engine.alembic_config(engine))
        assert script.get_heads() == [db_engine.HEAD_REVISION]
    finally:
        engine.dispose()


def test_a_process_serving_a_current_database_never_loads_alembic(tmp_path: Path) -> None:
    """About 11 MB per worker: Alembic is loaded to migrate, not to find there is nothing to do."""
    data_dir = tmp_path / "data"
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from nidan.bootstrap import build_runtime\n"
        "from nidan.config import Settings\n"
        "from nidan.web.app import create_app\n"
        f"runtime = build_runtime(Settings(data_dir=Path({str(data_dir)!r})))\n"
        "create_app(runtime)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'alembic', 'mako'}))\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True, timeout=120
        ).stdout.strip()
        for _ in range(2)
    ]
    assert runs == ["['alembic', 'mako']", "[]"]  # the first start migrates a new database; the second has not to
