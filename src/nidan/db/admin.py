"""The ``DatabaseAdmin`` port: whole-database work (diagnosis, dump, restore) on one engine.

Nothing here migrates or writes unless asked to: ``nidan doctor`` and ``nidan backup`` use it on a database as it
is, ``nidan restore`` uses it to bring the schema to a dump's revision and load the rows.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from nidan.core.backup import DumpSummary, read_dump
from nidan.db import dump as db_dump
from nidan.db import engine as db_engine
from nidan.db import tables as t
from nidan.errors import BackupDamaged, BackupIncomplete, ConfigurationError, DatabaseNotEmpty

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory


def describe_engine(engine: Engine) -> str:
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite, {url.database}"
    return f"PostgreSQL, {url.render_as_string(hide_password=True)}"


def unusable(exc: SQLAlchemyError) -> ConfigurationError:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ConfigurationError(
        f"The database cannot be used: {reason}. Check NIDAN_DATABASE_URL (or database_url in nidan.toml) and "
        "that the database server is running."
    )


@contextmanager
def _reported() -> Iterator[None]:
    """A database failure below becomes the ``ConfigurationError`` every face reports in one line."""
    try:
        yield
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        raise unusable(exc) from exc


class SqlDatabaseAdmin:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name

    def describe(self) -> str:
        return describe_engine(self.engine)

    def _script(self) -> ScriptDirectory:
        """The migrations, read when a command looks at them: serving never loads Alembic (see db.engine)."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(db_engine.alembic_config(self.engine))

    def exists(self) -> bool:
        database = self.engine.url.database
        if self.backend != "sqlite" or not database or database == ":memory:":
            return True
        return Path(database).exists()

    def ping(self) -> None:
        if not self.exists():
            raise ConfigurationError(f"The database file {self.engine.url.database} does not exist.")
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise unusable(exc) from exc

    def revision(self) -> str | None:
        if not self.exists():
            return None
        with _reported(), self.engine.connect() as connection:
            return db_dump.current_revision(connection)

    def head_revision(self) -> str:
        head = self._script().get_current_head()
        assert head is not None
        return head

    def _order(self) -> list[str]:
        """Every revision this nidan knows, newest first."""
        return [revision.revision for revision in self._script().walk_revisions()]

    def knows_revision(self, revision: str) -> bool:
        return revision in self._order()

    def pending_migrations(self) -> list[str]:
        current = self.revision()
        order = self._order()
        if current is None:
            return list(reversed(order))
        if current not in order:
            return []
        return list(reversed(order[: order.index(current)]))

    def has_data(self) -> bool:
        if not self.exists():
            return False
        with _reported(), self.engine.connect() as connection:
            return db_dump.has_data(connection)

    def sealed_counts(self) -> Mapping[str, int]:
        if not self.exists():
            return {}
        with _reported(), self.engine.connect() as connection:
            if db_dump.current_revision(connection) is None:
                return {}
            c = t.totp_credentials.c
            rows = connection.execute(select(c.key_fingerprint, func.count()).group_by(c.key_fingerprint))
            return {str(name): int(count) for name, count in rows}

    def recorded_keys(self) -> Mapping[str, str]:
        if not self.exists():
            return {}
        with _reported(), self.engine.connect() as connection:
            if "instance_keys" not in db_dump.table_names(connection):
                return {}
            c = t.instance_keys.c
            return {str(p): str(f) for p, f in connection.execute(select(c.purpose, c.fingerprint))}

    def record_keys(self, fingerprints: Mapping[str, str], at: datetime) -> Mapping[str, str]:
        # Imported by name: a serving process on SQLite never loads the PostgreSQL dialect (about 2 MiB), nor one on
        # PostgreSQL the SQLite one.
        dialect = importlib.import_module(
            "sqlalchemy.dialects.postgresql" if self.backend == "postgresql" else "sqlalchemy.dialects.sqlite"
        )
        with _reported(), self.engine.begin() as connection:
            for purpose, name in fingerprints.items():
                connection.execute(
                    dialect.insert(t.instance_keys)
                    .values(purpose=purpose, fingerprint=name, recorded_at=at)
                    .on_conflict_do_nothing()
                )
            c = t.instance_keys.c
            return {str(p): str(f) for p, f in connection.execute(select(c.purpose, c.fingerprint))}

    def replace_recorded_key(self, purpose: str, fingerprint: str, at: datetime) -> None:
        if not self.exists():
            return
        with _reported(), self.engine.begin() as connection:
            if "instance_keys" not in db_dump.table_names(connection):
                return  # not migrated yet: the first start records it
            changed = connection.execute(
                update(t.instance_keys)
                .where(t.instance_keys.c.purpose == purpose)
                .values(fingerprint=fingerprint, recorded_at=at)
            ).rowcount
            if not changed:
                connection.execute(
                    t.instance_keys.insert().values(purpose=purpose, fingerprint=fingerprint, recorded_at=at)
                )

    def server_time(self) -> datetime | None:
        if self.backend != "postgresql":
            return None
        with _reported(), self.engine.connect() as connection:
            moment = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        assert isinstance(moment, datetime)
        return moment.astimezone(UTC)

    def dump(self, out: BinaryIO, *, after_table: Callable[[str], None] | None = None) -> DumpSummary:
        with _reported():
            return db_dump.dump(self.engine, out, after_table=after_table)

    def _migrate_to(self, revision: str) -> None:
        current = self.revision()
        if current == revision:
            return
        order = self._order()
        if current is None or order.index(revision) < order.index(current):
            db_engine.upgrade(self.engine, revision)
        else:
            db_engine.downgrade(self.engine, revision)

    def restore(self, lines: Iterable[bytes], *, replace: bool) -> DumpSummary:
        header, rows = read_dump(lines)
        if not self.knows_revision(header.revision):
            raise BackupIncomplete(
                f"The backup's database is at schema revision {header.revision}, which this nidan does not know: "
                "it was made by a newer nidan. Restore it with that version (or a newer one)."
            )
        current = self.revision()
        if current is not None and not self.knows_revision(current):
            raise ConfigurationError(
                f"The target database is at schema revision {current}, which this nidan does not know: a newer "
                "nidan migrated it. Restore with that version, or into another database."
            )
        if not replace and self.has_data():
            raise DatabaseNotEmpty()
        try:
            with _reported():
                self._migrate_to(header.revision)
                summary = db_dump.load(self.engine, header, rows, replace=replace)
                db_engine.upgrade(self.engine)
        except IntegrityError as exc:
            reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise BackupDamaged(f"The dump's rows do not fit together ({reason}): nothing was restored.") from None
        return summary
