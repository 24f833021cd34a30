"""The cookies pages use: the session, the short-lived sign-in attempt between password and code, and a remembered
browser's token.

Under https every cookie carries the ``__Host-`` prefix and ``Secure``: the browser then refuses it from any other
host or path, so a sibling subdomain cannot plant one. All are HttpOnly: no script ever reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Request, Response

from nidan.core.tokens import looks_like_token
from nidan.errors import AuthenticationRequired, MfaSetupRequired
from nidan.services import signin
from nidan.services.context import ServiceContext
from nidan.web.deps import cookies_secure, services, session_cookie_name, speaking_to

MFA_COOKIE = "nidan_mfa"
#: "Don't ask again on this device": a remembered browser's rotating token (``services/devices.py``).
DEVICE_COOKIE = "nidan_device"
SameSite = Literal["lax", "strict"]
#: The session cookie this answer sets ('' when it clears it), for the forms rendered into the same answer.
_NEW_SESSION_STATE = "nidan_new_session"


def is_secure(request: Request) -> bool:
    return cookies_secure(request)


def cookie_name(request: Request, base: str) -> str:
    return f"__Host-{base}" if is_secure(request) else base


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int, samesite: SameSite) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=is_secure(request), httponly=True, samesite=samesite
    )


def delete_cookie(request: Request, response: Response, name: str, samesite: SameSite) -> None:
    response.delete_cookie(name, path="/", secure=is_secure(request), httponly=True, samesite=samesite)


# --- the session -------------------------------------------------------------------------------------------------


def session_from_cookie(request: Request) -> str | None:
    """The session token from the cookie only: pages never look at an Authorization header."""
    return request.cookies.get(session_cookie_name(request)) or None


def set_session(request: Request, response: Response, ctx: ServiceContext, token: str) -> None:
    # Lax, not Strict: a link to nidan from mail or chat should arrive signed in; every POST is CSRF-checked.
    enrolment_only = token.startswith(signin.ENROLMENT_PREFIX)
    max_age = int((signin.ENROLMENT_LIFETIME if enrolment_only else ctx.session_lifetime).total_seconds())
    set_cookie(request, response, session_cookie_name(request), token, max_age, "lax")
    forms_follow_session(request, token)


def clear_session(request: Request, response: Response) -> None:
    delete_cookie(request, response, session_cookie_name(request), "lax")
    forms_follow_session(request, "")


def forms_follow_session(request: Request, token: str) -> None:
    """Bind the forms of this answer to the session cookie it sets ('' for none), not the one the browser sent:
    the browser sends the new one with them (``pages.csrf``). Call it before rendering a page that sets one."""
    setattr(request.state, _NEW_SESSION_STATE, token)


def session_for_forms(request: Request) -> str | None:
    """The session cookie the browser will send with this answer's forms."""
    new: str | None = getattr(request.state, _NEW_SESSION_STATE, None)
    if new is not None:
        return new or None
    return session_from_cookie(request)


def signed_in_user(request: Request, ctx: ServiceContext) -> signin.CurrentSession | None:
    """The session the cookie names, or ``None`` (no cookie, ended, or any failure: callers only decorate)."""
    token = session_from_cookie(request)
    if token is None:
        return None
    try:
        return signin.current_session(ctx, token)
    except Exception:  # a page decoration must never turn into a second error
        return None


# --- the sign-in attempt between the two steps -------------------------------------------------------------------


def set_mfa(request: Request, response: Response, ctx: ServiceContext, mfa_token: str, username: str) -> None:
    """Keep the attempt's token where neither the URL nor the page shows it; the username only labels the page."""
    max_age = int(ctx.mfa_token_lifetime.total_seconds())
    set_cookie(request, response, cookie_name(request, MFA_COOKIE), f"{mfa_token}.{username}", max_age, "strict")


def mfa_from_cookie(request: Request) -> tuple[str, str] | None:
    """(mfa_token, username) from the cookie, or ``None`` when there is no well-formed one."""
    raw = request.cookies.get(cookie_name(request, MFA_COOKIE), "")
    token, _, username = raw.partition(".")
    return (token, username) if looks_like_token(token) else None


def clear_mfa(request: Request, response: Response) -> None:
    delete_cookie(request, response, cookie_name(request, MFA_COOKIE), "strict")


# --- a remembered browser ---------------------------------------------------------------------------------------


def set_device(request: Request, response: Response, ctx: ServiceContext, token: str, expires_at: datetime) -> None:
    """The browser's remembered-device token, until it expires; each use replaces it (the token rotates)."""
    max_age = max(1, int((expires_at - ctx.clock.now()).total_seconds()))
    set_cookie(request, response, cookie_name(request, DEVICE_COOKIE), token, max_age, "strict")


def device_from_cookie(request: Request) -> str | None:
    return request.cookies.get(cookie_name(request, DEVICE_COOKIE)) or None


# --- the signed-in person, for page routes -------------------------------------------------------------------------


def page_session(request: Request, ctx: Annotated[ServiceContext, Depends(services)]) -> signin.CurrentSession:
    """The session of a page request, from the cookie; 'not signed in' becomes a redirect to the sign-in page,
    and an enrolment-only session (2FA required first) a redirect to the setup page."""
    session = enrolling_page_session(request, ctx)
    if session.enrolment_only:
        raise MfaSetupRequired()
    return session


def enrolling_page_session(
    request: Request, ctx: Annotated[ServiceContext, Depends(services)]
) -> signin.CurrentSession:
    """Any session from the cookie, enrolment-only ones too: for the pages that set up 2FA."""
    token = session_from_cookie(request)
    if token is None:
        raise AuthenticationRequired()
    return speaking_to(request, signin.current_session(ctx, token))


PageSession = Annotated[signin.CurrentSession, Depends(page_session)]
EnrollingPageSession = Annotated[signin.CurrentSession, Depends(enrolling_page_session)]
