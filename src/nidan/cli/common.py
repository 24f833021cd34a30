"""What every command shares: the ``--config`` choice, the runtime it builds, and how errors are reported.

This module is the CLI's composition root: it is the one place in ``cli/`` that loads settings and calls
``nidan.bootstrap``. Commands receive a ``Runtime`` and talk to services only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from nidan.bootstrap import Runtime, build_runtime
from nidan.config import Settings, load_settings
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


_SECTION_OF_MODEL = {"Settings": "", "ServerSettings": "server", "SecuritySettings": "security"}


def describe_invalid_settings(exc: ValidationError) -> str:
    """One line per problem, named as in nidan.toml and as the environment variable that sets it."""
    section = _SECTION_OF_MODEL.get(exc.title, "")
    problems = []
    for problem in exc.errors():
        path = [section, *(str(part) for part in problem["loc"])] if section else [str(p) for p in problem["loc"]]
        path = [part for part in path if part]
        key = ".".join(path)
        env = "NIDAN_" + "_".join(part.upper() for part in path)
        got = f" (got {problem['input']!r})" if "input" in problem and not isinstance(problem["input"], dict) else ""
        problems.append(f"{key} ({env}): {problem['msg']}{got}")
    return "The configuration is not valid: " + "; ".join(problems) + "."


def settings_for(state: CliState) -> Settings:
    try:
        return load_settings(state.config)
    except ConfigurationError as exc:
        if isinstance(exc.__cause__, ValidationError):
            raise ConfigurationError(describe_invalid_settings(exc.__cause__)) from exc
        raise
    except ValidationError as exc:  # a section that fails validation escapes load_settings as pydantic's error
        raise ConfigurationError(describe_invalid_settings(exc)) from exc


def runtime_for(settings: Settings) -> Runtime:
    """Create the data directory and keys if needed, apply pending migrations, load the keys."""
    try:
        return build_runtime(settings)
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigurationError(
            f"The database cannot be used: {reason}. Check NIDAN_DATABASE_URL (or database_url in nidan.toml) "
            "and that the database server is running."
        ) from exc
    except OSError as exc:
        raise ConfigurationError(
            f"The data directory {settings.data_dir} cannot be prepared: {exc}. Check the path and its permissions."
        ) from exc


@contextmanager
def opened_runtime(ctx: typer.Context) -> Iterator[Runtime]:
    """Settings → runtime for one command; the database connections are closed when the command ends."""
    with reporting_errors():
        runtime = runtime_for(settings_for(state_of(ctx)))
    try:
        with reporting_errors():
            yield runtime
    finally:
        runtime.engine.dispose()
