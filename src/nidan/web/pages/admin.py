"""The admin console's home (/admin): the users an administrator may help and the organisations they manage.

Anyone with an administrative role gets in: instance administrators (everyone, every organisation, and the
applications page) and the owners, admins and user_admins of an organisation (the members they may help, their
organisations). Everyone else gets the 403 page. Looking is not sensitive; every action in the console asks for a
recent verification ("Confirm it's you") and a reason, and the services decide, user by user, who may act on whom.

The pages about one user are in ``admin_users`` (creating and deleting accounts in ``admin_accounts``), those
about one organisation in ``admin_orgs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from nidan.core.models import InstanceRole, OrgRole, User
from nidan.core.organisations import Organisation
from nidan.core.policy import TwoFactorPolicy
from nidan.core.usernames import username_key
from nidan.errors import AdminRequired, InvalidInput, OrganisationExists
from nidan.services import authority, organisations, signin, user_admin
from nidan.services.context import ServiceContext
from nidan.texts import Text, _
from nidan.web.deps import Client, Services
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render
from nidan.web.pages.stepup import confirm_if_needed
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

PAGE = "/admin"
#: The most users the home page lists at once; the search box narrows the rest down.
MAX_LISTED = 200
CONSOLE_ONLY = _(
    "The admin console is for administrators: instance administrators, and the owners, admins and user admins of "
    "an organisation. Ask one of them if you need something done."
)

#: How the pages name each two-step policy (the stored values stay as they are): its name, and what it means.
POLICY_LABELS: dict[TwoFactorPolicy, tuple[Text, Text]] = {
    TwoFactorPolicy.OPTIONAL: (_("Optional"), _("Members choose whether to turn on two-step verification.")),
    TwoFactorPolicy.REQUIRED_FOR_ADMINS: (
        _("Required for administrators"),
        _("Owners, admins and user admins (the roles that manage people) must have it; members choose."),
    ),
    TwoFactorPolicy.REQUIRED_FOR_ALL: (_("Required for everyone"), _("Every member must have it.")),
}
#: How the pages name each role in an organisation (the stored values stay as they are).
ROLE_LABELS: dict[OrgRole, Text] = {
    OrgRole.OWNER: _("Owner"),
    OrgRole.ADMIN: _("Admin"),
    OrgRole.USER_ADMIN: _("User admin"),
    OrgRole.MEMBER: _("Member"),
}


def user_key(user: User | str) -> str:
    """How the console's addresses name a user: their username key (lower-case ASCII, safe in a URL)."""
    name = user if isinstance(user, str) else user.username
    return username_key(name) or name


def user_path(user: User | str) -> str:
    """The console's page about a user (an address the confirmation form may return to)."""
    return f"{PAGE}/users/{user_key(user)}"


def org_path(slug: str) -> str:
    return f"{PAGE}/orgs/{slug}"


def console_gate(ctx: ServiceContext, session: signin.CurrentSession) -> list[Organisation]:
    """The organisations the signed-in person manages; the 403 page (``admin_required``) when they manage nothing."""
    if not user_admin.is_manager(ctx, session.user):
        raise AdminRequired(CONSOLE_ONLY)
    return organisations.managed_by(ctx, actor=session.user)


@dataclass(frozen=True, slots=True)
class NewUser:
    """What was typed into "Add a user", shown again after a mistake."""

    username: str = ""
    email: str = ""
    role: InstanceRole = InstanceRole.MEMBER


#: How the pages name each instance role (the stored values stay as they are).
INSTANCE_ROLE_LABELS: dict[InstanceRole, Text] = {
    InstanceRole.MEMBER: _("Member"),
    InstanceRole.ADMIN: _("Instance administrator"),
}


@dataclass(frozen=True, slots=True)
class NewOrganisation:
    """What was typed into "New organisation", shown again after a mistake."""

    slug: str = ""
    name: str = ""


def matches(row: user_admin.ManagedUser, query: str) -> bool:
    wanted = query.casefold()
    return wanted in row.user.username.casefold() or wanted in row.user.email.casefold()


def console_page(
    request: Request,
    ctx: ServiceContext,
    session: signin.CurrentSession,
    managed: Sequence[Organisation],
    *,
    query: str = "",
    status: int = 200,
    entered: NewOrganisation | None = None,
    failure: SupportDetails | None = None,
    new_user: NewUser | None = None,
    user_failure: SupportDetails | None = None,
) -> Response:
    """The console's home; after a mistake in one of its forms, that form with what was typed and the problem."""
    actor = session.user
    everyone = user_admin.managed_user_states(ctx, actor=actor)
    query = query.strip()
    found = [row for row in everyone if matches(row, query)] if query else everyone
    return render(
        request,
        "admin_console.html",
        status=status,
        username=actor.username,
        instance_admin=authority.is_instance_admin(actor),
        rows=found[:MAX_LISTED],
        more=max(0, len(found) - MAX_LISTED),
        total=len(everyone),
        query=query,
        organisations=managed,
        entered=entered or NewOrganisation(),
        problem=failure,
        new_user=new_user or NewUser(),
        user_problem=user_failure,
        instance_roles=INSTANCE_ROLE_LABELS,
        user_path=user_path,
        org_path=org_path,
        policy_labels=POLICY_LABELS,
    )


@router.get(PAGE)
def console(
    request: Request,
    ctx: Services,
    session: PageSession,
    q: Annotated[str, Query(max_length=128)] = "",
) -> Response:
    managed = console_gate(ctx, session)
    return console_page(request, ctx, session, managed, query=q)


@router.post(f"{PAGE}/orgs")
def create_organisation(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    managed = console_gate(ctx, session)
    if not authority.is_instance_admin(session.user):
        raise AdminRequired()
    if ask := confirm_if_needed(request, ctx, session, PAGE):
        return ask
    entered = NewOrganisation(slug=field(form, "slug", 256), name=field(form, "name", 1024))
    try:
        made = organisations.create(ctx, slug=entered.slug, name=entered.name, actor=session.user, client=client)
    except (InvalidInput, OrganisationExists) as exc:
        failure = problem(exc, session.user.username)
        return console_page(request, ctx, session, managed, status=status_for(exc), entered=entered, failure=failure)
    return redirect(org_path(made.slug), "organisation_created")
