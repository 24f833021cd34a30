"""Second-factor management by the signed-in user: authenticator app, recovery codes, turning 2FA off.

Each change here forgets the user's remembered browsers in its own transaction (``devices.forget_all``): a browser
remembered under the old second factor must not skip the new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from nidan.core import otpauth, totp
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, ClockObservation, User
from nidan.core.policy import combined
from nidan.core.ports import UnitOfWork
from nidan.core.sealing import Sealed
from nidan.errors import (
    ClockSkewDetected,
    InvalidCode,
    TotpEnrollmentNotStarted,
    TotpNotEnabled,
    TwoFactorRequiredByPolicy,
)
from nidan.services import audit, devices, factors
from nidan.services.context import ServiceContext
from nidan.services.methods.totp import KEY_BYTES, totp_context
from nidan.texts import _

#: RFC 4226 §4 asks for a shared secret of at least 128 bits and recommends 160.
OBSERVATION_WINDOW = timedelta(days=30)
_CODES_COME_WITH_2FA = _("Turn on two-step verification first; recovery codes come with it.")


@dataclass(frozen=True, slots=True)
class SecurityState:
    totp_enabled: bool
    totp_activated_at: datetime | None
    totp_enrollment_pending: bool
    recovery_codes_remaining: int
    clock_observations: list[ClockObservation]
    #: One of the user's organisations requires 2FA of them (so it cannot be turned off).
    two_factor_required: bool = False
    #: Required and not set up: the end of the grace period, once it started (at a sign-in).
    two_factor_due: datetime | None = None
    #: An administrator asked the user to set up their methods again.
    registration_required: bool = False


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    secret: str = field(repr=False)
    otpauth_uri: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class TotpActivation:
    #: A new recovery-code set when two-step verification was just turned on; empty when an app was replaced.
    recovery_codes: list[str] = field(repr=False)
    replaced_previous: bool


def security_state(ctx: ServiceContext, user_id: int) -> SecurityState:
    with ctx.uow() as uow:
        active = uow.totp.get_active(user_id)
        pending = uow.totp.get_pending(user_id)
        remaining = uow.recovery_codes.count_unused(user_id) if active else 0
        observations = list(uow.clock_observations.recent(user_id, ctx.clock.now() - OBSERVATION_WINDOW))
        requirement = combined(uow.organisations.policies_of(user_id))
        user = uow.users.get(user_id)
    grace_started = user.two_factor_grace_started_at if user else None
    due = None
    if requirement.required and active is None and grace_started is not None:
        due = grace_started + timedelta(days=requirement.grace_period_days)
    return SecurityState(
        totp_enabled=active is not None,
        totp_activated_at=active.activated_at if active else None,
        totp_enrollment_pending=pending is not None,
        recovery_codes_remaining=remaining,
        clock_observations=observations,
        two_factor_required=requirement.required,
        two_factor_due=due,
        registration_required=user is not None and user.registration_required_at is not None,
    )


def start_totp(ctx: ServiceContext, user: User) -> TotpEnrollment:
    """A new pending authenticator; an active one keeps working until the new one is verified."""
    key = ctx.random_bytes(KEY_BYTES)
    sealed = ctx.keyring.seal(key, context=totp_context(user.id), random_bytes=ctx.random_bytes)
    with ctx.uow() as uow:
        uow.totp.replace_pending(user.id, sealed, ctx.clock.now())
        uow.commit()
    return TotpEnrollment(
        secret=otpauth.b32encode(key),
        otpauth_uri=otpauth.otpauth_uri(key=key, account=user.username, issuer=ctx.issuer),
    )


def activate_totp(ctx: ServiceContext, user: User, code: str, *, client: ClientInfo) -> TotpActivation:
    """Verify the pending authenticator's code, make it the only one, and hand out recovery codes if new to 2FA.

    The code is checked and the need for recovery codes read first; their sixteen argon2ids are computed with no
    transaction open; then one short write activates the app and stores them. Audited as ``totp.enrolled`` (2FA
    turned on) or ``totp.changed`` (an app replaced)."""
    pending_id, found, wants_codes = _check_pending(ctx, user.id, code)
    fresh = factors.new_recovery_codes(ctx) if wants_codes else None
    activated = _activate(ctx, user, pending_id, found, fresh, client)
    if activated is None:
        # Codes fell due between the read and the write (an administrator asked the user to register again
        # meanwhile): that write was rolled back; they are computed now, outside it, and the write is made again.
        activated = _activate(ctx, user, pending_id, found, factors.new_recovery_codes(ctx), client)
    assert activated is not None
    return activated


def _check_pending(ctx: ServiceContext, user_id: int, code: str) -> tuple[int, totp.TotpMatch, bool]:
    """The pending authenticator's id and the step ``code`` matched on it (read only), and whether activating it
    will hand out recovery codes (no app active yet, or registering again)."""
    with ctx.uow() as uow:
        pending = uow.totp.get_pending(user_id)
        if pending is None:
            raise TotpEnrollmentNotStarted()
        key = ctx.keyring.unseal(Sealed(pending.key_fingerprint, pending.sealed_secret), context=totp_context(user_id))
        unix_time = ctx.clock.now().timestamp()
        found = totp.match_code(key, code, unix_time)
        if found is None:
            # The user is signed in and proving a brand-new secret: telling them their clock is off is safe here.
            offset = totp.find_clock_offset(key, code, unix_time)
            raise (
                ClockSkewDetected(offset)
                if offset is not None
                else InvalidCode(
                    _("That code is not valid. Enter the 6-digit code your authenticator app shows for nidan now.")
                )
            )
        return pending.id, found, _renews_codes(uow, user_id, replacing=uow.totp.get_active(user_id) is not None)


def _renews_codes(uow: UnitOfWork, user_id: int, *, replacing: bool) -> bool:
    """New recovery codes come with turning 2FA on, and with registering again (an administrator asked): that
    renews everything, the printed codes too. Replacing the app alone keeps them."""
    current = uow.users.get(user_id)
    return not replacing or (current is not None and current.registration_required_at is not None)


def _activate(
    ctx: ServiceContext,
    user: User,
    pending_id: int,
    found: totp.TotpMatch,
    fresh: factors.NewRecoveryCodes | None,
    client: ClientInfo,
) -> TotpActivation | None:
    """The write: the pending app becomes the only one, with ``fresh`` codes if they are due. ``None`` (rolled
    back) when codes are due and none were computed: the state changed since ``_check_pending`` read it."""
    user_id = user.id
    with ctx.uow() as uow:
        replaced = uow.totp.delete_active(user_id) > 0
        if not uow.totp.activate(pending_id, found.step, found.drift, ctx.clock.now()):
            raise TotpEnrollmentNotStarted()
        if not _renews_codes(uow, user_id, replacing=replaced):
            codes: list[str] = []
        elif fresh is None:
            return None
        else:
            codes = factors.store_recovery_codes(ctx, uow, user_id, fresh)
        uow.users.registered(user_id)  # no grace period runs, no registration is asked for any more
        forgotten = devices.forget_all(ctx, uow, user_id)
        event = EventType.TOTP_CHANGED if replaced else EventType.TOTP_ENROLLED
        details: dict[str, Detail] = {"recovery_codes": len(codes)} if codes else {}
        details.update(devices.forgotten_details(forgotten))
        audit.record(ctx, uow, event, client=client, actor=user, subject=user, details=details)
        uow.commit()
    return TotpActivation(recovery_codes=codes, replaced_previous=replaced)


def disable_totp(ctx: ServiceContext, user: User, *, client: ClientInfo) -> None:
    """Turn two-step verification off: the authenticator and every recovery code stop working (``totp.removed``)."""
    with ctx.uow() as uow:
        if uow.totp.get_active(user.id) is None:
            raise TotpNotEnabled()
        if combined(uow.organisations.policies_of(user.id)).required:
            raise TwoFactorRequiredByPolicy()
        uow.totp.delete_all(user.id)
        uow.recovery_codes.revoke_all(user.id, ctx.clock.now())
        details = devices.forgotten_details(devices.forget_all(ctx, uow, user.id))
        audit.record(ctx, uow, EventType.TOTP_REMOVED, client=client, actor=user, subject=user, details=details)
        uow.commit()


def regenerate_recovery_codes(ctx: ServiceContext, user: User, *, client: ClientInfo) -> list[str]:
    """A new set of recovery codes; the whole previous set stops working in the same transaction (audited)."""
    with ctx.uow() as uow:
        if uow.totp.get_active(user.id) is None:
            raise TotpNotEnabled(_CODES_COME_WITH_2FA)
    fresh = factors.new_recovery_codes(ctx)  # sixteen argon2ids, with no transaction open
    with ctx.uow() as uow:
        if uow.totp.get_active(user.id) is None:  # turned off meanwhile
            raise TotpNotEnabled(_CODES_COME_WITH_2FA)
        codes = factors.store_recovery_codes(ctx, uow, user.id, fresh)
        details: dict[str, Detail] = {"recovery_codes": len(codes)}
        details.update(devices.forgotten_details(devices.forget_all(ctx, uow, user.id)))
        audit.record(
            ctx, uow, EventType.RECOVERY_CODES_REGENERATED, client=client, actor=user, subject=user, details=details
        )
        uow.commit()
    return codes
