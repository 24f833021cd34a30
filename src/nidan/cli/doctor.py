"""``nidan doctor``: check the database, its migrations, the keys and the clock; say what to fix."""

from __future__ import annotations

import typer

from nidan.services import doctor as doctoring

from .common import EXIT_REFUSED, opened_maintenance


def doctor(ctx: typer.Context) -> None:
    """Check that the database answers and is migrated, that every key the data needs is present and private, and
    that the system clock is synchronised. One line per check: OK, WARN or FAIL with what to fix; exit status 1
    if any FAIL. Changes nothing (creates no key, applies no migration)."""
    with opened_maintenance(ctx) as maintenance:
        diagnosis = doctoring.diagnose(maintenance.services)
    width = max(len(check.name) for check in diagnosis.checks)
    for check in diagnosis.checks:
        typer.echo(f"{check.status.value:<5} {check.name:<{width}}  {check.message}")
    failed = sum(check.status is doctoring.Status.FAIL for check in diagnosis.checks)
    warned = sum(check.status is doctoring.Status.WARN for check in diagnosis.checks)
    if failed:
        typer.echo(f"{failed} check{'s' if failed != 1 else ''} failed: fix {'them' if failed != 1 else 'it'} first.")
        raise typer.Exit(EXIT_REFUSED)
    typer.echo("Everything nidan needs is in place." if not warned else f"No failures; {warned} warning(s).")
