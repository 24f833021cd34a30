"""A serving worker's memory: every module it loads costs it resident memory (the benchmark's target is 120 MB per
worker), so a worker on SQLite loads neither what only PostgreSQL or the client need, nor what only a page or an
enrolment needs before one is asked for; and its threads share one malloc arena."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nidan.bootstrap import hashing_threads, share_one_malloc_arena

#: Never needed by a worker on SQLite: PostgreSQL's driver and SQLAlchemy dialect (about 9 + 2 MiB), the HTTP
#: client of ``nidan.client`` (5 MiB), a WebSocket implementation (nidan serves none), Alembic on a current database.
NEVER_ON_SQLITE = ("psycopg", "sqlalchemy.dialects.postgresql", "httpx", "websockets", "alembic")
#: Loaded at the first page and the first QR code, not at start: a worker that only answers the API never holds them.
ON_FIRST_USE = ("jinja2", "segno")

_PROBE = """
import json, sys
from pathlib import Path

import uvicorn

from nidan.bootstrap import build_runtime
from nidan.config import Settings
from nidan.web import server


def load_instead_of_listening(self, sockets=None):
    self.config.load()  # the app, the HTTP and WebSocket protocols, the lifespan: what serving loads first
    self.started = True


uvicorn.Server.run = load_instead_of_listening
runtime = build_runtime(Settings(data_dir=Path(sys.argv[1])))
server.run(runtime, host="127.0.0.1", port=8000, workers=1)
print(json.dumps(sorted(sys.modules)))
"""


def test_a_worker_on_sqlite_loads_only_what_serving_needs(tmp_path: Path, sqlite_template: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "nidan.db")  # current: serving has nothing to migrate
    environment = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_")}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(data_dir)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    loaded = set(json.loads(probe.stdout.splitlines()[-1]))
    assert {"nidan.web.app", "sqlalchemy.dialects.sqlite", "uvicorn.protocols.http.httptools_impl"} <= loaded
    unwanted = NEVER_ON_SQLITE + ON_FIRST_USE
    assert sorted(m for m in loaded if m in unwanted or m.startswith(tuple(f"{u}." for u in unwanted))) == []


def test_threads_share_one_malloc_arena_on_glibc_unless_the_operator_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    """One arena: the argon2 buffers of the hashing threads are not each kept for good (see the function)."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert share_one_malloc_arena() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert share_one_malloc_arena() is False
    monkeypatch.delenv("GLIBC_TUNABLES")
    assert share_one_malloc_arena() is (platform.libc_ver()[0] == "glibc")


@pytest.mark.parametrize(
    ("cpus", "workers", "threads"), [(2, 1, 2), (2, 2, 1), (8, 3, 2), (2, 4, 1), (None, 1, 1), (16, 1, 16)]
)
def test_the_workers_of_a_server_hash_on_one_thread_per_core_between_them(
    cpus: int | None, workers: int, threads: int
) -> None:
    """Each argon2 thread holds a buffer of the memory cost: more of them than cores only adds memory."""
    assert hashing_threads(cpus, workers) == threads
