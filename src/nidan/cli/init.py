"""``nidan init``: create a nidan instance where the settings point (data directory, keys, migrated database) and
say what was made and what to do next. The one command besides ``nidan serve`` that creates an instance."""

from __future__ import annotations

import shlex

import typer

from nidan.bootstrap import build_runtime, instance_missing
from nidan.services import setup

from .common import CliState, loaded_settings, reporting_errors, state_of


def command_prefix(state: CliState) -> str:
    """``nidan`` with the global options this command was given, so the next commands reach the same instance."""
    words = ["nidan"]
    if state.config is not None:
        words += ["--config", str(state.config)]
    if state.data_dir is not None:
        words += ["--data-dir", str(state.data_dir)]
    return shlex.join(words)


def init(ctx: typer.Context) -> None:
    """Create a nidan instance: the data directory (mode 0700), new keys (unless keys_dir names existing ones) and
    the database with every migration applied. Other commands, except serve, refuse where no instance is. Run where
    an instance is already, it creates nothing (it applies pending migrations, as every command does)."""
    state = state_of(ctx)
    settings, place = loaded_settings(ctx)
    with reporting_errors(place):
        creating = instance_missing(settings)
        runtime = build_runtime(settings)
        try:
            needs_administrator = setup.needs_setup(runtime.services)
        finally:
            runtime.engine.dispose()
    nidan = command_prefix(state)
    if not creating:
        typer.echo(f"A nidan instance is already at {place.data_dir} (database {place.database}): nothing created.")
        if needs_administrator:
            typer.echo(f"It has no administrator yet: start it with `{nidan} serve` to get the setup link.")
        return
    keys = settings.resolved_keys_dir.resolve()
    made_keys = "new keys" if settings.keys_dir is None else "the keys_dir you set, nidan made none"
    typer.echo("Created a nidan instance:")
    typer.echo(f"  Data directory: {settings.data_dir.resolve()}")
    typer.echo(f"  Keys:           {keys} ({made_keys}; back them up: without them no TOTP secret can be opened)")
    typer.echo(f"  Database:       {place.database}, every migration applied")
    typer.echo("Next:")
    typer.echo(f"  Start the server: {nidan} serve")
    typer.echo(
        "  While no administrator exists, it prints a one-time link to create the first one (every start makes a "
        "new link)."
    )
    typer.echo(
        f"  Or create the administrator here: {nidan} user add USERNAME --email EMAIL --role admin (it asks for the "
        "password twice)."
    )
