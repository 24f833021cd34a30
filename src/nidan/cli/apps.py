"""``nidan app ...``: register the relying applications that may call the verify API."""

from __future__ import annotations

from typing import Annotated

import typer

from nidan.services import applications

from .common import command_line_client, opened_runtime
from .users import minute_text, render_table

app = typer.Typer(help="Manage the applications that may call the verify API.", no_args_is_help=True)

AppName = Annotated[str, typer.Argument(help="1-64 characters: a-z, 0-9, '.', '_', '-'; e.g. wiki.")]


@app.command("add")
def add(ctx: typer.Context, name: AppName) -> None:
    """Register an application and print its API key (shown only this once). Audited."""
    with opened_runtime(ctx) as runtime:
        registered = applications.add(runtime.services, name=name, actor=None, client=command_line_client())
    typer.echo(f'Application "{registered.application.name}" added. Its API key, shown only this once:')
    typer.echo(registered.api_key)
    typer.echo("Send it as 'Authorization: Bearer <key>' to POST /api/v1/verify.", err=True)


@app.command("list")
def list_applications(ctx: typer.Context) -> None:
    """The registered applications (never their keys)."""
    with opened_runtime(ctx) as runtime:
        found = applications.list_all(runtime.services)
    if not found:
        typer.echo("No applications are registered. Add one with `nidan app add NAME`.")
        return
    rows = [["NAME", "ADDED", "BY", "LAST USED"]]
    for found_app in found:
        by = found_app.created_by or "command line"
        rows.append([found_app.name, minute_text(found_app.created_at), by, minute_text(found_app.last_used_at)])
    typer.echo(render_table(rows))


@app.command("remove")
def remove(ctx: typer.Context, name: AppName) -> None:
    """Remove an application: its API key stops working at once. Audited."""
    with opened_runtime(ctx) as runtime:
        removed = applications.remove(runtime.services, name=name, actor=None, client=command_line_client())
    typer.echo(f'Application "{removed.name}" removed; its API key no longer works.')
