"""``nidan org ...``: organisations, their members and roles, and their two-step policy (previewed first).

The command line runs on the server: it acts as the instance itself (no actor), may do everything, and is audited
as "nidan command line, run by <account>".
"""

from __future__ import annotations

from typing import Annotated

import typer

from nidan.core.models import Method, OrgRole
from nidan.core.organisations import Organisation
from nidan.core.policy import (
    MAX_GRACE_DAYS,
    MAX_REMEMBER_DEVICE_DAYS,
    TwoFactorPolicy,
    checked_policy,
    tolerance_in_force,
)
from nidan.errors import InvalidInput
from nidan.services import accounts, organisations

from .common import command_line_client, opened_runtime
from .users import minute_text, render_table

app = typer.Typer(help="Manage organisations, their members and their two-step policy.", no_args_is_help=True)
member_app = typer.Typer(help="Add, change and remove an organisation's members.", no_args_is_help=True)
app.add_typer(member_app, name="member")

Slug = Annotated[str, typer.Argument(help="The organisation's short name: a-z, 0-9 and '-', e.g. platform-team.")]
Username = Annotated[str, typer.Argument(help="The member's username.")]


def _remembering(days: int) -> str:
    if days == 0:
        return "off: the second step at every sign-in"
    return f"a browser may skip the second step for {days} day{'s' if days != 1 else ''}"


def describe_policy(organisation: Organisation, instance_tolerated: int, instance_remember_days: int) -> list[str]:
    policy = organisation.policy
    if policy.remember_device_days is None:
        remember = f"{_remembering(instance_remember_days)} (the instance's setting)"
    else:
        remember = _remembering(policy.remember_device_days)
    in_force = tolerance_in_force(policy.tolerated_failures, instance_tolerated)
    if policy.tolerated_failures is None:
        tolerance = f"{in_force} (the instance's setting)"
    elif policy.tolerated_failures > in_force:  # stored before the instance was made stricter
        tolerance = f"{in_force} (the instance's limit; {policy.tolerated_failures} is set but has no effect)"
    else:
        tolerance = str(in_force)
    return [
        f"Two-step:        {policy.two_factor.value}",
        f"Grace period:    {policy.grace_period_days} day{'s' if policy.grace_period_days != 1 else ''}",
        f"Methods:         {', '.join(m.value for m in Method if m in policy.allowed_methods)}",
        f"Wrong codes:     {tolerance} tolerated before the backoff blocks",
        f"Remembering:     {remember}",
    ]


@app.command("add")
def add(
    ctx: typer.Context,
    slug: Slug,
    name: Annotated[str, typer.Option("--name", help="The name people read, e.g. 'Platform team'.")],
    owner: Annotated[
        str | None, typer.Option("--owner", help="A user who becomes its first owner.", show_default=False)
    ] = None,
) -> None:
    """Create an organisation with the instance's default policy ([policy] in nidan.toml). Audited."""
    with opened_runtime(ctx) as runtime:
        first_owner = accounts.find_user(runtime.services, owner) if owner is not None else None
        created = organisations.create(
            runtime.services, slug=slug, name=name, actor=None, client=command_line_client(), owner=first_owner
        )
    owned = (
        f", owned by {first_owner.username}" if first_owner else " (no owner yet: nidan org member add … --role owner)"
    )
    typer.echo(f'Organisation {created.slug} ("{created.name}") created{owned}.')


@app.command("list")
def list_organisations(ctx: typer.Context) -> None:
    """Every organisation: short name, name, members, two-step policy."""
    with opened_runtime(ctx) as runtime:
        found = organisations.list_all(runtime.services)
    rows = [["SLUG", "NAME", "MEMBERS", "TWO-STEP", "GRACE (DAYS)"]]
    rows += [
        [o.slug, o.name, str(o.members), o.policy.two_factor.value, str(o.policy.grace_period_days)] for o in found
    ]
    typer.echo(render_table(rows))


def _member_rows(view: organisations.OrganisationView) -> list[list[str]]:
    rows = [["USERNAME", "ROLE", "MANAGED", "2FA", "GRACE STARTED (UTC)"]]
    for state in view.members:
        member = state.member
        rows.append(
            [
                member.user.username,
                member.role.value,
                "yes" if member.managed else "no (outside collaborator)",
                "on" if state.two_factor else "off",
                minute_text(state.grace_started_at) if state.grace_started_at else "-",
            ]
        )
    return rows


