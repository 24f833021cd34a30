"""``nidan user ...``: add users, list them, show one, set a password, disable, enable or delete one."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from nidan.core.audit import export_line
from nidan.core.backoff import ThrottleState
from nidan.core.models import InstanceRole, User
from nidan.errors import InvalidInput
from nidan.services import account_status, accounts, audit, enrollment, throttling, tokens, user_admin

from .common import EXIT_REFUSED, command_line_client, opened_runtime

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


def minute_text(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "never"


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat(timespec="seconds") if moment else None


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


@app.command("add")
def add(
    ctx: typer.Context,
    username: Annotated[
        str,
        typer.Argument(
            help="1-64 letters and digits of any script, '.', '_', '-' (RFC 8265); case- and width-insensitive."
        ),
    ],
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
            minute_text(user.created_at),
            minute_text(user.last_sign_in_at),
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
    """Show one user's second-factor state, organisations, the device-clock drift seen at their recent sign-ins and
    their backoff counters."""
    with opened_runtime(ctx) as runtime:
        found = user_admin.overview(runtime.services, username=username, actor=None)
    user, state, blocks = found.user, found.security, found.block
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
            "two_factor_required": state.two_factor_required,
            "two_factor_due": _iso(state.two_factor_due),
            "registration_required_at": _iso(found.registration_required_at),
            "organisations": [
                {"organisation": m.organisation.slug, "role": m.role.value, "managed": m.managed}
                for m in found.memberships
            ],
            "live_tokens": found.live_tokens,
        }
        typer.echo(json.dumps(record, indent=2))
        return
    lines = [
        f"User:            {user.username} <{user.email}> ({user.role.value})",
        f"Created:         {minute_text(user.created_at)} UTC",
        f"Last sign-in:    {minute_text(user.last_sign_in_at)}{' UTC' if user.last_sign_in_at else ''}",
        "Two-step:        " + (f"on since {minute_text(state.totp_activated_at)} UTC" if state.totp_enabled else "off"),
        f"Recovery codes:  {state.recovery_codes_remaining} left" if state.totp_enabled else "Recovery codes:  none",
    ]
    if found.registration_required_at is not None:
        lines.append(
            f"Asked to set up 2FA again at the next sign-in (since {minute_text(found.registration_required_at)} UTC)"
        )
    elif state.two_factor_required and not state.totp_enabled:
        due = f", due {minute_text(state.two_factor_due)} UTC" if state.two_factor_due else ""
        lines.append(f"Required:        2FA is required by an organisation and not set up{due}")
    organisations = [
        f"{m.organisation.slug} ({m.role.value}{'' if m.managed else ', outside collaborator'})"
        for m in found.memberships
    ]
    lines.append(f"Organisations:   {', '.join(organisations) if organisations else 'none'}")
    if observations:
        lines.append("Device clock off at recent sign-ins (a wrong code that matched another time):")
        lines += [f"  {minute_text(at)} UTC  {_clock_note(off)}" for at, off in observations]
    else:
        lines.append("Device clock:    no drift seen in the last 30 days")
    lines.append("Backoff:         " + _describe_block(blocks.second_factor, "second step"))
    lines += [f"                 {_describe_block(st, f'passwords from {ip}')}" for ip, st in blocks.passwords]
    typer.echo("\n".join(lines))


def _describe_block(state: ThrottleState, what: str) -> str:
    if state.locked_at is not None:
        since = minute_text(state.locked_at)
        return f"{what}: LOCKED since {since} UTC after {state.failures} failures (nidan user unblock)"
    if state.blocked_until is not None and state.blocked_until > datetime.now(UTC):
        return f"{what}: blocked until {minute_text(state.blocked_until)} UTC, {state.failures} failures in a row"
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


@app.command("revoke-tokens")
def revoke_tokens(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose access tokens and app passwords to revoke.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why, for the audit log.")] = None,
) -> None:
    """Revoke all of a user's personal access tokens and app passwords (e.g. after a lost laptop). Audited."""
    with opened_runtime(ctx) as runtime:
        user, revoked = tokens.revoke_all(
            runtime.services, username=username, actor=None, client=command_line_client(), reason=reason
        )
    what = "access token or app password" if revoked == 1 else "access tokens and app passwords"
    typer.echo(f"Revoked {revoked} {what} of {user.username}.")


ReasonOption = Annotated[str, typer.Option("--reason", help="Why (e.g. a ticket number), for the audit log.")]


def _checked_reason(reason: str) -> str:
    cleaned = " ".join(reason.split())
    if not 3 <= len(cleaned) <= 200:
        raise InvalidInput("Give a reason of 3 to 200 characters (e.g. a ticket number): it goes into the audit log.")
    return cleaned


@app.command("reset-2fa")
def reset_two_factor(
    ctx: typer.Context, username: Annotated[str, typer.Argument(help="Whose 2FA to reset.")], reason: ReasonOption
) -> None:
    """A lost phone: remove the user's authenticator app and recovery codes and sign them out everywhere; at their
    next sign-in they set 2FA up again before anything else. Audited with the reason."""
    with opened_runtime(ctx) as runtime:
        result = user_admin.reset_two_factor(
            runtime.services,
            username=username,
            actor=None,
            client=command_line_client(),
            reason=_checked_reason(reason),
        )
    removed = "Removed their authenticator app and recovery codes" if result.had_two_factor else "They had no 2FA"
    plural = "session" if result.sessions_ended == 1 else "sessions"
    typer.echo(
        f"{removed}; {result.sessions_ended} {plural} ended. {result.user.username} sets up two-step verification "
        "again at their next sign-in."
    )


