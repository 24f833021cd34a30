"""Rendering pages: the Jinja2 environment, security headers, support details, redirects and the error page."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from nidan import __version__
from nidan.core.organisations import DEFAULT_SLUG, Organisation
from nidan.errors import NidanError
from nidan.services.context import ServiceContext
from nidan.texts import Text, _, joined
from nidan.web import i18n
from nidan.web.correlation import current_correlation_id
from nidan.web.deps import speaking_to
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
NOTICES: dict[str, Text] = {
    "signed_out": _("You have signed out."),
    "signin_required": _("Sign in to continue."),
    "mfa_expired": _(
        "Your sign-in attempt has expired or took too many wrong codes. Sign in again with your password."
    ),
    "disabled": _(
        "Two-step verification is off. Your authenticator app and your recovery codes no longer work for this account."
    ),
    "welcome": _("Your administrator account is ready and you are signed in. Now set up two-step verification."),
    "recovery_code_used": _(
        "You signed in with a recovery code; it cannot be used again. If you lost your authenticator app, set up "
        "a new one now."
    ),
    "token_revoked": _("The token was revoked: nothing can sign in with it any more."),
    "device_forgotten": _("The browser was forgotten: signing in there asks for the second step again."),
    "app_removed": _("The application was removed: its API key no longer works."),
    "two_factor_reset": _(
        "Two-step verification was reset: their authenticator app and recovery codes no longer work, and they were "
        "signed out everywhere. They set it up again at their next sign-in."
    ),
    "registration_required": _(
        "Done: at their next sign-in they will be asked to set up their authenticator app again."
    ),
    "tokens_revoked_all": _("All their access tokens and app passwords were revoked: nothing can sign in with them."),
    "blocks_cleared": _("Their blocks were cleared: they can try again now."),
    "user_disabled": _(
        "The account was disabled: it was signed out everywhere, its access tokens and app passwords were revoked "
        "and its remembered browsers forgotten. It cannot sign in until it is enabled again."
    ),
    "user_enabled": _("The account was enabled again: it can sign in. Its revoked tokens stay revoked."),
    "user_deleted": _(
        "The account was deleted with everything it held: its sessions, tokens, app passwords and remembered "
        "browsers no longer work. The audit log keeps its events."
    ),
    "password_set": _(
        "Your password is set and you are signed in. Now set up two-step verification: it keeps your account safe "
        "even if someone learns your password."
    ),
    "organisation_created": _("The organisation was created, with you as its owner."),
    "policy_changed": _("The two-step policy was changed. It applies from each member's next sign-in."),
    "member_added": _("The member was added."),
    "member_changed": _("The member's role was changed."),
    "member_removed": _("The member was removed from the organisation."),
    "default_method_changed": _("Done: signing in asks for your chosen method first."),
    "preferences_saved": _("Saved: pages speak your language and show times in your time zone."),
    "session_ended": _("The session was ended: that browser is signed out."),
    "sessions_ended": _("Every other session was ended: you are signed in only here now."),
    "password_changed": _(
        "Your password was changed. Every other session was signed out and remembered browsers ask for the second "
        "step again."
    ),
    "reauthenticated": _(
        "Confirmed: it's you. You can change your security settings now without being asked again for a few minutes."
    ),
}


NEVER = _("never")


def _when(value: datetime | None) -> str:
    """A stored time for people: in their language and time zone, to the minute, the zone named."""
    return i18n.current().text(NEVER) if value is None else i18n.moment(value)


def _exactly(value: datetime | None) -> str:
    """``when`` to the second."""
    return i18n.current().text(NEVER) if value is None else i18n.moment(value, seconds=True)


def _day(value: datetime | None) -> str:
    """The day of a stored time, in the person's time zone."""
    return i18n.current().text(NEVER) if value is None else i18n.day(value)


#: The organisation every instance starts with. Its stored name is the first migration's English: pages say it in the
#: reader's language for as long as it keeps that name.
DEFAULT_ORGANISATION = _("Default organisation")


def _organisation_name(organisation: Organisation) -> str:
    if organisation.slug == DEFAULT_SLUG and organisation.name == DEFAULT_ORGANISATION.msgid:
        return i18n.current().text(DEFAULT_ORGANISATION)
    return organisation.name


