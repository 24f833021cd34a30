"""The signed-in user's own account and second factors."""

from __future__ import annotations

from fastapi import APIRouter, Response

from nidan.services import enrollment, signin
from nidan.web.api.v1.schemas import (
    ClockObservationOut,
    CodeRequest,
    MeResponse,
    RecoveryCodesResponse,
    SecondFactorState,
    TotpActivationResponse,
    TotpEnrollmentResponse,
)
from nidan.web.deps import Client, RecentlyVerified, Services, SignedIn
from nidan.web.openapi import errors_documented
from nidan.web.qr import qr_svg

router = APIRouter(prefix="/api/v1/me", tags=["account"])


@router.get("", response_model=MeResponse, responses=errors_documented(401), summary="Who am I, and my 2FA state")
def me(ctx: Services, session: SignedIn) -> MeResponse:
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
            clock_observations=[
                ClockObservationOut(observed_at=o.observed_at, offset_seconds=o.offset_seconds)
                for o in state.clock_observations
            ],
        ),
    )


@router.post(
    "/totp",
    response_model=TotpEnrollmentResponse,
    responses=errors_documented(401, 403),
    summary="Start setting up an authenticator app",
    description="Changing an authenticator that is already on needs a recent verification (403 "
    "`reauthentication_required`: see POST /api/v1/auth/reauth); setting up the first one does not.",
)
def start_totp(ctx: Services, session: SignedIn) -> TotpEnrollmentResponse:
    if enrollment.security_state(ctx, session.user.id).totp_enabled:
        signin.require_recent_verification(ctx, session)  # changing the authenticator is sensitive
    started = enrollment.start_totp(ctx, session.user)
    return TotpEnrollmentResponse(
        secret=started.secret, otpauth_uri=started.otpauth_uri, qr_svg=qr_svg(started.otpauth_uri)
    )


@router.post(
    "/totp/activate",
    response_model=TotpActivationResponse,
    responses=errors_documented(401, 409, 422),
    summary="Finish setting up: the first code from the app",
)
def activate_totp(body: CodeRequest, ctx: Services, session: SignedIn, client: Client) -> TotpActivationResponse:
    activated = enrollment.activate_totp(ctx, session.user, body.code, client=client)
    return TotpActivationResponse(
        recovery_codes=activated.recovery_codes, replaced_previous=activated.replaced_previous
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
