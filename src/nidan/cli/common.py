"""What every command shares: the ``--config`` choice, the runtime it builds, and how errors are reported.

This module is the CLI's composition root: it is the one place in ``cli/`` that loads settings and calls
``nidan.bootstrap``. Commands receive a ``Runtime`` and talk to services only.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer

from nidan import __version__
from nidan.bootstrap import Maintenance, Runtime, build_maintenance, build_runtime
from nidan.config import load_settings
from nidan.core.models import ClientInfo
from nidan.errors import ConfigurationError, NidanError

#: Exit status for a request the services refused (taken username, weak password, unknown user, ...).
EXIT_REFUSED = 1
#: Exit status for a configuration nidan cannot run with (bad nidan.toml, missing key, unreachable database).
EXIT_CONFIGURATION = 2


@dataclass(frozen=True)
class CliState:
    """Global options, kept on the Typer context for the sub-commands."""

    config: Path | None = None

    def config_path(self) -> Path:
        """The configuration file ``load_settings`` reads: ``--config``, else ``$NIDAN_CONFIG``, else ./nidan.toml."""
        return self.config or Path(os.environ.get("NIDAN_CONFIG", "nidan.toml"))


def command_line_client() -> ClientInfo:
    """How the audit log names a command run here: the program and the operating-system account that ran it."""
    try:
        account = getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment (a container without USER, say)
        account = f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return ClientInfo(user_agent=f"nidan {__version__} command line, run by {account}")


def state_of(ctx: typer.Context) -> CliState:
    state = ctx.find_root().obj
    return state if isinstance(state, CliState) else CliState()


def report(error: NidanError) -> None:
    """One line on stderr: the stable code first (for scripts and support), then the sentence for people."""
    message = " ".join(error.message.split())
    typer.echo(f"error [{error.code}]: {message}", err=True)


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn nidan's errors into a one-line message and an exit status; never a traceback."""
    try:
        yield
    except ConfigurationError as exc:
        report(exc)
        raise typer.Exit(EXIT_CONFIGURATION) from None
    except NidanError as exc:
        report(exc)
        raise typer.Exit(EXIT_REFUSED) from None


@contextmanager
def opened_runtime(ctx: typer.Context) -> Iterator[Runtime]:
    """Settings → runtime for one command; the database connections are closed when the command ends."""
    with reporting_errors():
        runtime = build_runtime(load_settings(state_of(ctx).config))
    try:
        with reporting_errors():
            yield runtime
    finally:
        runtime.engine.dispose()


@contextmanager
def opened_maintenance(ctx: typer.Context, *, create_data_dir: bool = False) -> Iterator[Maintenance]:
    """Settings → the read-only administration context (no keys created, no migration applied)."""
    with reporting_errors():
        maintenance = build_maintenance(load_settings(state_of(ctx).config), create_data_dir=create_data_dir)
    try:
        with reporting_errors():
            yield maintenance
    finally:
        maintenance.engine.dispose()
