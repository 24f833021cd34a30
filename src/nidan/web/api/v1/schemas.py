"""Request and response bodies of the REST API, as they appear in /openapi.json."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.config import JsonDict

from nidan.core.models import ClockObservation, Method
from nidan.core.passwords import MIN_LENGTH
from nidan.services import second_step
from nidan.texts import _

#: The largest ids and counters the columns hold (``nidan.db.tables``): an ``Integer`` column is int4 on PostgreSQL,
#: a ``BigInteger`` int8 (and SQLite's integers stop at int8 too). A number past them is a 422, never a 500.
MAX_INT4 = 2**31 - 1
MAX_INT8 = 2**63 - 1

#: Text shown on one line (pages, logs, the audit log): no control characters (C0, DEL, C1). Stated in the document
#: only: the services refuse what is not printable, and read tabs and line breaks as spaces.
ONE_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"
#: The same, with at least one character that is not a space.
NOT_BLANK_LINE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
#: What the pattern cannot say (it would need the Unicode database of the server's Python): a documented 422.
INVISIBLE_REFUSED = (
    "Runs of spaces count as one. Invisible characters (format, private-use and unassigned code points, which a "
    "JSON Schema pattern cannot list) are refused with 422 too."
)
#: For names the services read as people type them (NFKC, case folded, spaces around dropped): the pattern is the
#: canonical spelling, the one a client should send; its equivalents name the same thing.
CANONICAL_SPELLING = "Upper case, full-width letters and spaces around it are read as the same name."
#: The username rule in words (``nidan.core.usernames``): its pattern states the alphabet; what no pattern can state
#: (it needs the Unicode database) is refused with a documented 422 whose message starts "A username".
USERNAME_RULES = (
    "Usernames follow PRECIS UsernameCaseMapped (RFC 8265): letters and digits of any script, and '.', '_' and '-' "
    "(neither first nor last), at most 64 characters. Also refused with 422 `invalid_request` (a pattern cannot "
    "state them): symbols and non-ASCII punctuation, compatibility forms (such as ① or ﬁ), invisible and "
    "unassigned code points, right-to-left text breaking the bidi rule (RFC 5893), a first character that is not a "
    "letter or digit, and names mixing scripts (Latin with Cyrillic or Greek, say; Japanese may mix kanji, kana and "
    "Latin) or number systems."
)
#: How codes are read (``nidan.core.codes.typed_code``), for the document.
TYPED_CODE = (
    "As typed: spaces anywhere, full-width digits and letters (a Japanese IME), and any dash in a recovery code "
    "(`ー`, `－`, `‐`) are read as the plain code."
)


def documented_pattern(pattern: str) -> JsonDict:
    """``json_schema_extra`` stating ``pattern`` without enforcing it here: the rule itself lives in the service,
    which also accepts the equivalent spellings the pattern leaves out."""
    return {"pattern": pattern}


def _date_as_text(value: object) -> object:
    """A date as the document has it (a ``date`` string): pydantic alone would also read a number as seconds since
    1970."""
    if isinstance(value, str | date):
        return value
    raise ValueError(_("expected a date as text, such as 2027-03-14"))


IsoDate = Annotated[date, BeforeValidator(_date_as_text)]


def json_integer(value: object) -> object:
    """A JSON Schema integer: a number without a fraction (``3`` or ``3.0``), never ``false`` or ``"3"``, which
    pydantic alone would read as 0 and 3. Put bounds before it (``Annotated[int, Field(ge=..), BeforeValidator(
    json_integer)]``): after it, pydantic writes them into the document as ``ge``/``le``, which JSON Schema lacks."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(_("expected an integer"))
    return value


def _json_boolean(value: object) -> object:
    """A JSON boolean, never ``0`` or ``"yes"``, which pydantic alone would read as false and true."""
    if not isinstance(value, bool):
        raise ValueError(_("expected true or false"))
    return value


JsonBool = Annotated[bool, BeforeValidator(_json_boolean)]


#: A username in a path, spelled any way people type it (``nidan.core.usernames``); an unknown one is a 404.
UsernameInPath = Annotated[
    str, Path(min_length=1, max_length=256, description=f"A username. {CANONICAL_SPELLING}", examples=["alice"])
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=1024)


class LoginRequest(_Request):
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)
    device_token: str | None = Field(
        default=None,
        max_length=256,
        description="The token of a remembered device (from an earlier `device_token`): when it is valid the answer "
        "is `authenticated` without a second step, with the next token to keep (this one stops working). When it "
        "is not (unknown, expired, forgotten, copied) the sign-in simply goes on to `mfa_required`.",
    )


class MfaRequest(_Request):
    mfa_token: str = Field(min_length=1, max_length=256)
    method: Method
    code: str = Field(min_length=1, max_length=64, description=TYPED_CODE)
    remember_device: bool = Field(
        default=False,
        description="Don't ask for the second step again on this device, for as many days as the user's policy "
        "allows (`remember_device_days`; when it is 0 nothing is remembered): the answer carries a `device_token`.",
    )


