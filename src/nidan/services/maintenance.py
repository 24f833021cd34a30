"""What the administration use cases (backup, restore, keys, doctor) are handed by the composition root.

Unlike ``ServiceContext`` it holds no loaded keys: these use cases look at the key directory itself, and some of
them (``doctor``, ``restore``) must work when keys are missing or the database is not migrated.
"""

from __future__ import annotations

from dataclasses import dataclass

from nidan.core.maintenance_ports import BackupArchives, ClockSyncProbe, DatabaseAdmin, KeyDirectory
from nidan.core.ports import Clock, RandomSource, UnitOfWorkFactory


@dataclass(frozen=True)
class MaintenanceContext:
    database: DatabaseAdmin
    keys: KeyDirectory
    archives: BackupArchives
    clock_sync: ClockSyncProbe
    clock: Clock
    random_bytes: RandomSource
    #: Units of work for the use cases that change rows (re-sealing); only on a migrated database.
    uow: UnitOfWorkFactory
    #: The nidan version, written into backups.
    version: str
