"""Signing in (password, then a code or a recovery code) and signing out."""

from __future__ import annotations

import contextlib
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from nidan.core.models import ClientInfo, Method
from nidan.core.usernames import normalised_username, username_key
from nidan.errors import (
    AuthenticationRequired,
    InvalidCode,
    InvalidCredentials,
    MethodNotAllowed,
    MethodNotAvailable,
    MfaTokenInvalid,
    NidanError,
    RateLimited,
    VerificationLocked,
)
from nidan.services import setup, signin
from nidan.web.deps import Client, Services
from nidan.web.pages import cookies
from nidan.web.pages.csrf import CheckedForm, field
from nidan.web.pages.rendering import problem, redirect, render
from nidan.web.problems import error_headers, status_for

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
        result = signin.login(
            ctx, username=username, password=password, client=client, device_token=cookies.device_from_cookie(request)
        )
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
        if result.device_token is not None and result.device_expires_at is not None:
            cookies.set_device(request, response, ctx, result.device_token, result.device_expires_at)
    cookies.clear_mfa(request, response)
    return response


def _chosen(pending: signin.PendingSecondStep, requested: str | None) -> Method | None:
    """The method whose form to show: the one asked for when the person can use it, else their default."""
    on_offer = [option.method for option in pending.options]
    for method in on_offer:
        if method.value == requested:
            return method
    return pending.default_method


def _option_href(method: Method) -> str:
    return "/login/verify?" + urlencode({"method": method.value})


def _verify_form(
    request: Request,
    pending: signin.PendingSecondStep,
    method: Method,
    username: str,
    *,
    error: NidanError | None = None,
    retry_after: int = 0,
) -> Response:
    """The code form of ``method``, its problem if any, and the person's other options. A person told to wait stays
    here: the form keeps their sign-in, and counts down to when they may try again."""
    response = render(
        request,
        "verify.html",
        status=status_for(error) if error is not None else 200,
        problem=problem(error, username or None) if error is not None else None,
        method=method.value,
        others=[option for option in pending.options if option.method is not method],
        option_href=_option_href,
        signing_in_as=username,
        remember_days=pending.remember_days,
        retry_after=retry_after,
        locked=isinstance(error, VerificationLocked),
    )
    if error is not None:
        response.headers.update(error_headers(error))
    return response


@router.get("/login/verify")
def verify_page(
    request: Request, ctx: Services, method: Annotated[str | None, Query(max_length=32)] = None
) -> Response:
    attempt = cookies.mfa_from_cookie(request)
    pending = signin.pending(ctx, attempt[0]) if attempt is not None else None
    chosen = _chosen(pending, method) if pending is not None else None
    if attempt is None or pending is None or chosen is None:
        return redirect("/login", "mfa_expired")
    return _verify_form(request, pending, chosen, attempt[1])


@router.post("/login/verify")
def verify(request: Request, form: CheckedForm, ctx: Services, client: Client) -> Response:
    attempt = cookies.mfa_from_cookie(request)
    pending = signin.pending(ctx, attempt[0]) if attempt is not None else None
    method = _chosen(pending, field(form, "method", 32)) if pending is not None else None
    if attempt is None or pending is None or method is None:
        response = redirect("/login", "mfa_expired")
        cookies.clear_mfa(request, response)
        return response
    mfa_token, username = attempt
    try:
        result = signin.complete_mfa(
            ctx,
            mfa_token=mfa_token,
            method=method,
            code=field(form, "code", 64),
            client=client,
            remember_device=field(form, "remember_device", 1) == "1",
        )
    except MfaTokenInvalid:
        response = redirect("/login", "mfa_expired")
        cookies.clear_mfa(request, response)
        return response
    except InvalidCode as exc:
        return _verify_form(request, pending, method, username, error=exc, retry_after=exc.blocked_seconds)
    except RateLimited as exc:
        return _verify_form(request, pending, method, username, error=exc, retry_after=exc.retry_after_seconds)
    except (MethodNotAvailable, MethodNotAllowed, VerificationLocked) as exc:
        return _verify_form(request, pending, method, username, error=exc)
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
