"""Domain records passed between services and storage: plain frozen values, no behaviour tied to storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class InstanceRole(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class OrgRole(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    USER_ADMIN = "user_admin"
    MEMBER = "member"


class Method(StrEnum):
    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    email: str
    role: InstanceRole
    password_hash: str = field(repr=False)
    created_at: datetime
    last_sign_in_at: datetime | None
    #: The first sign-in at which 2FA was required and missing (the grace period's start).
    two_factor_grace_started_at: datetime | None = None
    #: An administrator asked for the methods to be registered again (or reset them): setup at next sign-in.
    registration_required_at: datetime | None = None
    #: The second-step method the user prefers to be offered first (a ``Method`` value); ``None``: no preference.
    default_method: str | None = None
    #: Chosen language (``en``, ``ja``) and IANA time zone (``Asia/Tokyo``); ``None`` until the person chooses.
    locale: str | None = None
    time_zone: str | None = None
    #: An administrator disabled the account (``disabled_reason`` says why): nothing of it works until enabled.
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class NewUser:
    username: str
    username_key: str
    email: str
    role: InstanceRole
    password_hash: str = field(repr=False)
    created_at: datetime


class LinkPurpose(StrEnum):
    """What a one-time link (``nidan.core.ports.RecoveryLinkRepository``) is for; each kind hashes its tokens apart."""

    #: ``nidan admin recover``: an instance administrator sets up 2FA again.
    RECOVERY = "recovery"
    #: An administrator made the account (or asked for a new password): its owner sets the password.
    PASSWORD = "password"  # noqa: S105 (a purpose, not a password)


@dataclass(frozen=True, slots=True)
class OneTimeLink:
    """A stored one-time link, as its owner's page needs to say why it no longer works."""

    user_id: int
    purpose: LinkPurpose
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class TotpCredential:
    id: int
    user_id: int
    active: bool
    key_fingerprint: str
    sealed_secret: bytes = field(repr=False)
    created_at: datetime
    activated_at: datetime | None
    last_used_step: int | None
    drift_steps: int


@dataclass(frozen=True, slots=True)
class RecoveryCodeSet:
    id: int
    user_id: int
    salt: bytes = field(repr=False)
    #: The argon2id cost the set was hashed with (``recovery.encode_parameters``).
    hash_parameters: str
    created_at: datetime
    #: (position, digest) of the codes not used yet.
    unused: tuple[tuple[int, bytes], ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: int
    user_id: int
    created_at: datetime
    expires_at: datetime
    #: When the holder last proved who they are: at sign-in, then at each step-up.
    verified_at: datetime | None
    #: ``full``, or ``enrolment`` (may only set up 2FA).
    purpose: str = "full"
    client_ip: str | None = None
    user_agent: str | None = None
    last_seen_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    id: int
    user_id: int
    expires_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class ClockObservation:
    observed_at: datetime
    offset_seconds: int
    context: str


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who is on the other end of a request, as the face saw it; recorded, never trusted for decisions here."""

    ip: str | None = None
    user_agent: str | None = None
    #: The request's correlation id, so audit events and support reports meet.
    correlation_id: str | None = None


class ThrottleScope(StrEnum):
    """What a failure counter is kept for."""

    #: A user's second step (codes at sign-in, codes and password at step-up): key is the user id.
    SECOND_FACTOR = "second_factor"
    #: Passwords for one username from one address: key is ``hex(HMAC(username_key))|ip`` (``throttling.name_key``).
    PASSWORD = "password"  # noqa: S105 (a scope name, not a password)
    #: Passwords from one address, whatever the username: key is the ip.
    PASSWORD_FROM_IP = "password_ip"  # noqa: S105
    #: Passwords and tokens at the HTTP Basic gate for one username from one address (Git clients retry a stale
    #: stored password on their own: kept apart, so they never block their owner's web sign-in).
    GATE = "gate"
    #: The same at the gate from one address, whatever the username.
    GATE_FROM_IP = "gate_ip"


@dataclass(frozen=True, slots=True)
class ClockSync:
    """What the operating system says about its clock: ``synchronised`` is ``None`` when nothing could tell."""

    synchronised: bool | None
    #: Which source answered (``timedatectl``, ``chronyc tracking``, ...), or what was tried.
    source: str
    detail: str = ""
