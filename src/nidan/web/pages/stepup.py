"""Step-up on the pages: "Confirm it's you" before a sensitive action, then back to where the person was.

A sensitive action (turning 2FA off, changing the authenticator, regenerating recovery codes, creating an access
token or app password, anything on the administrators' pages) on a session that has not verified within the step-up
window answers with the confirmation form in place of the action. The form posts to ``/security/reauth`` with a
``next`` field; after a good code the browser gets a new session cookie and a 303 back to the action's page: the
page itself for an action asked for with GET, and for a POST the page that asks for it (``/security/totp/change``,
``/security/recovery-codes``, an administrator's confirmation page). A POST is never replayed: the person presses
its button again, on a page that says what it does.

``next`` must be a plain local path under ``/security`` or ``/admin`` (``safe_next``): no scheme, no host, no
``//``, no backslash, no dot segment, no query, no percent-encoding. Anything else goes to ``/security``, so the
form can never be turned into an open redirect.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from nidan.core.models import Method
from nidan.errors import (
    InvalidCode,
    InvalidCredentials,
    MethodNotAllowed,
    MethodNotAvailable,
    RateLimited,
    ReauthenticationRequired,
    VerificationLocked,
)
from nidan.services import signin, stepup
from nidan.services.context import ServiceContext
from nidan.texts import _
from nidan.web.deps import Client, Services
from nidan.web.pages import cookies
from nidan.web.pages.cookies import PageSession
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import SupportDetails, problem, redirect, render, support_details
from nidan.web.problems import error_headers, status_for

router = APIRouter(include_in_schema=False)

DEFAULT_NEXT = "/security"
#: Where a confirmation may return to: a page of the person's own security settings or of the admin console (every
#: sensitive action has one, asked for with GET). Segments are unreserved URL characters and never start with a dot.
_LOCAL_PAGE = re.compile(r"/(?:security|admin)(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*")
#: The longest ``next`` looked at (as the form's field).
MAX_NEXT_LENGTH = 256
#: Longer passwords are not looked at (as at sign-in).
MAX_PASSWORD_LENGTH = 1024
PROMPT = _("For your security, confirm it's you before changing your security settings.")


def safe_next(value: str | None) -> str:
    """``value`` if it is a local page a confirmation may return to (see the module's docstring), else the
    security page."""
    if (
        value is not None
        and len(value) <= MAX_NEXT_LENGTH
        and _LOCAL_PAGE.fullmatch(value)
        and value != "/security/reauth"
    ):
        return value
    return DEFAULT_NEXT


def cancel_path(next_path: str) -> str:
    """Where "Cancel" goes: the admin console for its own actions, else the security page."""
    return "/admin" if next_path.startswith("/admin") else DEFAULT_NEXT


def confirm_page(
    request: Request,
    ctx: ServiceContext,
    session: signin.CurrentSession,
    *,
    next_path: str,
    status: int,
    method: str | None = None,
    failure: SupportDetails | None = None,
    prompt: SupportDetails | None = None,
    headers: dict[str, str] | None = None,
    retry_after: int = 0,
) -> Response:
    """The form of the method asked for (when the person can use it; else their default, or the password when they
    have no second factor), with their other options."""
    user = session.user
    offered = stepup.options(ctx, user)
    shown = next((o.method for o in offered if o.method.value == method), None)
    shown = shown or (offered[0].method if offered else None)

    def option_href(other: Method) -> str:
        return "/security/reauth?" + urlencode({"method": other.value, "next": next_path})

    response = render(
        request,
        "reauth.html",
        status=status,
        username=user.username,
        problem=failure,
        prompt=prompt,
        method=shown.value if shown is not None else stepup.PASSWORD,
        others=[o for o in offered if o.method is not shown],
        option_href=option_href,
        retry_after=retry_after,
        next_path=next_path,
        cancel_path=cancel_path(next_path),
        window_minutes=max(1, int(ctx.step_up_window.total_seconds() // 60)),
    )
    response.headers.update(headers or {})
    return response


def confirm_if_needed(
    request: Request, ctx: ServiceContext, session: signin.CurrentSession, next_path: str
) -> Response | None:
    """The "Confirm it's you" form when the session has not verified recently; ``None`` when it may go ahead."""
    try:
        signin.require_recent_verification(ctx, session)
    except ReauthenticationRequired as exc:
        prompt = support_details(exc.code, (PROMPT,), session.user.username)
        return confirm_page(
            request, ctx, session, next_path=safe_next(next_path), status=status_for(exc), prompt=prompt
        )
    return None


@router.get("/security/reauth")
def reauth_page(
    request: Request,
    ctx: Services,
    session: PageSession,
    next_path: Annotated[str, Query(alias="next", max_length=MAX_NEXT_LENGTH)] = DEFAULT_NEXT,
    method: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    target = safe_next(next_path)
    try:
        signin.require_recent_verification(ctx, session)
    except ReauthenticationRequired:
        return confirm_page(request, ctx, session, next_path=target, status=200, method=method)
    return redirect(target)  # recently verified: nothing to confirm


@router.post("/security/reauth")
def reauth(request: Request, form: CheckedForm, ctx: Services, session: PageSession, client: Client) -> Response:
    target = safe_next(field(form, "next", MAX_NEXT_LENGTH))
    token = cookies.session_from_cookie(request)
    assert token is not None  # PageSession found it
    chosen = field(form, "method", 32)
    method: stepup.ReauthMethod
    if chosen == stepup.PASSWORD:
        method, secret = stepup.PASSWORD, field(form, "password", MAX_PASSWORD_LENGTH + 1)
    else:
        method = next((m for m in Method if m.value == chosen), Method.TOTP)
        secret = field(form, "code", 64)
    try:
        if len(secret) > MAX_PASSWORD_LENGTH:
            raise InvalidCredentials()
        result = stepup.reauthenticate(ctx, session_token=token, method=method, secret=secret, client=client)
    except (
        InvalidCode,
        InvalidCredentials,
        MethodNotAvailable,
        MethodNotAllowed,
        RateLimited,
        VerificationLocked,
    ) as exc:
        wait = exc.retry_after_seconds if isinstance(exc, RateLimited) else 0
        return confirm_page(
            request,
            ctx,
            session,
            next_path=target,
            status=status_for(exc),
            method=chosen,
            failure=problem(exc, session.user.username),
            headers=error_headers(exc),
            retry_after=exc.blocked_seconds if isinstance(exc, InvalidCode) else wait,
        )
    response = redirect(target, "reauthenticated")
    cookies.set_session(request, response, ctx, result.session_token)
    return response
