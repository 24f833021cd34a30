"""The one-time link an administrator made for someone's account: its owner sets their password, then goes on in.

Opening the link (GET) changes nothing, so a mail scanner or link preview cannot spend it; the form (a CSRF-checked
POST) sets the password and spends the link in one transaction, and the person is signed in with that password:
straight into setting up two-step verification when their organisations require it, else to their account
security page, which asks them to. A link that was used, has expired or is not one nidan made is a page saying so,
in the person's language, and what to do next.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from nidan.core.passwords import MIN_LENGTH
from nidan.core.usernames import username_key
from nidan.errors import AccountDisabled, InvalidInput, PasswordLinkInvalid, PasswordLinkUsed
from nidan.services import password_links, signin
from nidan.texts import _
from nidan.web.deps import Client, Services
from nidan.web.links import SET_PASSWORD_PATH
from nidan.web.pages import cookies
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import problem, redirect, render
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

TOKEN_MAX_LENGTH = 256


def _refused(request: Request, error: PasswordLinkInvalid | AccountDisabled) -> Response:
    return render(
        request,
        "setup_password_refused.html",
        status=status_for(error),
        problem=problem(error, None),
        used=isinstance(error, PasswordLinkUsed),
        # An administrator can make a new link; for a disabled account they would enable it first.
        new_link=not isinstance(error, PasswordLinkUsed | AccountDisabled),
        hours=int(password_links.LINK_LIFETIME.total_seconds() // 3600),
    )


@router.get(SET_PASSWORD_PATH)
def set_password_page(request: Request, ctx: Services, token: str = "") -> Response:
    try:
        user = password_links.check_link(ctx, token[:TOKEN_MAX_LENGTH])
    except (PasswordLinkInvalid, AccountDisabled) as exc:
        return _refused(request, exc)
    # The token rides on in a hidden field, never in the form's address; Referrer-Policy keeps it off other sites.
    return render(request, "setup_password.html", token=token, subject=user, min_length=MIN_LENGTH)


@router.post(SET_PASSWORD_PATH)
def set_password(request: Request, form: CheckedForm, ctx: Services, client: Client) -> Response:
    token = field(form, "token", TOKEN_MAX_LENGTH)
    password = field(form, "password")
    try:
        user = password_links.check_link(ctx, token)
    except (PasswordLinkInvalid, AccountDisabled) as exc:
        return _refused(request, exc)
    try:
        if password != field(form, "password_repeat"):
            raise InvalidInput(_("The two passwords are not the same. Type the password twice, identically."))
        password_links.set_password(ctx, token=token, password=password, client=client)
    except (PasswordLinkInvalid, AccountDisabled) as exc:  # spent or expired a moment ago
        return _refused(request, exc)
    except InvalidInput as exc:  # a weak password spends nothing: the same link still works
        return render(
            request,
            "setup_password.html",
            status=status_for(exc),
            problem=problem(exc, user.username),
            token=token,
            subject=user,
            min_length=MIN_LENGTH,
        )
    return _signed_in(request, ctx, client, user.username, password)


def _signed_in(request: Request, ctx: Services, client: Client, username: str, password: str) -> Response:
    """Signed in with the password just set: into 2FA setup when it is required, to the code form when the account
    has a second factor already (a new link for someone who lost their password), else to account security."""
    result = signin.login(ctx, username=username, password=password, client=client)
    if isinstance(result, signin.MfaRequired):
        response = redirect("/login/verify")
        cookies.set_mfa(request, response, ctx, result.mfa_token, username_key(username) or "")
        return response
    if isinstance(result, signin.SetupRequired):
        response = redirect("/security/setup")
        cookies.set_session(request, response, ctx, result.setup_token)
        return response
    response = redirect("/security", "password_set")
    cookies.set_session(request, response, ctx, result.session_token)
    return response
