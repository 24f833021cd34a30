"""Request and response bodies of the REST API, as they appear in /openapi.json."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nidan.core.models import ClockObservation, Method


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1024)


class LoginRequest(_Request):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)


class MfaRequest(_Request):
    mfa_token: str = Field(min_length=1, max_length=256)
    method: Method
    code: str = Field(min_length=1, max_length=64)


class CodeRequest(_Request):
    code: str = Field(min_length=1, max_length=64)


class ReauthRequest(_Request):
    """Step-up: ``password`` with method ``password``, ``code`` with ``totp`` or ``recovery_code``; not both."""

    method: Literal["password", "totp", "recovery_code"]
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    code: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_secret_for_the_method(self) -> ReauthRequest:
        wanted, other = ("password", "code") if self.method == "password" else ("code", "password")
        if getattr(self, wanted) is None:
            raise ValueError(f"method {self.method!r} needs the field {wanted!r}")
        if getattr(self, other) is not None:
            raise ValueError(f"method {self.method!r} takes {wanted!r}, not {other!r}")
        return self

    @property
    def secret(self) -> str:
        value = self.password if self.method == "password" else self.code
        assert value is not None
        return value


class AuthenticatedResponse(BaseModel):
    status: Literal["authenticated"] = "authenticated"
    session_token: str
    expires_in: int = Field(description="Seconds until the session ends.")
    two_factor_due: datetime | None = Field(
        default=None,
        description="An organisation requires two-step verification and it is not set up: remind the user; after "
        "this time the sign-in leads into setup.",
    )


class SetupRequiredResponse(BaseModel):
    status: Literal["mfa_setup_required"] = "mfa_setup_required"
    setup_token: str = Field(
        description="Allows only setting up two-step verification: send it as the bearer token to POST "
        "/api/v1/me/totp and POST /api/v1/me/totp/activate (which answers a full session_token), GET /api/v1/me "
        "and POST /api/v1/auth/logout; anything else answers 403 mfa_setup_required."
    )
    expires_in: int
    reason: Literal["policy", "administrator"] = Field(
        description="`policy`: an organisation requires it; `administrator`: an administrator reset it or asked "
        "for it to be set up again."
    )


class MfaRequiredResponse(BaseModel):
    status: Literal["mfa_required"] = "mfa_required"
    mfa_token: str = Field(description="Send it to /api/v1/auth/mfa with a code; it lives 5 minutes.")
    methods: list[Method]
    expires_in: int


class ClockObservationOut(BaseModel):
    observed_at: datetime
    offset_seconds: int = Field(description="How far the device clock was off; positive means ahead.")


def clock_observations_out(observations: Iterable[ClockObservation]) -> list[ClockObservationOut]:
    return [ClockObservationOut(observed_at=o.observed_at, offset_seconds=o.offset_seconds) for o in observations]


class SecondFactorState(BaseModel):
    totp_enabled: bool
    totp_activated_at: datetime | None
    totp_enrollment_pending: bool
    recovery_codes_remaining: int
    clock_observations: list[ClockObservationOut]
    required: bool = Field(default=False, description="An organisation requires it (it cannot be turned off).")
    due: datetime | None = Field(default=None, description="Required and not set up: the grace period's end.")
    registration_required: bool = Field(
        default=False, description="An administrator asked for it to be set up again at the next sign-in."
    )


class MeResponse(BaseModel):
    username: str
    email: str
    role: str
    created_at: datetime
    last_sign_in_at: datetime | None
    two_factor: SecondFactorState
    setup_only: bool = Field(
        default=False, description="This is a setup_token: set up two-step verification before anything else."
    )


class TotpEnrollmentResponse(BaseModel):
    secret: str = Field(description="The key in base32, for typing into an app that cannot scan.")
    otpauth_uri: str
    qr_svg: str = Field(description="The otpauth URI as a QR code, an SVG document.")


class TotpActivationResponse(BaseModel):
    recovery_codes: list[str] = Field(
        description="16 new codes when two-step verification was just turned on; empty when an app was replaced "
        "(the existing codes stay valid)."
    )
    replaced_previous: bool
    session_token: str | None = Field(
        default=None,
        description="When set up with a setup_token: the full session that sign-in now continues with (the "
        "setup_token stops working).",
    )


class RecoveryCodesResponse(BaseModel):
    recovery_codes: list[str]


class ErrorDetail(BaseModel):
    code: str
    message: str
    correlation_id: str
    timestamp: datetime


class ErrorResponse(BaseModel):
    error: ErrorDetail
