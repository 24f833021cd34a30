"""The portable dump: every nidan table as JSON Lines, read from one snapshot, loaded in one transaction.

The format lives in ``nidan.core.backup``; this module maps columns to value kinds by their SQL type, reads and
writes rows, and deals with what the two back ends do differently: the consistent snapshot (REPEATABLE READ on
PostgreSQL, one read transaction on SQLite), locking the tables while loading, and the PostgreSQL sequences that
must continue after the highest loaded id. Tables are reflected from the database rather than taken from the
models, so a database at an older schema revision dumps and loads as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from sqlalchemy import (
    Boolean,
    Connection,
    DateTime,
    Engine,
    LargeBinary,
    MetaData,
    Table,
    delete,
    func,
    insert,
    select,
    text,
)
from sqlalchemy import inspect as sa_inspect

from nidan.core import backup
from nidan.core.backup import DumpHeader, DumpSummary, TableLayout
from nidan.db import tables
from nidan.errors import BackupDamaged, ConfigurationError, DatabaseNotEmpty

#: Rows that do not make a database "hold data": what migrations put into every database (the default
#: organisation, the audit chain's genesis), setup links (each start while no administrator exists makes one) and
#: the fingerprints of the instance's keys.
NOT_DATA = frozenset({"organisations", "audit_chain_head", "setup_tokens", "instance_keys"})
INSERT_BATCH = 1000


def kind_of(column_type: Any) -> str:
    if isinstance(column_type, LargeBinary):
        return backup.KIND_BYTES
    if isinstance(column_type, DateTime):
        return backup.KIND_DATETIME
    if isinstance(column_type, Boolean):
        return backup.KIND_BOOL
    return backup.KIND_VALUE


def table_names(connection: Connection) -> set[str]:
    return set(sa_inspect(connection).get_table_names())


def reflect(connection: Connection) -> list[Table]:
    """nidan's tables as they are in this database, in foreign-key order (parents first)."""
    present = table_names(connection) & set(tables.metadata.tables)
    reflected = MetaData()
    reflected.reflect(bind=connection, only=sorted(present))
    return list(reflected.sorted_tables)


def current_revision(connection: Connection) -> str | None:
    """The schema's migration (None before the first), read as Alembic keeps it without loading Alembic: every
    process reads it at start-up, and serving never needs Alembic itself (see ``db.engine``)."""
    if not sa_inspect(connection).has_table("alembic_version"):
        return None
    revisions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(revisions) > 1:
        raise ConfigurationError(f"The database names several schema revisions at once ({', '.join(revisions)}).")
    return revisions[0] if revisions else None


def has_data(connection: Connection) -> bool:
    """Whether any nidan table holds rows beyond ``NOT_DATA`` (tables the schema revision lacks are skipped)."""
    present = table_names(connection)
    for name, table in tables.metadata.tables.items():
        if (
            name in present
            and name not in NOT_DATA
            and connection.execute(select(1).select_from(table).limit(1)).first()
        ):
            return True
    return False


def is_brand_new(connection: Connection) -> bool:
    """No data, and no process has recorded its keys yet: the only state in which nidan may make new keys."""
    if has_data(connection):
        return False
    if "instance_keys" not in table_names(connection):
        return True
    return connection.execute(select(1).select_from(tables.instance_keys).limit(1)).first() is None


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read-only connection on which every query sees the database as of one moment."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin() as transaction:
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield connection
                transaction.rollback()
        return
    with engine.connect() as connection, connection.begin() as transaction:
        # pysqlite opens a transaction only before a write; an explicit BEGIN makes every read share one WAL snapshot.
        connection.exec_driver_sql("BEGIN")
        yield connection
        transaction.rollback()


def dump(engine: Engine, out: BinaryIO, *, after_table: Callable[[str], None] | None = None) -> DumpSummary:
    with snapshot(engine) as connection:
        revision = current_revision(connection)
        if revision is None:
            raise BackupDamaged("The database has no nidan tables yet: there is nothing to back up.")
        reflected = reflect(connection)
        layouts = [TableLayout(t.name, {c.name: kind_of(c.type) for c in t.columns}) for t in reflected]
        header = DumpHeader(revision, tuple(layouts))
        out.write(backup.header_line(header))
        tally = backup.Tally(header)
        for table, layout in zip(reflected, layouts, strict=True):
            query = select(table).order_by(*table.primary_key.columns).execution_options(yield_per=INSERT_BATCH)
            for row in connection.execute(query):
                values = dict(row._mapping)
                out.write(backup.row_line(layout, values))
                tally.add(table.name, values)
            if after_table is not None:
                after_table(table.name)
    return tally.summary()


def _lock_for_load(connection: Connection, reflected: list[Table]) -> None:
    """Keep every other writer out until the load commits (and make the emptiness check race-free)."""
    if connection.dialect.name == "postgresql":
        names = ", ".join(f'"{table.name}"' for table in reflected)
        connection.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
    else:
        # Any write takes SQLite's single write lock for the rest of the transaction; this one changes nothing.
        connection.execute(text("DELETE FROM alembic_version WHERE 1 = 0"))


def _reset_sequences(connection: Connection, reflected: list[Table]) -> None:
    if connection.dialect.name != "postgresql":
        return  # SQLite's rowid continues after the highest id by itself
    for table in reflected:
        column = table.autoincrement_column
        if column is None:
            continue
        highest = connection.execute(select(func.max(column))).scalar()
        connection.execute(
            text("SELECT setval(pg_get_serial_sequence(:table, :column), :next, false)"),
            {"table": table.name, "column": column.name, "next": int(highest or 0) + 1},
        )


def load(
    engine: Engine, header: DumpHeader, rows: Iterable[tuple[TableLayout, dict[str, Any]]], *, replace: bool
) -> DumpSummary:
    """Replace every row with the dump's, in one transaction; the schema must already be at the dump's revision."""
    with engine.connect() as connection, connection.begin():
        reflected = reflect(connection)
        by_name = {table.name: table for table in reflected}
        _lock_for_load(connection, reflected)
        if current_revision(connection) != header.revision:
            raise BackupDamaged(f"The database is not at the dump's schema revision {header.revision}.")
        if not replace and has_data(connection):
            raise DatabaseNotEmpty()
        for layout in header.tables:
            table = by_name.get(layout.name)
            if table is None or set(table.columns.keys()) != set(layout.columns):
                raise BackupDamaged(
                    f"The dump's table {layout.name} does not match the schema at revision {header.revision}: the "
                    "archive was altered. Nothing was restored."
                )
        for table in reversed(reflected):
            connection.execute(delete(table))
        tally = backup.Tally(header)
        batch: list[dict[str, Any]] = []
        batch_table: str | None = None

        def flush() -> None:
            if batch and batch_table is not None:
                connection.execute(insert(by_name[batch_table]), batch)
                batch.clear()

        for layout, row in rows:
            if layout.name != batch_table or len(batch) >= INSERT_BATCH:
                flush()
                batch_table = layout.name
            batch.append(row)
            tally.add(layout.name, row)
        flush()
        _reset_sequences(connection, reflected)
        summary = tally.summary()
        loaded = sum(summary.row_counts.values())
        stored = sum(int(connection.execute(select(func.count()).select_from(t)).scalar_one()) for t in reflected)
        if stored != loaded:
            raise BackupDamaged(f"The restore loaded {loaded} rows but the database then held {stored}; rolled back.")
    return summary
