"""The admin console's pages that create an account, make a new set-password link for one, and delete one.

"Add a user" sits on the console's home (instance administrators only): the administrator gives a username, an
email address and a role, never a password; the next page shows the one-time link with which the new owner sets
their own, once, with a copy button. A user's page offers a new link (instance administrators) and deleting the
account (anyone who may act on that user: ``authority``, decided by the services). Deleting is confirmed by typing
the username and giving a reason. Each of these asks for a recent verification ("Confirm it's you") first, like
every action in the console.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Request, Response

from nidan.core.models import InstanceRole, User
from nidan.core.roles import is_instance_admin
from nidan.core.usernames import username_key
from nidan.errors import AdminRequired, InvalidInput, StateConflict
from nidan.services import account_status, password_links, user_admin
from nidan.services.context import ServiceContext
from nidan.services.password_links import PasswordLink
from nidan.services.signin import CurrentSession
from nidan.texts import _
from nidan.web.deps import Client, Services
from nidan.web.links import set_password_url
from nidan.web.pages.admin import PAGE, NewUser, console_gate, console_page, user_path
from nidan.web.pages.admin_users import PREFIX, REASON_MAX_LENGTH, REASON_MIN_LENGTH, Username, clean_reason
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render
from nidan.web.pages.stepup import confirm_if_needed
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

LINK_HOURS = int(password_links.LINK_LIFETIME.total_seconds() // 3600)


def _instance_admin_only(session: CurrentSession) -> None:
    if not is_instance_admin(session.user):
        raise AdminRequired()


def _link_shown(request: Request, session: CurrentSession, made: PasswordLink, *, created: bool) -> Response:
    """The link, shown this once (nidan keeps only its keyed hash)."""
    return render(
        request,
        "admin_user_link.html",
        username=session.user.username,
        subject=made.user,
        created=created,
        link=set_password_url(request, made.token),
        expires_at=made.expires_at,
        hours=LINK_HOURS,
        path=user_path(made.user),
    )


# --- Add a user ----------------------------------------------------------------------------------------------------


def _role(value: str) -> InstanceRole:
    try:
        return InstanceRole(value)
    except ValueError:
        raise InvalidInput(_("Choose one of the roles offered.")) from None


@router.post(f"{PAGE}/users")
def create_user(request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client) -> Response:
    managed = console_gate(ctx, session)
    _instance_admin_only(session)
    if ask := confirm_if_needed(request, ctx, session, PAGE):
        return ask
    typed_role = field(form, "role", 16) or InstanceRole.MEMBER.value
    entered = NewUser(
        username=field(form, "username", 256),
        email=field(form, "email", 512),
        role=InstanceRole(typed_role) if typed_role in set(InstanceRole) else InstanceRole.MEMBER,
    )
    try:
        made = password_links.create_user(
            ctx,
            username=entered.username,
            email=entered.email,
            role=_role(typed_role),
            actor=session.user,
            client=client,
        )
    except InvalidInput as exc:  # username_taken is one too (409)
        failure = problem(exc, session.user.username)
        return console_page(
            request, ctx, session, managed, status=status_for(exc), new_user=entered, user_failure=failure
        )
    return _link_shown(request, session, made, created=True)


# --- A new link to set a password ----------------------------------------------------------------------------------


def _link_gate(request: Request, ctx: ServiceContext, session: PageSession, username: str) -> Response | None:
    console_gate(ctx, session)
    _instance_admin_only(session)
    user = user_admin.require_manager_of(ctx, username=username, actor=session.user, not_self=True)
    return confirm_if_needed(request, ctx, session, f"{user_path(user)}/password-link")


@router.get(PREFIX + "/{username}/password-link")
def password_link_page(request: Request, username: Username, ctx: Services, session: PageSession) -> Response:
    if ask := _link_gate(request, ctx, session, username):
        return ask
    subject = user_admin.require_manager_of(ctx, username=username, actor=session.user, not_self=True)
    return render(
        request,
        "admin_user_password_link.html",
        username=session.user.username,
        subject=subject,
        hours=LINK_HOURS,
        path=user_path(subject),
    )


@router.post(PREFIX + "/{username}/password-link")
def new_password_link(
    request: Request, username: Username, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    if ask := _link_gate(request, ctx, session, username):
        return ask
    made = password_links.issue_link(ctx, username=username, actor=session.user, client=client)
    return _link_shown(request, session, made, created=False)


# --- Deleting an account -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Typed:
    """What was typed into the confirmation, shown again after a mistake."""

    username: str = ""
    reason: str = ""


def _delete_gate(request: Request, ctx: ServiceContext, session: PageSession, username: str) -> User | Response:
    """The console's 403, then the user's (403 / 404, ``cannot_act_on_self``), then "Confirm it's you"; else the
    user to delete."""
    console_gate(ctx, session)
    user = user_admin.require_manager_of(ctx, username=username, actor=session.user, not_self=True)
    return confirm_if_needed(request, ctx, session, f"{user_path(user)}/delete") or user


def _delete_confirmation(
    request: Request,
    ctx: ServiceContext,
    actor: User,
    username: str,
    *,
    status: int = 200,
    typed: Typed | None = None,
    failure: SupportDetails | None = None,
) -> Response:
    seen = user_admin.overview(ctx, username=username, actor=actor)
    return render(
        request,
        "admin_user_delete.html",
        status=status,
        username=actor.username,
        seen=seen,
        subject=seen.user,
        path=user_path(seen.user),
        typed=typed or Typed(),
        reason_min_length=REASON_MIN_LENGTH,
        reason_max_length=REASON_MAX_LENGTH,
        problem=failure,
    )


@router.get(PREFIX + "/{username}/delete")
def delete_page(request: Request, username: Username, ctx: Services, session: PageSession) -> Response:
    gate = _delete_gate(request, ctx, session, username)
    if isinstance(gate, Response):
        return gate
    return _delete_confirmation(request, ctx, session.user, username)


def confirmed(typed: str, subject: User) -> bool:
    """The username typed to confirm is the subject's: any spelling of it (case, full-width forms), never another."""
    key = username_key(typed)
    return key is not None and key == username_key(subject.username)


@router.post(PREFIX + "/{username}/delete")
def delete_user(
    request: Request,
    username: Username,
    form: CheckedForm,
    ctx: Services,
    session: PageSession,
    client: Client,
) -> Response:
    gate = _delete_gate(request, ctx, session, username)
    if isinstance(gate, Response):
        return gate
    typed = Typed(field(form, "confirm_username", 256), field(form, "reason", 4 * REASON_MAX_LENGTH))
    try:
        if not confirmed(typed.username, gate):
            raise InvalidInput(
                _("Type the username %(user)s exactly as shown to confirm. Nothing was deleted.", user=gate.username)
            )
        account_status.delete(
            ctx, username=username, actor=session.user, client=client, reason=clean_reason(typed.reason)
        )
    except (InvalidInput, StateConflict) as exc:  # a wrong name or reason; the last administrator or owner
        failure = problem(exc, session.user.username)
        return _delete_confirmation(
            request, ctx, session.user, username, status=status_for(exc), typed=typed, failure=failure
        )
    return redirect(PAGE, "user_deleted")
