"""The person's own account beside its security: language and time zone, sessions, password."""

from __future__ import annotations

from functools import cache
from typing import Annotated
from zoneinfo import available_timezones

from fastapi import APIRouter, Path, Request, Response

from nidan.core.passwords import MIN_LENGTH
from nidan.errors import InvalidCredentials, InvalidInput, RateLimited, VerificationLocked, WeakPassword
from nidan.services import accounts, own_account
from nidan.services.context import ServiceContext
from nidan.web import i18n
from nidan.web.deps import Client, Services
from nidan.web.pages import cookies
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render
from nidan.web.pages.stepup import MAX_PASSWORD_LENGTH, confirm_if_needed
from nidan.web.problems import error_headers, status_for

router = APIRouter(include_in_schema=False)
SessionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@cache
def _zones() -> list[str]:
    """Every zone of the tz database people would pick (not the legacy aliases such as ``Etc/GMT+9``)."""
    return sorted(zone for zone in available_timezones() if "/" in zone and not zone.startswith(("Etc/", "SystemV/")))


def _page(
    request: Request,
    ctx: ServiceContext,
    session: PageSession,
    *,
    status: int = 200,
    failure: SupportDetails | None = None,
) -> Response:
    user = session.user
    return render(
        request,
        "account_preferences.html",
        status=status,
        username=user.username,
        problem=failure,
        chosen_locale=user.locale,
        chosen_zone=user.time_zone,
        shown_zone=i18n.time_zone_of(request),
        zones=_zones(),
    )


@router.get("/security/preferences")
def preferences_page(request: Request, ctx: Services, session: PageSession) -> Response:
    return _page(request, ctx, session)


@router.post("/security/preferences")
def save_preferences(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    locale = field(form, "locale", 8) or None
    zone = field(form, "time_zone", 64).strip() or None
    try:
        accounts.set_preferences(ctx, session.user, locale=locale, time_zone=zone, client=client)
    except InvalidInput as exc:
        return _page(request, ctx, session, status=status_for(exc), failure=problem(exc, session.user.username))
    return redirect("/security", "preferences_saved")


@router.get("/security/sessions")
def sessions_page(request: Request, ctx: Services, session: PageSession) -> Response:
    views = own_account.sessions_of(ctx, session)
    return render(request, "account_sessions.html", username=session.user.username, sessions=views)


@router.post("/security/sessions/{session_id}/end")
def end_session(
    request: Request, session_id: SessionId, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    own_account.end_session(ctx, session, session_id, client)
    if session_id == session.session_id:
        response = redirect("/login", "signed_out")
        cookies.clear_session(request, response)
        return response
    return redirect("/security/sessions", "session_ended")


@router.post("/security/sessions/end-others")
def end_other_sessions(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    own_account.end_other_sessions(ctx, session, client)
    return redirect("/security/sessions", "sessions_ended")


def _password_page(
    request: Request, session: PageSession, *, status: int = 200, failure: SupportDetails | None = None
) -> Response:
    return render(
        request,
        "account_password.html",
        status=status,
        username=session.user.username,
        problem=failure,
        min_length=MIN_LENGTH,
    )


@router.get("/security/password")
def password_page(request: Request, ctx: Services, session: PageSession) -> Response:
    return confirm_if_needed(request, ctx, session, "/security/password") or _password_page(request, session)


@router.post("/security/password")
def change_password(
    request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client
) -> Response:
    asked = confirm_if_needed(request, ctx, session, "/security/password")
    if asked is not None:
        return asked
    current = field(form, "current_password", MAX_PASSWORD_LENGTH + 1)
    new = field(form, "new_password", MAX_PASSWORD_LENGTH + 1)
    try:
        if len(current) > MAX_PASSWORD_LENGTH:
            raise InvalidCredentials()
        own_account.change_password(ctx, session, current=current, new=new, client=client)
    except (InvalidCredentials, WeakPassword, RateLimited, VerificationLocked) as exc:
        failure = problem(exc, session.user.username)
        response = _password_page(request, session, status=status_for(exc), failure=failure)
        response.headers.update(error_headers(exc))
        return response
    return redirect("/security", "password_changed")
