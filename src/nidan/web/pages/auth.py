"""Signing in (password, then a code or a recovery code) and signing out."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request, Response

from nidan.core.models import ClientInfo, Method
from nidan.core.usernames import normalised_username, username_key
from nidan.errors import AuthenticationRequired, InvalidCode, InvalidCredentials, MethodNotAvailable, MfaTokenInvalid
from nidan.services import setup, signin
from nidan.web.deps import Client, Services
from nidan.web.pages import cookies
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import problem, redirect, render
from nidan.web.problems import status_for

router = APIRouter(include_in_schema=False)

#: Longer passwords are not looked at: nobody types them, and hashing them is work an attacker chooses.
MAX_PASSWORD_LENGTH = 1024


@router.get("/")
def home(request: Request, ctx: Services) -> Response:
    return redirect("/security" if cookies.signed_in_user(request, ctx) else "/login")


@router.get("/login")
def login_page(request: Request, ctx: Services) -> Response:
    if cookies.signed_in_user(request, ctx):
        return redirect("/security")
    return render(request, "login.html", entered_username="", needs_setup=setup.needs_setup(ctx))


@router.post("/login")
def login(request: Request, form: CheckedForm, ctx: Services, client: Client) -> Response:
    username = field(form, "username", 256)
    password = field(form, "password", MAX_PASSWORD_LENGTH + 1)
    try:
        if len(password) > MAX_PASSWORD_LENGTH:
            raise InvalidCredentials()
        result = signin.login(ctx, username=username, password=password, client=client)
    except InvalidCredentials as exc:
        return render(
            request,
            "login.html",
            status=status_for(exc),
            problem=problem(exc, normalised_username(username) or None),
            entered_username=username,
            needs_setup=False,
        )
    _end_previous_session(request, ctx, client)
    if isinstance(result, signin.MfaRequired):
        response = redirect("/login/verify")
        cookies.set_mfa(request, response, ctx, result.mfa_token, username_key(username) or "")
        return response
    return _signed_in(request, ctx, result)


def _signed_in(
    request: Request, ctx: Services, result: signin.Authenticated | signin.SetupRequired, notice: str | None = None
) -> Response:
    """Into the account (reminded of a 2FA deadline there), or straight into setting 2FA up when it must be."""
    if isinstance(result, signin.SetupRequired):
        response = redirect("/security/setup")
        cookies.set_session(request, response, ctx, result.setup_token)
    else:
        response = redirect("/security", notice)
        cookies.set_session(request, response, ctx, result.session_token)
    cookies.clear_mfa(request, response)
    return response


def _method(value: str | None) -> Method:
    return Method.RECOVERY_CODE if value == Method.RECOVERY_CODE.value else Method.TOTP


@router.get("/login/verify")
def verify_page(request: Request, method: str | None = None) -> Response:
    attempt = cookies.mfa_from_cookie(request)
    if attempt is None:
        return redirect("/login", "mfa_expired")
    return render(request, "verify.html", method=_method(method).value, signing_in_as=attempt[1])


@router.post("/login/verify")
def verify(request: Request, form: CheckedForm, ctx: Services, client: Client) -> Response:
    attempt = cookies.mfa_from_cookie(request)
    method = _method(field(form, "method"))
    if attempt is None:
        return redirect("/login", "mfa_expired")
    mfa_token, username = attempt
    try:
        result = signin.complete_mfa(
            ctx, mfa_token=mfa_token, method=method, code=field(form, "code", 64), client=client
        )
    except MfaTokenInvalid:
        response = redirect("/login", "mfa_expired")
        cookies.clear_mfa(request, response)
        return response
    except (InvalidCode, MethodNotAvailable) as exc:
        return render(
            request,
            "verify.html",
            status=status_for(exc),
            problem=problem(exc, username or None),
            method=method.value,
            signing_in_as=username,
        )
    _end_previous_session(request, ctx, client)
    return _signed_in(request, ctx, result, "recovery_code_used" if method is Method.RECOVERY_CODE else None)


@router.post("/logout")
def logout(request: Request, form: CheckedForm, ctx: Services, client: Client) -> Response:
    _end_previous_session(request, ctx, client)
    response = redirect("/login", "signed_out")
    cookies.clear_session(request, response)
    return response


def _end_previous_session(request: Request, ctx: Services, client: ClientInfo) -> None:
    """End the session this browser had (signing out, or signing in again over it): one browser, one session."""
    token = cookies.session_from_cookie(request)
    if token is None:
        return
    with contextlib.suppress(AuthenticationRequired):  # already ended or never valid: nothing to end
        signin.logout(ctx, token, client)