class CodeRequest(_Request):
    code: str = Field(min_length=1, max_length=64, description=TYPED_CODE)


class PasswordReauth(_Request):
    """Step-up with the password: for users without two-step verification."""

    method: Literal["password"]
    password: str = Field(min_length=1, max_length=1024)

    @property
    def secret(self) -> str:
        return self.password


class CodeReauth(_Request):
    """Step-up with a code from the authenticator app (``totp``) or a recovery code (``recovery_code``)."""

    method: Literal["totp", "recovery_code"]
    code: str = Field(min_length=1, max_length=64, description=TYPED_CODE)

    @property
    def secret(self) -> str:
        return self.code


#: ``password`` with method ``password``, ``code`` with ``totp`` or ``recovery_code``; never both. A union the
#: document states (``oneOf`` by ``method``), rather than a rule checked after the schema said yes.
ReauthRequest = Annotated[PasswordReauth | CodeReauth, Field(discriminator="method")]


class AuthenticatedResponse(BaseModel):
    status: Literal["authenticated"] = "authenticated"
    session_token: str
    expires_in: int = Field(description="Seconds until the session ends.")
    two_factor_due: datetime | None = Field(
        default=None,
        description="An organisation requires two-step verification and it is not set up: remind the user; after "
        "this time the sign-in leads into setup.",
    )
    second_factor: Literal["remembered_device"] | None = Field(
        default=None, description="`remembered_device`: a remembered device's token stood in for the second step."
    )
    device_token: str | None = Field(
        default=None,
        description="Keep it and send it with the next sign-in (POST /api/v1/auth/login) to skip the second step; "
        "shown once. Each use answers the next one and ends this one; using an ended one again forgets the device.",
    )
    device_expires_at: datetime | None = Field(default=None, description="When `device_token` stops working.")


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


class OptionOut(BaseModel):
    """One thing the person can verify with: send its ``method`` to POST /api/v1/auth/mfa."""

    method: Method
    id: str = Field(description="Tells two of one method apart (two security keys); the method's name otherwise.")
    label: str = Field(description="What to show, in words; never a secret (phone numbers are masked).")


class MfaRequiredResponse(BaseModel):
    status: Literal["mfa_required"] = "mfa_required"
    mfa_token: str = Field(description="Send it to /api/v1/auth/mfa with a code; it lives 5 minutes.")
    methods: list[Method] = Field(description="The methods of `options`, each once, the default first.")
    options: list[OptionOut] = Field(
        description='Everything the person can verify with, the default first: offer the default and a "use a '
        'different verification option" list of the rest.'
    )
    default_method: Method | None = Field(
        description="The user's chosen method (PUT /api/v1/me/default-method) when they can use it, else the first "
        "that is not a fallback."
    )
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
    locale: Literal["en", "ja"] | None = Field(
        default=None, description="The chosen language of pages and messages; null: the browser's."
    )
    time_zone: str | None = Field(
        default=None, description="The chosen IANA time zone pages show times in; null: the browser's (else UTC)."
    )
    two_factor: SecondFactorState
    setup_only: bool = Field(
        default=False, description="This is a setup_token: set up two-step verification before anything else."
    )


class PasswordChangeRequest(_Request):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(
        min_length=MIN_LENGTH,
        max_length=1024,
        description=f"At least {MIN_LENGTH} characters, any characters; not a common password, not containing your "
        "username, not the current one (422 `weak_password`).",
    )


class PasswordChangeResponse(BaseModel):
    sessions_ended: int = Field(description="Your other sessions, signed out.")
    browsers_forgotten: int = Field(description="Remembered browsers that will ask for the second step again.")


class SessionOut(BaseModel):
    id: int
    device: str = Field(description="The browser and system in words, from the User-Agent it signed in with.")
    ip: str | None
    signed_in_at: datetime
    last_seen_at: datetime | None = Field(description="Noted at most every 5 minutes.")
    expires_at: datetime
    current: bool = Field(description="The session making this request.")


class SessionsResponse(BaseModel):
    sessions: list[SessionOut]


class SessionsEndedResponse(BaseModel):
    ended: int


class PreferencesRequest(_Request):
    locale: Literal["en", "ja"] | None = Field(description="`en` or `ja`; null: follow the browser.")
    time_zone: str | None = Field(
        max_length=64,
        description="An IANA time zone such as `Asia/Tokyo` or `Europe/London` that this server's tz database knows; "
        "null: follow the browser. Another name is 422 `invalid_request`.",
    )


class PreferencesResponse(BaseModel):
    locale: Literal["en", "ja"] | None
    time_zone: str | None


class DefaultMethodRequest(_Request):
    method: Method = Field(
        description="A method you set up that is not a fallback (not `recovery_code`).",
        json_schema_extra={"enum": [m.value for m in second_step.defaultable_methods()]},
    )


class DefaultMethodResponse(BaseModel):
    default_method: Method


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
