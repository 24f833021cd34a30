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
from nidan.bootstrap import (
    Maintenance,
    Place,
    Runtime,
    build_maintenance,
    build_runtime,
    place_of,
    require_instance,
)
from nidan.config import Settings, load_settings
from nidan.core.models import ClientInfo
from nidan.errors import ConfigurationError, InstanceNotFound, NidanError

#: Exit status for a request the services refused (taken username, weak password, unknown user, ...).
EXIT_REFUSED = 1
#: Exit status for a configuration nidan cannot run with (bad nidan.toml, missing key, unreachable database).
EXIT_CONFIGURATION = 2


@dataclass(frozen=True)
class CliState:
    """Global options, kept on the Typer context for the sub-commands."""

    config: Path | None = None
    data_dir: Path | None = None

    def config_path(self) -> Path:
        """The configuration file ``load_settings`` reads: ``--config``, else ``$NIDAN_CONFIG``, else ./nidan.toml."""
        return self.config or Path(os.environ.get("NIDAN_CONFIG", "nidan.toml"))

    def settings(self) -> Settings:
        """The settings every command runs with: ``--data-dir`` wins over ``NIDAN_DATA_DIR`` and nidan.toml."""
        settings = load_settings(self.config)
        if self.data_dir is None:
            return settings
        # Not an init value: those give way to the environment (see config._Section). The default database and key
        # directory follow the data directory (Settings.resolved_*).
        return settings.model_copy(update={"data_dir": self.data_dir})


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


def report(error: NidanError, place: Place | None = None) -> None:
    """One line on stderr: the stable code first (for scripts and support), then the sentence for people, then
    which data directory and database the command used (when the settings were read)."""
    message = " ".join(error.message.split())
    if place is not None and not isinstance(error, InstanceNotFound):  # that one names them already
        message = f"{message} ({place})"
    typer.echo(f"error [{error.code}]: {message}", err=True)


@contextmanager
def reporting_errors(place: Place | None = None) -> Iterator[None]:
    """Turn nidan's errors into a one-line message and an exit status; never a traceback."""
    try:
        yield
    except ConfigurationError as exc:
        report(exc, place)
        raise typer.Exit(EXIT_CONFIGURATION) from None
    except NidanError as exc:
        report(exc, place)
        raise typer.Exit(EXIT_REFUSED) from None


def loaded_settings(ctx: typer.Context) -> tuple[Settings, Place]:
    """The command's settings and where they point; a configuration nidan cannot run with ends the command."""
    with reporting_errors():
        settings = state_of(ctx).settings()
        return settings, place_of(settings)


@contextmanager
def opened_runtime(ctx: typer.Context) -> Iterator[Runtime]:
    """Settings → runtime for one command, on an instance that exists (``instance_not_found`` otherwise: only
    ``nidan init`` and ``nidan serve`` create one); the database connections are closed when the command ends."""
    settings, place = loaded_settings(ctx)
    with reporting_errors(place):
        require_instance(settings)
        runtime = build_runtime(settings)
    try:
        with reporting_errors(place):
            yield runtime
    finally:
        runtime.engine.dispose()


@contextmanager
def opened_maintenance(
    ctx: typer.Context, *, create_data_dir: bool = False, needs_instance: bool = True
) -> Iterator[Maintenance]:
    """Settings → the read-only administration context (no keys created, no migration applied). Refuses
    (``instance_not_found``) where no instance is, unless ``needs_instance`` is false (``nidan restore``, which
    makes one from an archive)."""
    settings, place = loaded_settings(ctx)
    with reporting_errors(place):
        if needs_instance:
            require_instance(settings)
        maintenance = build_maintenance(settings, create_data_dir=create_data_dir)
    try:
        with reporting_errors(place):
            yield maintenance
    finally:
        maintenance.engine.dispose()
