"""The environment of one end-to-end test: its own data directory and, per back end, its own empty database; and
the headless Chromium the browser tests drive."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import text

from tests.conftest import BACKENDS, FAST_SECURITY, PostgresDatabases


@pytest.fixture(params=BACKENDS)
def environment(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresDatabases | None
) -> Iterator[dict[str, str]]:
    """The environment of every ``nidan`` process of one test: its own data directory and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIDAN_") or k == "NIDAN_TEST_DATABASE_URL"}
    env.update(
        NIDAN_DATA_DIR=str(tmp_path / "data"),
        NIDAN_CONFIG=str(tmp_path / "no-such-nidan.toml"),
        NIDAN_SECURITY_ARGON2_MEMORY_KIB=str(FAST_SECURITY["argon2_memory_kib"]),
        NIDAN_SECURITY_ARGON2_TIME_COST=str(FAST_SECURITY["argon2_time_cost"]),
        PYTHONUNBUFFERED="1",
    )
    if request.param == "sqlite":
        yield env
        return
    assert postgres is not None
    name = f"nidan_e2e_{uuid.uuid4().hex[:12]}"
    with postgres.admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))  # empty: serve must migrate it
    env["NIDAN_DATABASE_URL"] = postgres.url_for(name)
    yield env
    postgres.drop(name)


CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    # Checked in the test body: a missing browser is a failure with a reason, never a silent skip.
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "Chromium is not installed: the browser test needs it (Debian: apt-get install chromium; "
        "scripts/test installs it)"
    )


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()
