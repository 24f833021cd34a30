"""Where ``nidan serve`` last listened: a small file in the data directory, so that a command run later on the same
host (``nidan admin recover``) prints a link to the address the server really has, not a guess.

The file is written at each start of ``nidan serve`` (the last start wins) and only read by commands; nothing
depends on it for correctness: a missing or unreadable file means "not known".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

FILE_NAME = "serving.json"


@dataclass(frozen=True, slots=True)
class ServingAddress:
    host: str
    port: int
    started_at: datetime


def record(data_dir: Path, address: ServingAddress) -> Path:
    """Write ``address`` to the data directory (mode 0600, replaced whole: a reader never sees half a file)."""
    path = data_dir / FILE_NAME
    partial = data_dir / f".{FILE_NAME}.{os.getpid()}"
    document = {"host": address.host, "port": address.port, "started_at": address.started_at.isoformat()}
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(document, out)
            out.write("\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def recorded(data_dir: Path) -> ServingAddress | None:
    """The address the last ``nidan serve`` on this data directory listened on, or ``None`` when none was recorded
    (never started here, or the file is unreadable)."""
    try:
        document = json.loads((data_dir / FILE_NAME).read_text(encoding="utf-8"))
        host, port = document["host"], document["port"]
        started_at = datetime.fromisoformat(document["started_at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(host, str) or not isinstance(port, int) or not 1 <= port <= 65535:
        return None
    return ServingAddress(host=host, port=port, started_at=started_at)