@app.command("require-2fa-setup")
def require_two_factor_setup(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Who must set up 2FA again.")],
    reason: ReasonOption,
) -> None:
    """Ask a user to set up their authenticator app again at their next sign-in (after their current second factor,
    if any). Nothing is removed now. Audited with the reason."""
    with opened_runtime(ctx) as runtime:
        user = user_admin.require_registration(
            runtime.services,
            username=username,
            actor=None,
            client=command_line_client(),
            reason=_checked_reason(reason),
        )
    typer.echo(f"{user.username} sets up two-step verification again at their next sign-in.")


@app.command("forget-devices")
def forget_devices(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose remembered browsers to forget.")],
    reason: ReasonOption,
) -> None:
    """A lost or shared computer: every browser the user asked to be remembered asks for the second step again.
    Their sessions and second factors stay. Audited with the reason."""
    with opened_runtime(ctx) as runtime:
        user, forgotten = user_admin.forget_devices(
            runtime.services,
            username=username,
            actor=None,
            client=command_line_client(),
            reason=_checked_reason(reason),
        )
    what = "remembered browser" if forgotten == 1 else "remembered browsers"
    typer.echo(f"Forgot {forgotten} {what} of {user.username}: each asks for the second step again.")


@app.command("disable")
def disable(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose account to disable.")],
    reason: ReasonOption,
) -> None:
    """Disable an account: it cannot sign in, and its sessions, access tokens, app passwords and remembered browsers
    stop working at once. Nothing is deleted; `nidan user enable` lets it sign in again. Audited with the reason."""
    with opened_runtime(ctx) as runtime:
        result = account_status.disable(
            runtime.services,
            username=username,
            actor=None,
            client=command_line_client(),
            reason=_checked_reason(reason),
        )
    if result.already:
        typer.echo(f"{result.user.username} was disabled already: nothing changed.")
        return
    typer.echo(
        f"Disabled {result.user.username}: {result.sessions_ended} session(s) ended, {result.tokens_revoked} token(s) "
        f"revoked, {result.devices_forgotten} remembered browser(s) forgotten."
    )


@app.command("enable")
def enable(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose disabled account to enable again.")],
    reason: ReasonOption,
) -> None:
    """Let a disabled account sign in again (tokens revoked when it was disabled stay revoked). Audited with the
    reason."""
    with opened_runtime(ctx) as runtime:
        user = account_status.enable(
            runtime.services,
            username=username,
            actor=None,
            client=command_line_client(),
            reason=_checked_reason(reason),
        )
    typer.echo(f"{user.username} can sign in again.")


@app.command("delete")
def delete(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose account to delete.")],
    reason: ReasonOption,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")] = False,
) -> None:
    """Delete an account for good: its second factors, sessions, access tokens and app passwords, remembered
    browsers and organisation memberships go with it; the audit log keeps its events. Asks for confirmation unless
    --yes. The last instance administrator and an organisation's last owner cannot be deleted. Audited with the
    reason."""
    with opened_runtime(ctx) as runtime:
        reason = _checked_reason(reason)
        user = accounts.find_user(runtime.services, username)
        question = f"Delete {user.username} <{user.email}> and everything it holds? This cannot be undone."
        if not yes and not typer.confirm(question, default=False):
            typer.echo("Nothing was deleted.")
            raise typer.Exit(EXIT_REFUSED)
        result = account_status.delete(
            runtime.services, username=username, actor=None, client=command_line_client(), reason=reason
        )
    typer.echo(
        f"Deleted {result.user.username}: {result.sessions_ended} session(s) ended, {result.tokens_revoked} token(s) "
        f"revoked, {result.devices_forgotten} remembered browser(s) forgotten, {result.memberships_removed} "
        "membership(s) removed. The audit log keeps its events."
    )


@app.command("passwd")
def passwd(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose password to set.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password, sign them out everywhere and forget their remembered browsers."""
    with opened_runtime(ctx) as runtime:
        user = accounts.find_user(runtime.services, username)
        password = read_password(password_stdin)
        ended = accounts.set_password(
            runtime.services, username=username, password=password, client=command_line_client()
        )
    plural = "session" if ended == 1 else "sessions"
    typer.echo(f"Password changed for {user.username}; {ended} {plural} ended (signed out everywhere).")


@app.command("events")
def events(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="Whose security log to show.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="How many events, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
) -> None:
    """A user's security log, newest first: what they did and what was done to their account (sign-ins, failed
    attempts, 2FA changes, resets, blocks), with the address and correlation id of each."""
    with opened_runtime(ctx) as runtime:
        user = accounts.find_user(runtime.services, username)
        found = audit.all_events(runtime.services, username=user.username, limit=limit)
    if as_json:
        for item in found:
            typer.echo(export_line(item).rstrip("\n"))
        return
    if not found:
        typer.echo(f"No security events for {user.username}.")
        return
    rows = [["SEQ", "TIME (UTC)", "EVENT", "BY", "ADDRESS", "DETAILS"]]
    for item in found:
        event = item.event
        by = event.actor_username if event.actor_user_id != event.subject_user_id else ""
        details = ", ".join(f"{key}={value}" for key, value in event.details.items())
        rows.append(
            [
                str(item.seq),
                minute_text(event.occurred_at),
                event.event_type,
                by or ("command line" if event.actor_user_id is None and event.user_agent else ""),
                event.client_ip or "",
                details,
            ]
        )
    typer.echo(render_table(rows))
