"""``nidan keys ...``: list the sealing keys, rotate them, replace the token-hashing key."""

from __future__ import annotations

from typing import Annotated

import typer

from nidan.core.backup import plural
from nidan.errors import InvalidInput
from nidan.services import keys as keyring
from nidan.services.keys import KeyState, ResealProgress

from .common import EXIT_REFUSED, opened_maintenance, opened_runtime, reporting_errors
from .users import render_table

app = typer.Typer(help="The key files: sealing keys (TOTP secrets) and the token-hashing key.", no_args_is_help=True)

RESTART = (
    "Restart every nidan process now: one that is still running keeps its old key ring and seals new secrets with "
    "the old key (nidan still opens those, from retired/; `nidan keys rotate --reseal` after the restarts moves "
    "them)."
)


@app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """Every sealing key: its fingerprint, whether it is the primary (seals new secrets), active, retired or
    missing, and how many TOTP secrets it seals. Changes nothing."""
    with opened_maintenance(ctx) as maintenance:
        found = keyring.list_keys(maintenance.services)
        where = maintenance.services.keys.location
    if not found:
        typer.echo(f"No sealing keys in {where}, and no secret names one.")
        return
    rows = [["FINGERPRINT", "STATE", "TOTP SECRETS"]]
    rows += [[key.fingerprint, key.state.value, str(key.secrets)] for key in found]
    typer.echo(render_table(rows))
    typer.echo(f"Key directory: {where}")
    missing = [key for key in found if key.state is KeyState.MISSING]
    for key in missing:
        typer.echo(
            f"Missing: seal-{key.fingerprint}.key seals {plural(key.secrets, 'secret')}; restore it from backup."
        )
    if missing:
        raise typer.Exit(EXIT_REFUSED)


def _report_batch(progress: ResealProgress) -> None:
    typer.echo(f"  batch {progress.batches}: {progress.resealed} re-sealed so far", err=True)


def _report(progress: ResealProgress, *, stopped_early: bool) -> None:
    typer.echo(
        f"Re-sealed {plural(progress.resealed, 'secret')} under {progress.primary} in "
        f"{plural(progress.batches, 'batch', 'batches')}"
        + (f"; {progress.skipped} changed meanwhile and were left alone" if progress.skipped else "")
        + "."
    )
    for name in progress.retired:
        typer.echo(f"Retired key {name}: moved to retired/seal-{name}.key (nothing names it any more).")
    if progress.unopenable:
        ids = ", ".join(str(i) for i in progress.unopenable[:20])
        typer.echo(
            f"{plural(len(progress.unopenable), 'secret')} could not be opened (damaged, or their key is missing; "
            f"totp_credentials ids {ids}): they stay as they are; reset those users' two-step verification."
        )
    if progress.remaining:
        listed = ", ".join(f"{plural(n, 'secret')} under {name}" for name, n in sorted(progress.remaining.items()))
        if stopped_early:
            typer.echo(f"Stopped as asked; still to do: {listed}. Run `nidan keys rotate` again to continue.")
        else:
            typer.echo(
                f"Still sealed under other keys: {listed} (written meanwhile by a process that has not restarted?). "
                "Restart every nidan process, then run `nidan keys rotate --reseal` again."
            )


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    prepare_only: Annotated[
        bool,
        typer.Option(
            "--prepare", help="Only write a new key and make it primary (then copy it to every host and restart)."
        ),
    ] = False,
    reseal_only: Annotated[
        bool, typer.Option("--reseal", help="Only re-seal every secret under the primary key and retire old keys.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Secrets re-sealed per transaction.")
    ] = keyring.DEFAULT_BATCH,
    max_batches: Annotated[
        int | None, typer.Option("--max-batches", min=1, hidden=True, help="Stop after this many batches.")
    ] = None,
) -> None:
    """Rotate the sealing key while nidan runs: a new primary key, every TOTP secret re-sealed under it in batches,
    then the old key moved to retired/. Several processes or hosts: run --prepare, copy the new key file and
    `primary` to every host and restart every process, then run --reseal. Safe to run again after a crash: it
    continues the unfinished rotation."""
    if prepare_only and reseal_only:
        with reporting_errors():
            raise InvalidInput("Choose --prepare or --reseal, not both (without either, rotate does both).")
    # The full runtime first: it migrates and refuses to go on if the data names a key that is not here.
    with opened_runtime(ctx), opened_maintenance(ctx) as maintenance:
        services = maintenance.services
        if prepare_only:
            name = keyring.prepare(services)
            typer.echo(f"New primary sealing key {name}: {services.keys.location}/seal-{name}.key.")
            typer.echo(
                "Next: copy seal-" + name + ".key and `primary` into every host's key directory, restart every "
                "nidan process, then run `nidan keys rotate --reseal`."
            )
            return
        if reseal_only:
            progress = keyring.reseal(services, batch_size=batch_size, max_batches=max_batches, on_batch=_report_batch)
        else:
            rotation = keyring.rotate(services, batch_size=batch_size, max_batches=max_batches, on_batch=_report_batch)
            progress = rotation.progress
            if rotation.prepared:
                typer.echo(f"New primary sealing key {rotation.prepared}.")
            else:
                typer.echo(f"Continuing the unfinished rotation to key {progress.primary}.")
    stopped_early = max_batches is not None and progress.batches >= max_batches
    _report(progress, stopped_early=stopped_early)
    if not reseal_only:
        typer.echo(RESTART)
    if (progress.remaining and not stopped_early) or progress.unopenable:
        raise typer.Exit(EXIT_REFUSED)


@app.command("rotate-hash")
def rotate_hash(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Replace the token-hashing key hash.key (when it is lost, or leaked). Every session, sign-in attempt and
    setup link stops working: everyone signs in again. The old key moves to retired/."""
    if not yes:
        typer.confirm("Every session ends and everyone must sign in again. Replace hash.key?", abort=True)
    with opened_maintenance(ctx) as maintenance:
        keyring.replace_hash_key(maintenance.services)
        where = maintenance.services.keys.location
    typer.echo(f"New {where}/hash.key. Copy it to every host's key directory and restart every nidan process.")
