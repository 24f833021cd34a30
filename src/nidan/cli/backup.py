"""``nidan backup FILE`` and ``nidan restore FILE``: one archive with the database and the keys, checked whole."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nidan.core.backup import plural
from nidan.services import backup as backups

from .common import opened_maintenance


def _rows(counts: dict[str, int]) -> str:
    users = counts.get("users", 0)
    return f"{plural(users, 'user')}, {plural(sum(counts.values()), 'row')} in {plural(len(counts), 'table')}"


def backup(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="The archive to write (.tar.gz); replaced if it exists.", dir_okay=False)
    ],
) -> None:
    """Write one archive with everything this instance needs: the database (a portable dump, read from one
    consistent snapshot, so nidan may keep running), the key files, and a manifest with checksums and counts.
    Applies no migration."""
    with opened_maintenance(ctx) as maintenance:
        manifest = backups.backup(maintenance.services, file)
    secrets = sum(manifest.sealed.values())
    typer.echo(f"Backed up to {file} (mode 0600).")
    typer.echo(f"  Database: {_rows(dict(manifest.row_counts))}, schema revision {manifest.revision}.")
    typer.echo(
        f"  Keys:     {plural(len(manifest.key_fingerprints), 'sealing key')} (primary {manifest.primary}) and "
        f"hash.key; {plural(secrets, 'TOTP secret')} sealed."
    )
    typer.echo(
        "The archive holds the keys with the data: whoever has it can open every TOTP secret. Store it like a key."
    )


def restore(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="An archive written by `nidan backup`.", dir_okay=False)],
    force: Annotated[
        bool, typer.Option("--force", help="Replace everything in a database that already holds data.")
    ] = False,
) -> None:
    """Restore an archive into the configured database and key directory. Refuses, changing nothing, an archive
    that lacks a part or does not match its manifest, and a database holding data unless --force. Stop nidan
    first."""
    with opened_maintenance(ctx, create_data_dir=True, needs_instance=False) as maintenance:
        report = backups.restore(maintenance.services, file, replace=force)
        where = maintenance.services.database.describe()
        keys_dir = maintenance.services.keys.location
    manifest = report.manifest
    made = manifest.created_at.strftime("%Y-%m-%d %H:%M UTC")
    typer.echo(f"Restored {file} (made {made} by nidan {manifest.nidan_version} from {manifest.source_database}).")
    typer.echo(f"  Database: {where}: {_rows(dict(report.loaded.row_counts))}.")
    typer.echo(f"  Keys:     written to {keys_dir} ({plural(len(manifest.key_fingerprints), 'sealing key')}).")
    for note in report.moved_aside:
        typer.echo(f"  Note:     {note}.")
    typer.echo("Start nidan again (every process, with this key directory): people sign in as before.")
