"""``nidan serve``: prepare storage, print where to go (a setup link while no administrator exists), run uvicorn."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from nidan import __version__
from nidan.bootstrap import (
    Runtime,
    build_runtime,
    instance_missing,
    place_of,
    record_serving_address,
    recorded_serving_address,
)
from nidan.config import Settings
from nidan.services import setup
from nidan.services.setup import SETUP_TOKEN_LIFETIME

from .common import CliState, reporting_errors, state_of


def base_url(settings: Settings, host: str, port: int) -> str:
    """Where people open nidan: ``public_url`` when set, else the address we listen on."""
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/") + "/"
    if host in ("0.0.0.0", ""):  # noqa: S104 - naming the wildcard, not binding to it
        shown = "127.0.0.1"
    elif host == "::":
        shown = "[::1]"
    elif ":" in host and not host.startswith("["):
        shown = f"[{host}]"
    else:
        shown = host
    return f"http://{shown}:{port}/"


def link_base(settings: Settings) -> tuple[str, str | None]:
    """Where a link another command prints points, and a note when that is a guess: ``server.public_url`` when set;
    else the host and port ``nidan serve`` last listened on with this data directory (it records them at each
    start); else the configured ``server.host`` and ``server.port``, which a server not started yet will use."""
    if settings.server.public_url:
        return base_url(settings, "", 0), None
    recorded = recorded_serving_address(settings)
    if recorded is not None:
        return base_url(settings, *recorded), None
    server = settings.server
    note = (
        f"nidan serve has not been started with the data directory {place_of(settings).data_dir} yet, so the "
        "link uses the configured address (server.host and server.port). Set server.public_url to the address "
        "people open, and printed links use it."
    )
    return base_url(settings, server.host, server.port), note


def describe_database(runtime: Runtime) -> str:
    url = runtime.engine.url
    if url.get_backend_name() == "sqlite":
        return f"SQLite, {url.database}"
    return f"{url.get_backend_name()}, {url.render_as_string(hide_password=True)}"


def banner(
    runtime: Runtime, *, host: str, port: int, workers: int, setup_token: str | None, created: bool = False
) -> str:
    settings = runtime.settings
    url = base_url(settings, host, port)
    hours = int(SETUP_TOKEN_LIFETIME.total_seconds() // 3600)
    lines = [
        f"nidan {__version__}" + ("  (a new instance: data directory, keys and database created)" if created else ""),
        f"  Data directory: {settings.data_dir.resolve()}",
        f"  Keys:           {settings.resolved_keys_dir.resolve()}  (back them up: without them no TOTP secret "
        "can be opened)",
        f"  Database:       {describe_database(runtime)}",
        f"  Listening on:   {host}:{port} ({workers} worker{'s' if workers != 1 else ''})",
        "",
        f"nidan is at {url}",
    ]
    if setup_token is not None:
        lines += [
            "No administrator exists yet.",
            f"Create the first administrator: {url}setup?token={setup_token}",
            f"The link works once and expires in {hours} hours. While no administrator exists, every start prints "
            "a new link and the previous one stops working.",
        ]
    else:
        lines.append(f"Sign in at {url}")
    return "\n".join(lines)


def export_for_workers(state: CliState, settings: Settings, workers: int) -> None:
    """Worker processes rebuild settings from the environment: hand them the same, as absolute values, and how
    many they are (each sizes its password-hashing threads by its share of the cores)."""
    os.environ["NIDAN_SERVER_WORKERS"] = str(workers)
    os.environ["NIDAN_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["NIDAN_DATABASE_URL"] = settings.resolved_database_url
    if settings.keys_dir is not None:
        os.environ["NIDAN_KEYS_DIR"] = str(settings.keys_dir.resolve())
    config = state.config_path()
    if config.exists():
        os.environ["NIDAN_CONFIG"] = str(config.resolve())


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: server.host, 127.0.0.1).", show_default=False)
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on (default: server.port, 8000).", show_default=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Worker processes (default: server.workers, 1).", show_default=False),
    ] = None,
) -> None:
    """Run the web server (API and pages). Migrates the database first; where no instance is yet, creates one (the
    data directory, keys and database, as `nidan init` does) and says so."""
    state = state_of(ctx)
    with reporting_errors():
        settings = state.settings()
    place = place_of(settings)
    with reporting_errors(place):
        host = host if host is not None else settings.server.host
        port = port if port is not None else settings.server.port
        if workers is not None and workers != settings.server.workers:
            # The runtime sizes its password-hashing threads by the worker count actually run.
            settings = settings.model_copy(update={"server": settings.server.model_copy(update={"workers": workers})})
        workers = settings.server.workers
        created = instance_missing(settings)
        runtime = build_runtime(settings)
        token = setup.issue_setup_token(runtime.services) if setup.needs_setup(runtime.services) else None
    try:
        record_serving_address(settings, host, port)
    except OSError as exc:  # links printed later fall back to the configured address; serving goes on
        typer.echo(f"warning: cannot note the address in {place.data_dir}: {exc.strerror}", err=True)
    typer.echo(banner(runtime, host=host, port=port, workers=workers, setup_token=token, created=created))
    sys.stdout.flush()
    if workers > 1:
        runtime.engine.dispose()
        export_for_workers(state, settings, workers)
    # The web face owns running itself; imported here so other commands never load the web stack.
    from nidan.web import server

    server.run(runtime, host=host, port=port, workers=workers)
