"""Sign-in in two steps, step-up re-verification, and sign-out."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from nidan.core.models import Method
from nidan.errors import AuthenticationRequired
from nidan.services import second_step, signin, stepup
from nidan.web.api.v1.schemas import (
    AuthenticatedResponse,
    LoginRequest,
    MfaRequest,
    MfaRequiredResponse,
    OptionOut,
    ReauthRequest,
    SetupRequiredResponse,
)
from nidan.web.deps import Client, Services, bearer_token
from nidan.web.hashing import awaiting_hashes
from nidan.web.i18n import catalog_for
from nidan.web.openapi import SESSION, errors_documented, requires

router = APIRouter(prefix="/api/v1/auth", tags=["sign-in"])


def authenticated(ctx: Services, result: signin.Authenticated) -> AuthenticatedResponse:
    return AuthenticatedResponse(
        session_token=result.session_token,
        expires_in=int(ctx.session_lifetime.total_seconds()),
        two_factor_due=result.two_factor_due,
        second_factor="remembered_device" if result.second_factor == signin.REMEMBERED_DEVICE else None,
        device_token=result.device_token,
        device_expires_at=result.device_expires_at,
    )


def signed_in(ctx: Services, result: signin.Authenticated | signin.SetupRequired) -> SignInAnswer:
    if isinstance(result, signin.SetupRequired):
        return SetupRequiredResponse(
            setup_token=result.setup_token,
            expires_in=int(signin.ENROLMENT_LIFETIME.total_seconds()),
            reason="administrator" if result.reason == "administrator" else "policy",
        )
    return authenticated(ctx, result)


SignInAnswer = AuthenticatedResponse | SetupRequiredResponse


def answer(model: BaseModel) -> JSONResponse:
    """``model`` as its route's response model documents it: a Response spares FastAPI validating and serialising
    our own model again against the route's union of answers."""
    return JSONResponse(model.model_dump(mode="json"))


LOGIN_DESCRIPTION = """
Answers one of: `authenticated` (a session; `two_factor_due` when an organisation requires two-step verification
that is not set up yet, in its grace period; `second_factor: remembered_device` with the next `device_token` when a
remembered device's token stood in for the second step), `mfa_required` (send a code to POST /api/v1/auth/mfa,
by one of `options`, `default_method` first), or
`mfa_setup_required` (an organisation requires two-step verification, or an administrator reset it: the
`setup_token` allows only setting it up, see POST /api/v1/me/totp).
"""


@router.post(
    "/login",
    response_model=AuthenticatedResponse | MfaRequiredResponse | SetupRequiredResponse,
    responses=errors_documented(401, 422, 429),
    summary="First step: username and password",
    description=LOGIN_DESCRIPTION,
)
async def login(request: Request, body: LoginRequest, ctx: Services, client: Client) -> JSONResponse:
    # The password's argon2id runs on the hashing threads, awaited here: no request thread waits for it. On
    # embedded SQLite the rest takes microseconds and runs here too; a database server's round trips go to a
    # request thread a stretch at a time.
    steps = signin.login_steps(
        ctx, username=body.username, password=body.password, client=client, device_token=body.device_token
    )
    in_thread = not request.app.state.storage_is_embedded
    result = await awaiting_hashes(ctx.passwords, steps, in_thread=in_thread)
    if isinstance(result, signin.MfaRequired):
        language = catalog_for(request)
        return answer(
            MfaRequiredResponse(
                mfa_token=result.mfa_token,
                methods=result.methods,
                options=[OptionOut(method=o.method, id=o.id, label=language.text(o.label)) for o in result.options],
                default_method=result.default_method,
                expires_in=int(ctx.mfa_token_lifetime.total_seconds()),
            )
        )
    return answer(signed_in(ctx, result))


@router.post(
    "/mfa",
    response_model=AuthenticatedResponse | SetupRequiredResponse,
    responses=errors_documented(401, 403, 409, 422, 429),
    summary="Second step: a code from the authenticator app or a recovery code",
    description="A session, or `mfa_setup_required` when an administrator asked for two-step verification to be "
    "set up again (the code proved who it is; the `setup_token` allows only the new setup).",
)
async def mfa(request: Request, body: MfaRequest, ctx: Services, client: Client) -> JSONResponse:
    check = partial(
        signin.complete_mfa,
        ctx,
        mfa_token=body.mfa_token,
        method=body.method,
        code=body.code,
        client=client,
        remember_device=body.remember_device,
    )
    # An authenticator code on embedded SQLite is checked in microseconds: right here, as the verify API checks
    # one, not worth a trip to a thread. A recovery code (argon2id) or a database server's round trips are.
    inline = request.app.state.storage_is_embedded and not second_step.plugin(body.method).slow
    return answer(signed_in(ctx, check() if inline else await run_in_threadpool(check)))


@router.post(
    "/reauth",
    response_model=AuthenticatedResponse,
    responses=errors_documented(401, 403, 409, 422, 429),
    summary="Step-up: confirm it is you again before changing security settings",
    openapi_extra=requires(SESSION),
    description="For a signed-in session (`Authorization: Bearer`). Users with two-step verification confirm with "
    "a code from their authenticator app (`totp`) or a recovery code (which is then spent); a password is refused "
    "for them (409 `method_not_available`). Users without it confirm with their password. The answer is a NEW "
    "session token, verified now, that sensitive actions accept for the step-up window (default 10 minutes); the "
    "token sent stops working. Wrong codes count towards the same backoff as sign-in codes: while blocked the "
    "answer is 429 with `Retry-After`.",
)
def reauth(request: Request, body: ReauthRequest, ctx: Services, client: Client) -> AuthenticatedResponse:
    token = bearer_token(request)
    if token is None:
        raise AuthenticationRequired()
    method: stepup.ReauthMethod = stepup.PASSWORD if body.method == "password" else Method(body.method)
    result = stepup.reauthenticate(ctx, session_token=token, method=method, secret=body.secret, client=client)
    return authenticated(ctx, result)


@router.post(
    "/logout",
    status_code=204,
    responses=errors_documented(401),
    summary="End this session",
    openapi_extra=requires(SESSION),
)
def logout(request: Request, ctx: Services, client: Client) -> Response:
    token = bearer_token(request)
    if token is None:
        raise AuthenticationRequired()
    signin.logout(ctx, token, client)
    return Response(status_code=204)
