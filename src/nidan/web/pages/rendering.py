"""Rendering pages: the Jinja2 environment, security headers, support details, redirects and the error page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from nidan import __version__
from nidan.errors import NidanError
from nidan.services.context import ServiceContext
from nidan.web.correlation import current_correlation_id
from nidan.web.pages import cookies, csrf

if TYPE_CHECKING:
    from jinja2 import Environment

log = logging.getLogger("nidan.web")

#: No inline script or style anywhere: JavaScript and CSS come from /static, the QR code is inline SVG markup.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Never a path or query (the setup and recovery links carry a one-time token in theirs), only the origin. Not
    # no-referrer: under that, browsers send `Origin: null` with the page's own form posts, which pages.csrf refuses.
    "Referrer-Policy": "strict-origin",
    # Every page carries a CSRF token or personal data, and some show secrets: no copy stays in any cache.
    "Cache-Control": "no-store",
}

#: Fixed messages a redirect can ask for by name (``?notice=...``); nothing a caller writes is ever shown.
NOTICES: dict[str, str] = {
    "signed_out": "You have signed out.",
    "signin_required": "Sign in to continue.",
    "mfa_expired": ("Your sign-in attempt has expired or took too many wrong codes. Sign in again with your password."),
    "disabled": (
        "Two-step verification is off. Your authenticator app and your recovery codes no longer work for this account."
    ),
    "welcome": "Your administrator account is ready and you are signed in. Now set up two-step verification.",
    "recovery_code_used": (
        "You signed in with a recovery code; it cannot be used again. If you lost your authenticator app, set up "
        "a new one now."
    ),
    "token_revoked": "The token was revoked: nothing can sign in with it any more.",
    "device_forgotten": "The browser was forgotten: signing in there asks for the second step again.",
    "app_removed": "The application was removed: its API key no longer works.",
    "two_factor_reset": (
        "Two-step verification was reset: their authenticator app and recovery codes no longer work, and they were "
        "signed out everywhere. They set it up again at their next sign-in."
    ),
    "registration_required": (
        "Done: at their next sign-in they will be asked to set up their authenticator app again."
    ),
    "tokens_revoked_all": "All their access tokens and app passwords were revoked: nothing can sign in with them.",
    "blocks_cleared": "Their blocks were cleared: they can try again now.",
    "organisation_created": "The organisation was created, with you as its owner.",
    "policy_changed": "The two-step policy was changed. It applies from each member's next sign-in.",
    "member_added": "The member was added.",
    "member_changed": "The member's role was changed.",
    "member_removed": "The member was removed from the organisation.",
    "default_method_changed": "Done: signing in asks for your chosen method first.",
    "reauthenticated": (
        "Confirmed: it's you. You can change your security settings now without being asked again for a few minutes."
    ),
}


def _when(value: datetime | None) -> str:
    """A stored time for people: UTC, to the minute, with the offset written out."""
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(value: datetime | None) -> str:
    """The UTC date of a stored time (an expiry falls at 00:00 UTC on its day)."""
    return "never" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d")


@cache
def environment() -> Environment:
    """The templates' environment, made at the first page: a worker that only answers the API (a relying app's
    verify calls) never loads Jinja2 (about 2 MiB)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("nidan.web", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["day"] = _day
    env.globals["version"] = __version__
    return env


@dataclass(frozen=True, slots=True)
class SupportDetails:
    """What someone reads out to support: the same fields as the API's error body, and who they were."""

    code: str
    message: str
    correlation_id: str
    timestamp: str
    username: str | None


def support_details(code: str, message: str, username: str | None) -> SupportDetails:
    return SupportDetails(
        code=code,
        message=message,
        correlation_id=current_correlation_id(),
        timestamp=datetime.now().astimezone().isoformat(timespec="seconds"),
        username=username,
    )


def problem(error: NidanError, username: str | None) -> SupportDetails:
    return support_details(error.code, error.message, username)


def services_of(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.services
    return ctx


def secure_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    username: str | None = None,
    problem: SupportDetails | None = None,
    **context: Any,
) -> HTMLResponse:
    """A page from ``template``; ``username`` is the signed-in person (shows the sign-out form)."""
    ctx = services_of(request)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    page = environment().get_template(template)
    html = page.render(
        csrf_token=csrf.form_token(request, ctx),
        username=username,
        problem=problem,
        notice=notice,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    csrf.attach_cookie(request, response)
    secure_headers(response)
    return response


def redirect(path: str, notice: str | None = None) -> RedirectResponse:
    """303 See Other to a local path (after a POST the browser follows with GET)."""
    # '//host' and '/\\host' would be another host to a browser.
    assert path.startswith("/") and not path.startswith(("//", "/\\"))
    if notice is not None:
        assert notice in NOTICES
        path = f"{path}?notice={notice}"
    response = RedirectResponse(path, status_code=303)
    secure_headers(response)
    return response


def render_error_page(request: Request, status: int, code: str, message: str) -> Response:
    """The HTML face of every error on a page path; 'not signed in' sends the person to the sign-in page."""
    if status == 401 and code == "authentication_required":
        response: Response = redirect("/login", "signin_required")
        if cookies.session_from_cookie(request) is not None:
            cookies.clear_session(request, response)
        return response
    if status == 403 and code == "mfa_setup_required":
        return redirect("/security/setup")
    ctx = services_of(request)
    current = cookies.signed_in_user(request, ctx)
    username = current.user.username if current else None
    details = support_details(code, message, username)
    try:
        return render(request, "error.html", status=status, username=username, problem=details)
    except Exception:  # the error page itself failed: say the essentials without the template
        log.exception("error page failed to render")
        text = f"{message}\n\nError code: {code}\nCorrelation id: {details.correlation_id}\nTime: {details.timestamp}\n"
        return secure_headers(Response(text, status_code=status, media_type="text/plain; charset=utf-8"))
