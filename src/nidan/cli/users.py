"""``nidan user ...``: add users, list them, show one, set a password."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from nidan.core.backoff import ThrottleState
from nidan.core.models import InstanceRole, User
from nidan.errors import InvalidInput
from nidan.services import accounts, enrollment, throttling

from .common import command_line_client, opened_runtime

app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input instead of prompting.",
    ),
]


def read_password(from_stdin: bool) -> str:
    if not from_stdin:
        password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return password
    line = sys.stdin.readline()
    password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise InvalidInput("No password on standard input: pass it as the first line, e.g. `printf '%s\\n' …`.")
    return password


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "never"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


@app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="1-64 characters: a-z, 0-9, '.', '_', '-'; case-insensitive.")],
    email: Annotated[str, typer.Option("--email", help="The user's email address.")],
    password_stdin: PasswordStdin = False,
    role: Annotated[InstanceRole, typer.Option("--role", help="admin manages the instance.")] = InstanceRole.MEMBER,
) -> None:
    """Create a user. Without --password-stdin, asks for the password twice."""
    with opened_runtime(ctx) as runtime:
        password = read_password(password_stdin)
        user = accounts.create_user(
            runtime.services,
            username=username,
            email=email,
            password=password,
            role=role,
            client=command_line_client(),
        )
    typer.echo(f"Created {user.role.value} {user.username} <{user.email}>.")


def _two_factor(user: User, states: dict[int, enrollment.SecurityState]) -> bool:
    return states[user.id].totp_enabled


@app.command("list")
def list_users(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List every user with their role, 2FA state and last sign-in (times in UTC)."""
    with opened_runtime(ctx) as runtime:
        users = list(accounts.list_users(runtime.services))
        states = {user.id: enrollment.security_state(runtime.services, user.id) for user in users}
    if as_json:
        records = [
            {
                "username": user.username,
                "email": user.email,
                "role": user.role.value,
                "two_factor": _two_factor(user, states),
                "recovery_codes_remaining": states[user.id].recovery_codes_remaining,
                "created_at": _iso(user.created_at),
                "last_sign_in_at": _iso(user.last_sign_in_at),
            }
            for user in users
        ]
        typer.echo(json.dumps(records, indent=2))
        return
    if not users:
        typer.echo("No users yet. Add one with `nidan user add USERNAME --email EMAIL`.")
        return
    rows = [["USERNAME", "EMAIL", "ROLE", "2FA", "CREATED (UTC)", "LAST SIGN-IN (UTC)"]]
    rows += [
        [
            user.username,
            user.email,
            user.role.value,
            "on" if _two_factor(user, states) else "off",
            _when(user.created_at),
            _when(user.last_sign_in_at),
        ]
        for user in users
    ]
    typer.echo(render_table(rows))


def _clock_note(offset_seconds: int) -> str:
    minutes = round(abs(offset_seconds) / 60)
    return f"about {minutes} min {'ahead' if offset_seconds > 0 else 'behind'}"


@app.command("show")
def show(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose account to show.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show one user's second-factor state and the device-clock drift seen at their recent sign-ins."""
    with opened_runtime(ctx) as runtime:
        user = accounts.find_user(runtime.services, username)
        state = enrollment.security_state(runtime.services, user.id)
        blocks = throttling.status(runtime.services, username)
    observations = [(o.observed_at, o.offset_seconds) for o in state.clock_observations]
    if as_json:
        record = {
            "username": user.username,
            "email": user.email,
            "role": user.role.value,
            "created_at": _iso(user.created_at),
            "last_sign_in_at": _iso(user.last_sign_in_at),
            "two_factor": state.totp_enabled,
            "totp_activated_at": _iso(state.totp_activated_at),
            "recovery_codes_remaining": state.recovery_codes_remaining,
            "clock_observations": [{"observed_at": _iso(at), "offset_seconds": off} for at, off in observations],
            "second_step_failures": blocks.second_factor.failures,
            "blocked_until": _iso(blocks.second_factor.blocked_until),
            "locked": blocks.second_factor.locked_at is not None,
            "password_failures": {ip: st.failures for ip, st in blocks.passwords},
        }
        typer.echo(json.dumps(record, indent=2))
        return
    lines = [
        f"User:            {user.username} <{user.email}> ({user.role.value})",
        f"Created:         {_when(user.created_at)} UTC",
        f"Last sign-in:    {_when(user.last_sign_in_at)}{' UTC' if user.last_sign_in_at else ''}",
        "Two-step:        " + (f"on since {_when(state.totp_activated_at)} UTC" if state.totp_enabled else "off"),
        f"Recovery codes:  {state.recovery_codes_remaining} left" if state.totp_enabled else "Recovery codes:  none",
    ]
    if observations:
        lines.append("Device clock off at recent sign-ins (a wrong code that matched another time):")
        lines += [f"  {_when(at)} UTC  {_clock_note(off)}" for at, off in observations]
    else:
        lines.append("Device clock:    no drift seen in the last 30 days")
    lines.append("Backoff:         " + _describe_block(blocks.second_factor, "second step"))
    lines += [f"                 {_describe_block(st, f'passwords from {ip}')}" for ip, st in blocks.passwords]
    typer.echo("\n".join(lines))


def _describe_block(state: ThrottleState, what: str) -> str:
    if state.locked_at is not None:
        return f"{what}: LOCKED since {_when(state.locked_at)} UTC after {state.failures} failures (nidan user unblock)"
    if state.blocked_until is not None and state.blocked_until > datetime.now(UTC):
        return f"{what}: blocked until {_when(state.blocked_until)} UTC, {state.failures} failures in a row"
    return f"{what}: {state.failures} failures in a row" if state.failures else f"{what}: no recent failures"


@app.command("unblock")
def unblock(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose blocks to lift.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the audit log.")] = None,
) -> None:
    """Lift a user's backoff block, the hard lock included (check it is really them first). Audited."""
    with opened_runtime(ctx) as runtime:
        cleared = throttling.clear(
            runtime.services, username=username, actor=None, client=command_line_client(), reason=reason
        )
    typer.echo(f"Cleared {cleared} failure counter{'s' if cleared != 1 else ''} for {username}.")


@app.command("passwd")
def passwd(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose password to set.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password and sign them out everywhere."""
    with opened_runtime(ctx) as runtime:
        user = accounts.find_user(runtime.services, username)
        password = read_password(password_stdin)
        ended = accounts.set_password(
            runtime.services, username=username, password=password, client=command_line_client()
        )
    plural = "session" if ended == 1 else "sessions"
    typer.echo(f"Password changed for {user.username}; {ended} {plural} ended (signed out everywhere).")
