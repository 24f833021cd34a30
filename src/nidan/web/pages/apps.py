"""The administrators' page for relying applications (the verify API): list, add (the API key shown once), remove.

Only instance administrators get in (anyone else: the 403 page), and, like the admin API, every request needs a
verification within the step-up window: the role is checked first, so a member is told "administrators only"
rather than asked to confirm who they are for nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from nidan.core.access_tokens import Application
from nidan.core.roles import is_instance_admin
from nidan.errors import AdminRequired, ApplicationExists, ApplicationNotFound, InvalidInput
from nidan.services import applications, signin
from nidan.services.context import ServiceContext
from nidan.texts import _
from nidan.web.deps import Client, Services
from nidan.web.links import public_base
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render
from nidan.web.pages.stepup import confirm_if_needed
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

PAGE = "/admin/apps"
NAME_MAX_LENGTH = 64

AppName = Annotated[str, Path(min_length=1, max_length=NAME_MAX_LENGTH)]


def _require_admin(session: signin.CurrentSession) -> None:
    if not is_instance_admin(session.user):
        raise AdminRequired()


def _admin_gate(request: Request, ctx: ServiceContext, session: signin.CurrentSession) -> Response | None:
    """Administrators only (else the 403 page), then "Confirm it's you" when the verification is old."""
    _require_admin(session)
    return confirm_if_needed(request, ctx, session, PAGE)


def _apps_page(
    request: Request,
    ctx: ServiceContext,
    session: signin.CurrentSession,
    *,
    status: int = 200,
    entered_name: str = "",
    failure: SupportDetails | None = None,
) -> Response:
    return render(
        request,
        "admin_apps.html",
        status=status,
        username=session.user.username,
        apps=list(applications.list_all(ctx)),
        entered_name=entered_name,
        problem=failure,
        name_max_length=NAME_MAX_LENGTH,
    )


@router.get(PAGE)
def apps_page(request: Request, ctx: Services, session: PageSession) -> Response:
    if ask := _admin_gate(request, ctx, session):
        return ask
    return _apps_page(request, ctx, session)


@router.post(PAGE)
def add_app(request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client) -> Response:
    if ask := _admin_gate(request, ctx, session):
        return ask
    name = field(form, "name", 4 * NAME_MAX_LENGTH)
    try:
        registered = applications.add(ctx, name=name, actor=session.user, client=client)
    except (InvalidInput, ApplicationExists) as exc:
        failure = problem(exc, session.user.username)
        return _apps_page(request, ctx, session, status=status_for(exc), entered_name=name, failure=failure)
    return render(
        request,
        "app_created.html",
        username=session.user.username,
        app=registered.application,
        api_key=registered.api_key,
        base_url=public_base(request),
    )


def _registered(ctx: ServiceContext, name: str) -> Application:
    for application in applications.list_all(ctx):
        if application.name == name:
            return application
    raise ApplicationNotFound(_("No application named %(name)s is registered.", name=name))


@router.get(PAGE + "/{name}/remove")
def remove_confirm_page(request: Request, name: AppName, ctx: Services, session: PageSession) -> Response:
    if ask := _admin_gate(request, ctx, session):
        return ask
    application = _registered(ctx, name)
    return render(request, "app_remove.html", username=session.user.username, app=application)


@router.post(PAGE + "/{name}/remove")
def remove_app(
    request: Request, name: AppName, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    if ask := _admin_gate(request, ctx, session):
        return ask
    applications.remove(ctx, name=name, actor=session.user, client=client)
    return redirect(PAGE, "app_removed")
