"""The signed-in user's own account and second factors."""

from __future__ import annotations

from fastapi import APIRouter, Response

from nidan.services import enrollment, second_step, signin
from nidan.web.api.v1.schemas import (
    CodeRequest,
    DefaultMethodRequest,
    DefaultMethodResponse,
    MeResponse,
    RecoveryCodesResponse,
    SecondFactorState,
    TotpActivationResponse,
    TotpEnrollmentResponse,
    clock_observations_out,
)
from nidan.web.deps import Client, Enrolling, RecentlyVerified, Services, SignedIn
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
