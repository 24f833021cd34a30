"""``nidan audit ...``: check the security event log's hash chain, and export it as JSON Lines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from nidan.core.audit import utc_iso
from nidan.errors import InvalidInput
from nidan.services import audit

from .common import EXIT_REFUSED, opened_runtime

app = typer.Typer(help="The tamper-evident security event log.", no_args_is_help=True)


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Check every event's hash and its link to the one before; report the first event edited, removed or
    reordered (exit status 1), else how many events the intact chain holds and its head hash."""
    with opened_runtime(ctx) as runtime:
        result = audit.verify(runtime.services)
    problem = result.problem
    if problem is None:
        plural = "event" if result.events == 1 else "events"
        typer.echo(f"{result.events} {plural}, chain intact.")
        typer.echo(f"Head: seq {result.head.seq}, hash {result.head.hash}")
        return
    typer.echo(f"Audit chain broken at seq {problem.seq} ({problem.kind.value}): {problem.message}.")
    if problem.record is not None:
        found = problem.record
        typer.echo(f"  Event: seq {found.seq}, {found.event.event_type}, {utc_iso(found.event.occurred_at)}")
    typer.echo(
        "Events before this point are intact. Compare with an export kept elsewhere to see what changed; see "
        "'Audit log' in the admin guide."
    )
    raise typer.Exit(EXIT_REFUSED)


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file (created or replaced, mode 0600) instead of standard output.",
            dir_okay=False, show_default=False,
        ),
    ] = None,
) -> None:  # fmt: skip
    """Write every event, oldest first, as JSON Lines: one object per line with seq, time (UTC), type, actor,
    subject, client address, user agent, correlation id, details, prev_hash and hash."""
    with opened_runtime(ctx) as runtime:
        if output is None:
            audit.export(runtime.services, typer.echo)
            return
        try:
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(descriptor, "w", encoding="utf-8", newline="\n") as stream:

                def write_line(line: str) -> None:
                    stream.write(line + "\n")

                count = audit.export(runtime.services, write_line)
        except OSError as exc:
            raise InvalidInput(f"Cannot write {output}: {exc.strerror or exc}.") from None
    plural = "event" if count == 1 else "events"
    typer.echo(f"Exported {count} {plural} to {output}.")