def _said(value: str | Text | tuple[Text, ...]) -> str:
    """A message in the language of the page being rendered (a plain string is shown as it is)."""
    if isinstance(value, str):
        return value
    return i18n.current().text(*(value if isinstance(value, tuple) else (value,)))


def _at_render_time(show: Callable[[Any], str]) -> Callable[..., str]:
    """``show`` as a filter Jinja's optimiser cannot run at compile time: it folds a filter applied to a constant
    (``{{ none | when }}``) into the compiled template once, in whatever language was current then."""
    from jinja2 import pass_context

    @pass_context
    def shown(_context: object, value: Any) -> str:
        return show(value)

    return shown


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
    # Each depends on the page's language and zone: never folded into a compiled template (see _at_render_time).
    env.filters["when"] = _at_render_time(_when)
    env.filters["day"] = _at_render_time(_day)
    env.filters["exactly"] = _at_render_time(_exactly)
    env.filters["said"] = _at_render_time(_said)
    env.filters["organisation_name"] = _at_render_time(_organisation_name)
    # {% trans %} and _() in the templates speak the catalog of the page being rendered (i18n.rendering_in).
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True  # a msgid is the sentence, not the template's line breaks
    env.install_gettext_callables(  # type: ignore[attr-defined]
        lambda message: i18n.current().gettext(message),
        lambda singular, plural, n: i18n.current().ngettext(singular, plural, n),
        newstyle=True,
    )
    env.globals["version"] = __version__
    return env


@dataclass(frozen=True, slots=True)
class SupportDetails:
    """What someone reads out to support: the same fields as the API's error body, and who they were."""

    code: str
    #: Rendered in the page's language by the template (the ``said`` filter).
    message: str | tuple[Text, ...]
    correlation_id: str
    timestamp: str
    username: str | None


def support_details(code: str, message: str | tuple[Text, ...], username: str | None) -> SupportDetails:
    return SupportDetails(
        code=code,
        message=message,
        correlation_id=current_correlation_id(),
        timestamp=datetime.now().astimezone().isoformat(timespec="seconds"),
        username=username,
    )


def problem(error: NidanError, username: str | None) -> SupportDetails:
    return support_details(error.code, error.texts, username)


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
    language = i18n.catalog_for(request)
    with i18n.rendering_in(language, i18n.time_zone_of(request)):
        html = page.render(
            csrf_token=csrf.form_token(request, ctx),
            username=username,
            problem=problem,
            notice=notice,
            lang=language.locale,
            languages=i18n.LANGUAGE_NAMES,
            request_path=request.url.path,
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


#: The error page's heading where it can say more than the template's "Something went wrong".
ERROR_HEADINGS: dict[int, Text] = {404: _("Page not found")}


def render_error_page(request: Request, status: int, code: str, message: tuple[Text, ...]) -> Response:
    """The HTML face of every error on a page path, in the reader's language (the signed-in person's choice when
    the cookie names a session); 'not signed in' sends the person to the sign-in page."""
    if status == 401 and code == "authentication_required":
        response: Response = redirect("/login", "signin_required")
        if cookies.session_from_cookie(request) is not None:
            cookies.clear_session(request, response)
        return response
    if status == 403 and code == "mfa_setup_required":
        return redirect("/security/setup")
    ctx = services_of(request)
    current = cookies.signed_in_user(request, ctx)
    username = None
    if current is not None:
        username = current.user.username
        speaking_to(request, current)
    details = support_details(code, message, username)
    try:
        heading = ERROR_HEADINGS.get(status)
        return render(request, "error.html", status=status, username=username, problem=details, heading=heading)
    except Exception:  # the error page itself failed: say the essentials without the template
        log.exception("error page failed to render")
        language = i18n.catalog_for(request)
        lines = (
            _("Error code: %(code)s", code=code),
            _("Correlation id: %(correlation_id)s", correlation_id=details.correlation_id),
            _("Time: %(timestamp)s", timestamp=details.timestamp),
        )
        details_text = joined(lines, language, separator="\n")
        text = f"{language.text(*message)}\n\n{details_text}\n"
        return secure_headers(Response(text, status_code=status, media_type="text/plain; charset=utf-8"))