@app.command("show")
def show(ctx: typer.Context, slug: Slug) -> None:
    """One organisation: its policy and its members (role, managed or outside collaborator, 2FA)."""
    with opened_runtime(ctx) as runtime:
        view = organisations.show(runtime.services, slug, actor=None)
        instance_tolerated = runtime.services.backoff.tolerated_failures
        instance_remember_days = runtime.services.remember_device_days
    organisation = view.organisation
    lines = [f"Organisation:    {organisation.slug} ({organisation.name})"]
    lines.append(f"Created:         {minute_text(organisation.created_at)} UTC")
    lines += describe_policy(organisation, instance_tolerated, instance_remember_days)
    lines += ["", *render_table(_member_rows(view)).splitlines()] if view.members else ["Members:         none"]
    typer.echo("\n".join(lines))


def _methods(text: str) -> list[Method]:
    try:
        return [Method(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise InvalidInput(
            f"Unknown method in {text!r}: use a comma-separated list of {', '.join(m.value for m in Method)}."
        ) from None


def _describe_preview(entries: list[organisations.PreviewEntry]) -> list[str]:
    if not entries:
        return ["Nobody will be asked to set up two-step verification at their next sign-in."]
    lines = [f"Asked to set up two-step verification at their next sign-in ({len(entries)}):"]
    for entry in entries:
        if entry.outcome == organisations.PreviewOutcome.REMINDED_UNTIL:
            what = f"reminded, may skip until {minute_text(entry.until)} UTC"
        else:
            what = "must set it up before anything else"
        lines.append(f"  {entry.user.username} ({entry.role.value}): {what}")
    return lines


@app.command("policy")
def policy(
    ctx: typer.Context,
    slug: Slug,
    two_factor: Annotated[
        TwoFactorPolicy | None,
        typer.Option("--two-factor", help="Who must have 2FA.", show_default=False),
    ] = None,
    grace_days: Annotated[
        int | None,
        typer.Option(
            "--grace-days",
            min=0,
            max=MAX_GRACE_DAYS,
            help="Days a member may still skip setting up 2FA, from their first sign-in under the requirement.",
            show_default=False,
        ),
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option("--methods", help="Allowed methods, comma-separated: totp,recovery_code.", show_default=False),
    ] = None,
    tolerated_failures: Annotated[
        int | None,
        typer.Option(
            "--tolerated-failures",
            min=0,
            max=1000,
            help="Wrong codes tolerated before the backoff blocks, for members.",
            show_default=False,
        ),
    ] = None,
    instance_tolerance: Annotated[
        bool,
        typer.Option("--instance-tolerance", help="Use the instance's setting (rate_limit.tolerated_failures)."),
    ] = False,
    remember_device_days: Annotated[
        int | None,
        typer.Option(
            "--remember-device-days",
            min=0,
            max=MAX_REMEMBER_DEVICE_DAYS,
            help="Days a member's browser may skip the second step once remembered (0: never).",
            show_default=False,
        ),
    ] = None,
    instance_remember_days: Annotated[
        bool,
        typer.Option("--instance-remember-days", help="Use the instance's setting (policy.remember_device_days)."),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show who would be asked; change nothing.")] = False,
) -> None:
    """Without options, print the policy. With them, first print who will be asked to set up 2FA at their next
    sign-in, then apply the change (audited); --dry-run only previews."""
    if tolerated_failures is not None and instance_tolerance:
        raise typer.BadParameter("Give --tolerated-failures or --instance-tolerance, not both.")
    if remember_device_days is not None and instance_remember_days:
        raise typer.BadParameter("Give --remember-device-days or --instance-remember-days, not both.")
    options = (two_factor, grace_days, methods, tolerated_failures, remember_device_days)
    changing = any(v is not None for v in options) or instance_tolerance or instance_remember_days
    client = command_line_client()
    with opened_runtime(ctx) as runtime:
        services = runtime.services
        current = organisations.show(services, slug, actor=None).organisation
        if not changing:
            typer.echo(
                "\n".join(
                    [
                        f"Organisation:    {current.slug} ({current.name})",
                        *describe_policy(current, services.backoff.tolerated_failures, services.remember_device_days),
                    ]
                )
            )
            return
        old = current.policy
        allowed = _methods(methods) if methods is not None else list(old.allowed_methods)
        tolerance = old.tolerated_failures if tolerated_failures is None else tolerated_failures
        remember = old.remember_device_days if remember_device_days is None else remember_device_days
        # Checked before the preview, so that a dry run refuses what the change would refuse.
        proposed = checked_policy(
            two_factor or old.two_factor,
            grace_days if grace_days is not None else old.grace_period_days,
            allowed,
            None if instance_tolerance else tolerance,
            instance_tolerated=services.backoff.tolerated_failures,
            remember_device_days=None if instance_remember_days else remember,
        )
        entries = organisations.preview(services, current.slug, proposed, actor=None)
        typer.echo("\n".join(_describe_preview(entries)))
        if dry_run:
            typer.echo("Dry run: nothing was changed.")
            return
        updated = organisations.set_policy(
            services,
            current.slug,
            two_factor=proposed.two_factor,
            grace_period_days=proposed.grace_period_days,
            allowed_methods=proposed.allowed_methods,
            tolerated_failures=proposed.tolerated_failures,
            remember_device_days=proposed.remember_device_days,
            actor=None,
            client=client,
        )
    described = describe_policy(updated, services.backoff.tolerated_failures, services.remember_device_days)
    typer.echo("\n".join([f"Policy of {updated.slug} changed:", *described]))


RoleOption = Annotated[
    OrgRole | None,
    typer.Option("--role", help="owner and admin change settings; user_admin manages members.", show_default=False),
]


@member_app.command("add")
def member_add(
    ctx: typer.Context,
    slug: Slug,
    username: Username,
    role: RoleOption = None,
    outside_collaborator: Annotated[
        bool,
        typer.Option(
            "--outside-collaborator",
            help="The organisation does not manage the account: its administrators cannot reset the user's 2FA.",
        ),
    ] = False,
) -> None:
    """Add a user to an organisation (default role: member, managed by the organisation). Audited."""
    chosen = role or OrgRole.MEMBER
    with opened_runtime(ctx) as runtime:
        organisations.add_member(
            runtime.services,
            slug,
            username=username,
            role=chosen,
            managed=not outside_collaborator,
            actor=None,
            client=command_line_client(),
        )
    kind = "outside collaborator" if outside_collaborator else "managed"
    typer.echo(f"Added {username} to {slug.strip().lower()} as {chosen.value} ({kind}).")


@member_app.command("set")
def member_set(
    ctx: typer.Context,
    slug: Slug,
    username: Username,
    role: RoleOption = None,
    managed: Annotated[
        bool | None,
        typer.Option(
            "--managed/--outside-collaborator",
            help="Whether the organisation manages the account (default: unchanged).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Change a member's role or whether the organisation manages them. The last owner stays an owner. Audited."""
    with opened_runtime(ctx) as runtime:
        view = organisations.show(runtime.services, slug, actor=None)
        user = accounts.find_user(runtime.services, username)
        current = next((m.member for m in view.members if m.member.user.id == user.id), None)
        new_role = role or (current.role if current else OrgRole.MEMBER)
        new_managed = managed if managed is not None else (current.managed if current else True)
        organisations.change_member(
            runtime.services,
            view.organisation.slug,
            username=username,
            role=new_role,
            managed=new_managed,
            actor=None,
            client=command_line_client(),
        )
    kind = "managed" if new_managed else "outside collaborator"
    typer.echo(f"{user.username} is now {new_role.value} ({kind}) in {view.organisation.slug}.")


@member_app.command("remove")
def member_remove(ctx: typer.Context, slug: Slug, username: Username) -> None:
    """Remove a member from an organisation (never its last owner). Audited."""
    with opened_runtime(ctx) as runtime:
        organisations.remove_member(runtime.services, slug, username=username, actor=None, client=command_line_client())
    typer.echo(f"Removed {username} from {slug.strip().lower()}.")
