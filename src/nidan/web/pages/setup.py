"""First start: the one-time setup link creates the first administrator, who is then signed in."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from nidan.core.passwords import MIN_LENGTH
from nidan.core.usernames import normalised_username
from nidan.errors import InvalidInput
from nidan.services import setup, signin
from nidan.texts import _
from nidan.web.deps import Client, Services
from nidan.web.pages import cookies
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import problem, redirect, render
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)


@router.get("/setup")
def setup_page(request: Request, ctx: Services, token: str = "") -> Response:
    setup.check_setup_token(ctx, token)
    # The token rides on in a hidden field, never in the form's address; Referrer-Policy keeps it off other sites.
    return render(request, "setup.html", token=token, entered_username="", entered_email="", min_length=MIN_LENGTH)


@router.post("/setup")
def complete_setup(request: Request, form: CheckedForm, ctx: Services, client: Client) -> Response:
    token = field(form, "token", 256)
    username = field(form, "username", 256)
    email = field(form, "email", 512)
    password = field(form, "password")
    try:
        if password != field(form, "password_repeat"):
            raise InvalidInput(_("The two passwords are not the same. Type the password twice, identically."))
        user = setup.complete_setup(ctx, token=token, username=username, email=email, password=password, client=client)
    except InvalidInput as exc:  # a bad field spends nothing: the same link still works
        return render(
            request,
            "setup.html",
            status=status_for(exc),
            problem=problem(exc, normalised_username(username) or None),
            token=token,
            entered_username=username,
            entered_email=email,
            min_length=MIN_LENGTH,
        )
    result = signin.login(ctx, username=user.username, password=password, client=client)
    if not isinstance(result, signin.Authenticated):  # a brand-new account has no second factor yet
        return redirect("/login")
    response = redirect("/security", "welcome")
    cookies.set_session(request, response, ctx, result.session_token)
    return response
