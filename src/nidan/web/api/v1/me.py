"""The signed-in user's own account and second factors."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from fastapi import Path as PathParam

from nidan.services import accounts, enrollment, own_account, second_step, signin
from nidan.web.api.v1.schemas import (
    MAX_INT4,
    CodeRequest,
    DefaultMethodRequest,
    DefaultMethodResponse,
    MeResponse,
    PasswordChangeRequest,
    PasswordChangeResponse,
    PreferencesRequest,
    PreferencesResponse,
    RecoveryCodesResponse,
    SecondFactorState,
    SessionOut,
    SessionsEndedResponse,
    SessionsResponse,
    TotpActivationResponse,
    TotpEnrollmentResponse,
    clock_observations_out,
)
from nidan.web.deps import Client, Enrolling, RecentlyVerified, Services, SignedIn
from nidan.web.i18n import catalog_for
from nidan.web.openapi import errors_documented
from nidan.web.qr import qr_svg

router = APIRouter(prefix="/api/v1/me", tags=["account"])


@router.get("", response_model=MeResponse, responses=errors_documented(401), summary="Who am I, and my 2FA state")
def me(ctx: Services, session: Enrolling) -> MeResponse:
    state = enrollment.security_state(ctx, session.user.id)
    user = session.user
    return MeResponse(
        username=user.username,
        email=user.email,
        role=user.role.value,
        created_at=user.created_at,
        last_sign_in_at=user.last_sign_in_at,
        locale="ja" if user.locale == "ja" else "en" if user.locale == "en" else None,
        time_zone=user.time_zone,
        two_factor=SecondFactorState(
            totp_enabled=state.totp_enabled,
            totp_activated_at=state.totp_activated_at,
            totp_enrollment_pending=state.totp_enrollment_pending,
            recovery_codes_remaining=state.recovery_codes_remaining,
            clock_observations=clock_observations_out(state.clock_observations),
            required=state.two_factor_required,
            due=state.two_factor_due,
            registration_required=state.registration_required,
        ),
        setup_only=session.enrolment_only,
    )


@router.post(
    "/totp",
    response_model=TotpEnrollmentResponse,
    responses=errors_documented(401, 403),
    summary="Start setting up an authenticator app",
    description="Changing an authenticator that is already on needs a recent verification (403 "
    "`reauthentication_required`: see POST /api/v1/auth/reauth); setting up the first one does not.",
)
def start_totp(ctx: Services, session: Enrolling) -> TotpEnrollmentResponse:
    # Changing the authenticator is sensitive; an enrolment session was made by this very sign-in.
    if not session.enrolment_only and enrollment.security_state(ctx, session.user.id).totp_enabled:
        signin.require_recent_verification(ctx, session)
    started = enrollment.start_totp(ctx, session.user)
    return TotpEnrollmentResponse(
        secret=started.secret, otpauth_uri=started.otpauth_uri, qr_svg=qr_svg(started.otpauth_uri)
    )


@router.post(
    "/totp/activate",
    response_model=TotpActivationResponse,
    response_model_exclude_none=True,
    responses=errors_documented(401, 409, 422),
    summary="Finish setting up: the first code from the app",
)
def activate_totp(body: CodeRequest, ctx: Services, session: Enrolling, client: Client) -> TotpActivationResponse:
    activated = enrollment.activate_totp(ctx, session.user, body.code, client=client)
    full = signin.finish_enrolment(ctx, session, client) if session.enrolment_only else None
    return TotpActivationResponse(
        recovery_codes=activated.recovery_codes,
        replaced_previous=activated.replaced_previous,
        session_token=full.session_token if full else None,
    )


@router.delete(
    "/totp", status_code=204, responses=errors_documented(401, 403, 409), summary="Turn two-step verification off"
)
def disable_totp(ctx: Services, session: RecentlyVerified, client: Client) -> Response:
    enrollment.disable_totp(ctx, session.user, client=client)
    return Response(status_code=204)


@router.post(
    "/recovery-codes",
    response_model=RecoveryCodesResponse,
    responses=errors_documented(401, 403, 409),
    summary="Replace all recovery codes with a new set",
)
def regenerate_recovery_codes(ctx: Services, session: RecentlyVerified, client: Client) -> RecoveryCodesResponse:
    codes = enrollment.regenerate_recovery_codes(ctx, session.user, client=client)
    return RecoveryCodesResponse(recovery_codes=codes)


@router.put(
    "/default-method",
    response_model=DefaultMethodResponse,
    responses=errors_documented(401, 403, 409, 422),
    summary="Choose the method a sign-in offers first",
    description="The method must be one you set up and your organisations allow (409 `method_not_available`, 403 "
    "`method_not_allowed`); a fallback (`recovery_code`) cannot be the default (422). Sign-in lists it first in "
    "`options` and names it `default_method`.",
)
def choose_default_method(
    body: DefaultMethodRequest, ctx: Services, session: SignedIn, client: Client
) -> DefaultMethodResponse:
    second_step.choose_default(ctx, session.user, body.method, client)
    return DefaultMethodResponse(default_method=body.method)


@router.put(
    "/preferences",
    response_model=PreferencesResponse,
    responses=errors_documented(401, 403, 422),
    summary="Choose the language and time zone of pages and messages",
    description="Pages and error messages speak `locale` and show times in `time_zone` from now on (null: follow the "
    "browser). The API's times stay UTC.",
)
def set_preferences(body: PreferencesRequest, ctx: Services, session: SignedIn, client: Client) -> PreferencesResponse:
    user = accounts.set_preferences(ctx, session.user, locale=body.locale, time_zone=body.time_zone, client=client)
    return PreferencesResponse(locale=body.locale, time_zone=user.time_zone)


@router.post(
    "/password",
    response_model=PasswordChangeResponse,
    responses=errors_documented(401, 403, 422, 429),
    summary="Change your password",
    description="Needs a recent verification (403 `reauthentication_required`). A wrong `current_password` is 401 "
    "`invalid_credentials` and counts towards the backoff of your second step (429 while blocked); a new password "
    "that is too short, too common, contains your username or is the current one is 422 `weak_password`. Every "
    "other session ends and every remembered browser is forgotten; this session stays.",
)
def change_password(
    body: PasswordChangeRequest, ctx: Services, session: RecentlyVerified, client: Client
) -> PasswordChangeResponse:
    changed = own_account.change_password(
        ctx, session, current=body.current_password, new=body.new_password, client=client
    )
    return PasswordChangeResponse(sessions_ended=changed.sessions_ended, browsers_forgotten=changed.browsers_forgotten)


@router.get(
    "/sessions", response_model=SessionsResponse, responses=errors_documented(401, 403), summary="Your sessions"
)
def list_sessions(request: Request, ctx: Services, session: SignedIn) -> SessionsResponse:
    language = catalog_for(request)
    return SessionsResponse(
        sessions=[
            SessionOut(
                id=view.id,
                device=language.text(view.device),
                ip=view.ip,
                signed_in_at=view.signed_in_at,
                last_seen_at=view.last_seen_at,
                expires_at=view.expires_at,
                current=view.current,
            )
            for view in own_account.sessions_of(ctx, session)
        ]
    )


SessionId = Annotated[
    int, PathParam(ge=1, le=MAX_INT4, description="The session's id (from GET /api/v1/me/sessions).", examples=[1])
]


@router.delete(
    # ":int": so that /sessions/revoke-others is no session id to parse (405 for its other methods, not 422).
    "/sessions/{session_id:int}",
    status_code=204,
    responses=errors_documented(401, 403, 404, 422),
    summary="End one of your sessions (this one too: that signs you out)",
)
def end_session(
    session_id: Annotated[
        int, PathParam(ge=1, le=MAX_INT4, description="The session's id (from GET /api/v1/me/sessions).")
    ],
    ctx: Services,
    session: SignedIn,
    client: Client,
) -> Response:
    own_account.end_session(ctx, session, session_id, client)
    return Response(status_code=204)


@router.post(
    "/sessions/revoke-others",
    response_model=SessionsEndedResponse,
    responses=errors_documented(401, 403),
    summary="Sign out everywhere else",
)
def end_other_sessions(ctx: Services, session: SignedIn, client: Client) -> SessionsEndedResponse:
    return SessionsEndedResponse(ended=own_account.end_other_sessions(ctx, session, client))
