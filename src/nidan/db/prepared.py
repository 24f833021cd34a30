"""The hot statements, run on the DB-API cursor of the transaction's own connection.

SQLAlchemy Core's execution layer (events, execution contexts, parameter construction, result objects) cost more
than running a small statement: about half of a verify call's CPU went there. A ``Prepared`` statement keeps what
SQLAlchemy is for — the SQL, compiled once per dialect from the same ``select()``/``update()`` construct, and each
parameter's and column's type processing — and hands the compiled SQL to the driver itself, which keeps its own
prepared-statement cache (sqlite3 by SQL text; psycopg prepares a statement it sees repeatedly).

What SQLAlchemy would otherwise do on the way is done here too: a write on SQLite takes the process's turn at the
write lock (``SqliteWriterQueue``), and a driver error is raised as SQLAlchemy's exception for it, with a lost
connection invalidated, so the unit of work answers both exactly as before. While SQLAlchemy's statement log is on,
statements go SQLAlchemy's own way, so that what is logged does not change.
"""

from __future__ import annotations

import logging
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import Select

from nidan.db.engine import SqliteWriterQueue

Processor = Callable[[Any], Any]
#: SQLAlchemy's statement log (``echo``): while it is on, statements go SQLAlchemy's own way, to be logged as before.
_SQL_LOG = logging.getLogger("sqlalchemy.engine.Engine")


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    #: Parameter names in placeholder order (positional paramstyles), or ``None`` to pass a mapping.
    order: tuple[str, ...] | None
    #: The parameters' values in that order, from the mapping (``None`` with a mapping paramstyle).
    ordered: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None
    defaults: Mapping[str, Any]
    bind_processors: Mapping[str, Processor]
    #: Builds a row with attribute access by column key from the driver's tuple; ``None`` without a result.
    row: Callable[[Sequence[Any]], Any] | None
    writes: bool


class Prepared:
    """``statement`` (a ``select()``, an ``insert()``/``update()``/``delete()`` with or without RETURNING, or a
    ``text()`` that writes and returns nothing), run
    with the DB-API. Parameters are passed by their ``bindparam`` names, as to ``Connection.execute``; an
    ``insert(table)`` without ``values()`` names the ``columns`` it sets, which are then its parameters' names."""

    def __init__(
        self, statement: Select[Any] | UpdateBase | TextClause, *, columns: Sequence[str] | None = None
    ) -> None:
        self._statement = statement
        self._columns = list(columns) if columns is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def first(self, connection: Connection, parameters: Mapping[str, Any] | None = None) -> Any:
        """The first row (attributes named by column), or ``None``."""
        if _SQL_LOG.isEnabledFor(logging.INFO):
            return connection.execute(self._statement, parameters).first()
        compiled, cursor = self._run(connection, parameters)
        raw = cursor.fetchone()
        cursor.close()
        assert compiled.row is not None
        return None if raw is None else compiled.row(raw)

    def all(self, connection: Connection, parameters: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row (attributes named by column)."""
        if _SQL_LOG.isEnabledFor(logging.INFO):
            return list(connection.execute(self._statement, parameters))
        compiled, cursor = self._run(connection, parameters)
        raws = cursor.fetchall()
        cursor.close()
        assert compiled.row is not None
        return [compiled.row(raw) for raw in raws]

    def rowcount(self, connection: Connection, parameters: Mapping[str, Any] | None = None) -> int:
        """Run a statement without a result: how many rows it changed."""
        if _SQL_LOG.isEnabledFor(logging.INFO):
            return connection.execute(self._statement, parameters).rowcount
        _, cursor = self._run(connection, parameters)
        count: int = cursor.rowcount
        cursor.close()
        return count

    def _run(self, connection: Connection, parameters: Mapping[str, Any] | None) -> tuple[_Compiled, Any]:
        if not connection.in_transaction():
            connection.begin()  # as SQLAlchemy's autobegin would: the commit and rollback must reach the driver
        dialect = connection.dialect
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        if compiled.writes:
            take_write_turn(connection)
        values: Mapping[str, Any] = parameters or {}
        if compiled.defaults or compiled.bind_processors:
            processed = {**compiled.defaults, **values}
            for name, process in compiled.bind_processors.items():
                if name in processed:
                    processed[name] = process(processed[name])
            values = processed
        driver_parameters = compiled.ordered(values) if compiled.ordered is not None else values
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(compiled.sql, driver_parameters)
        except dialect.loaded_dbapi.Error as error:
            cursor.close()
            lost = dialect.is_disconnect(error, dbapi_connection, cursor)
            if lost:
                connection.invalidate(error)
            raise DBAPIError.instance(
                compiled.sql, driver_parameters, error, dialect.loaded_dbapi.Error, connection_invalidated=lost
            ) from error
        return compiled, cursor

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._columns)
        binds = compiled.binds
        columns = [] if isinstance(self._statement, TextClause) else list(self._statement.exported_columns)
        row: Callable[[Sequence[Any]], Any] | None = None
        if columns:
            processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
            keys = [str(column.key) for column in columns]
            row_type: Any = namedtuple("Row", keys)  # type: ignore[misc]  # built per statement
            row = _processing_rows(row_type._make, processors) if any(processors) else row_type._make
        order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
        result = _Compiled(
            sql=compiled.string,
            order=order,
            ordered=_in_order(order) if order is not None else None,
            defaults={name: bind.effective_value for name, bind in binds.items() if not bind.required},
            bind_processors={
                name: process
                for name, bind in binds.items()
                if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
            },
            row=row,
            writes=not isinstance(self._statement, Select),
        )
        self._compiled[dialect.name] = result
        return result


def _in_order(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    pick = itemgetter(*names)
    if len(names) == 1:  # itemgetter of one name answers the value itself
        return lambda values: (pick(values),)
    return pick  # answers a tuple for two names or more


def _processing_rows(
    make: Callable[[Sequence[Any]], Any], processors: Sequence[Processor | None]
) -> Callable[[Sequence[Any]], Any]:
    def row(raw: Sequence[Any]) -> Any:
        return make(
            [value if process is None else process(value) for process, value in zip(processors, raw, strict=True)]
        )

    return row


def take_write_turn(connection: Connection) -> None:
    """On SQLite, this process's turn at the write lock, as every statement SQLAlchemy runs takes it."""
    queue = SqliteWriterQueue.of(connection.engine)
    if queue is not None:
        queue.take_turn(connection)
