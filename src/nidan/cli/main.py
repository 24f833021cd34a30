"""The ``nidan`` command line: ``init``, ``serve``, ``user ...``, ``org ...``, ``admin recover``, ``app ...``,
``audit ...``, ``backup``, ``restore``, ``keys ...``, ``doctor``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nidan import __version__

from . import admin, apps, audit, keys, orgs, users
from .backup import backup, restore
from .common import CliState
from .doctor import doctor
from .init import init
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
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="The instance's data directory; by default $NIDAN_DATA_DIR, else data_dir in the settings file, "
            "else ./nidan-data.",
            show_default=False,
            file_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Every command works on the nidan instance in the data directory and its database. Only init and serve create
    one where none is; the others refuse there. Commands apply pending database migrations first, except doctor,
    backup, restore and keys list, which change nothing they do not have to."""
    ctx.obj = CliState(config=config, data_dir=data_dir)


app.command("init")(init)
app.command("serve")(serve)
app.add_typer(users.app, name="user")
app.add_typer(orgs.app, name="org")
app.add_typer(admin.app, name="admin")
app.add_typer(apps.app, name="app")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.command("backup")(backup)
app.command("restore")(restore)
app.command("doctor")(doctor)


if __name__ == "__main__":
    app(prog_name="nidan")
