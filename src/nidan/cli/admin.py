"""``nidan admin recover``: break-glass for an instance administrator who lost their second factor.

Local access to the server is the proof: whoever can run this command can read the database and the keys anyway.
The web sign-in never has a way around 2FA; this command is the way back in, and it is audited.
"""

from __future__ import annotations

from typing import Annotated

import typer

from nidan.services import break_glass

from .common import command_line_client, opened_runtime
from .serve import link_base

app = typer.Typer(help="Break-glass for instance administrators.", no_args_is_help=True)


@app.command("recover")
def recover(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The instance administrator who lost their second factor.")],
) -> None:
    """Reset an instance administrator's 2FA and backoff blocks (the hard lock included), sign them out everywhere,
    and print a one-time link into setting 2FA up again. Audited as admin.recovered."""
    with opened_runtime(ctx) as runtime:
        recovery = break_glass.recover_admin(runtime.services, username=username, client=command_line_client())
        base, note = link_base(runtime.settings)
        url = f"{base}recover?token={recovery.token}"
    minutes = int(break_glass.LINK_LIFETIME.total_seconds() // 60)
    plural = "session" if recovery.sessions_ended == 1 else "sessions"
    typer.echo(
        f"The second factors and blocks of {recovery.user.username} were reset; {recovery.sessions_ended} {plural} "
        "ended."
    )
    typer.echo(f"Open this link once, within {minutes} minutes, as {recovery.user.username}:")
    typer.echo(url)
    if note is not None:
        typer.echo(f"({note})")
    typer.echo(
        "It signs straight into setting up an authenticator app and nothing else; the account's password is not "
        "needed. Hand it over only to that administrator, in person or over a channel you trust. Running this "
        "command again makes a new link; the previous one stops working."
    )
