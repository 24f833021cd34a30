"""The ``nidan`` command line: ``nidan serve``, ``nidan user ...`` and ``nidan audit ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nidan import __version__

from . import audit, users
from .common import CliState
from .serve import serve

app = typer.Typer(
    name="nidan",
    help="nidan: a self-hosted two-step verification server.",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks with local variables could show a password; plain ones are enough for a crash report.
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"nidan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="The settings file (TOML); by default $NIDAN_CONFIG, else ./nidan.toml if it exists.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Every command creates the data directory and applies pending database migrations first."""
    ctx.obj = CliState(config=config)


app.command("serve")(serve)
app.add_typer(users.app, name="user")
app.add_typer(audit.app, name="audit")


if __name__ == "__main__":
    app(prog_name="nidan")
