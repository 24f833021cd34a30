"""Checking a second factor inside a caller's unit of work: TOTP or a recovery code, consumed atomically.

Every path that verifies a code (sign-in, step-up, the verify API) goes through ``check``, so replay protection,
drift learning and clock diagnosis are written once. A recovery code costs an argon2id: it is matched
(``match_recovery_code``) before the caller's write transaction opens, never inside it (no slow work while SQLite's
writer turn or a row lock is held); the transaction only spends the matched code by one conditional UPDATE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nidan.core import recovery, totp
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, ClockObservation, Method, RecoveryCodeSet, TotpCredential, User
from nidan.core.policy import combined
from nidan.core.ports import UnitOfWork
from nidan.core.sealing import Sealed
from nidan.services import audit
from nidan.services.context import ServiceContext


def totp_context(user_id: int) -> str:
    """Associated data binding a sealed TOTP seed to its owner."""
    return f"totp:{user_id}"


@dataclass(frozen=True, slots=True)
class FactorCheck:
    ok: bool
    method: Method
    #: A recovery code's position, for the audit trail (never the code).
    position: int | None = None
    #: The code was right but already spent.
    replayed: bool = False
    #: When a TOTP code was wrong but matches within ±15 minutes: how far the device clock seems off.
    clock_offset_seconds: int | None = None


def available_methods(uow: UnitOfWork, user_id: int) -> list[Method]:
    """The second factors the user has set up and every one of their organisations allows."""
    methods: list[Method] = []
    if uow.totp.get_active(user_id) is not None:
        methods.append(Method.TOTP)
        allowed = combined(uow.organisations.policies_of(user_id)).allowed_methods
        if Method.RECOVERY_CODE in allowed and uow.recovery_codes.count_unused(user_id) > 0:
            methods.append(Method.RECOVERY_CODE)
    return methods


def check(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user_id: int,
    method: Method,
    code: str,
    matched: RecoveryCodeMatch | None = None,
) -> FactorCheck:
    """Verify and, on success, consume ``code`` in ``uow`` (the caller commits). A recovery code was matched
    before ``uow`` opened: ``matched``, from ``match_recovery_code`` (its argon2id must not run inside a write)."""
    if method is Method.TOTP:
        return _check_totp(ctx, uow, user_id, code)
    if matched is None:
        raise ValueError("a recovery code is matched before the transaction: pass match_recovery_code's answer")
    return spend_recovery_code(ctx, uow, matched)


def _check_totp(ctx: ServiceContext, uow: UnitOfWork, user_id: int, code: str) -> FactorCheck:
    credential = uow.totp.get_active(user_id)
    if credential is None:
        return FactorCheck(ok=False, method=Method.TOTP)
    return check_totp(ctx, uow, credential, code)


def check_totp(ctx: ServiceContext, uow: UnitOfWork, credential: TotpCredential, code: str) -> FactorCheck:
    """``check`` for a caller that has read the user's active authenticator already."""
    checked = _check_code(ctx, credential, code)
    found = checked.match
    if found is not None and uow.totp.consume_step(credential.id, found.step, found.drift):
        return FactorCheck(ok=True, method=Method.TOTP)
    replayed = found is not None or checked.replayed
    offset = None if replayed else checked.clock_offset_seconds
    return FactorCheck(ok=False, method=Method.TOTP, replayed=replayed, clock_offset_seconds=offset)


def simulate_totp_check(ctx: ServiceContext, stand_in: TotpCredential, code: str) -> None:
    """The work ``check_totp`` does for a wrong code (the unseal, every HMAC) on a ``stand_in`` authenticator that
    is nobody's, for a caller that must not answer a name without one sooner; nothing is spent or answered."""
    _check_code(ctx, stand_in, code)


def _check_code(ctx: ServiceContext, credential: TotpCredential, code: str) -> totp.CodeCheck:
    key = ctx.keyring.unseal(
        Sealed(credential.key_fingerprint, credential.sealed_secret), context=totp_context(credential.user_id)
    )
    unix_time = ctx.clock.now().timestamp()
    return totp.check_code(key, code, unix_time, drift=credential.drift_steps, last_used_step=credential.last_used_step)


def recovery_codes_on_offer(uow: UnitOfWork, user_id: int) -> RecoveryCodeSet | None:
    """The user's recovery codes when they may use them (``available_methods``' rule), read with the same
    statements whoever ``user_id`` is (with codes, without, without 2FA, nobody): the time it takes tells nothing."""
    has_totp = uow.totp.get_active(user_id) is not None
    allowed = Method.RECOVERY_CODE in combined(uow.organisations.policies_of(user_id)).allowed_methods
    current = uow.recovery_codes.get_current(user_id)
    return current if has_totp and allowed and current is not None and current.unused else None


#: Hashed in place of a code that cannot be one, so that refusing it costs the argon2id a real check costs.
_STAND_IN_CODE = "0" * recovery.CODE_LENGTH
_STAND_IN_SALT = bytes(recovery.SALT_BYTES)


@dataclass(frozen=True, slots=True)
class RecoveryCodeMatch:
    """A typed recovery code compared with a set read earlier: the unused code it equals, if any. Nothing is spent
    yet; ``spend_recovery_code`` does that, in the caller's write."""

    set_id: int | None = None
    position: int | None = None


NO_MATCH = RecoveryCodeMatch()


def match_recovery_code(ctx: ServiceContext, current: RecoveryCodeSet | None, code: str) -> RecoveryCodeMatch:
    """Compare ``code`` with ``current``, the user's set read already (``None``: none on offer), with no transaction
    open: one argon2id whatever the code and whether there is a set, so a malformed code or a name without recovery
    codes is not answered sooner than a wrong code of a user who has them."""
    normalized = recovery.normalize(code)
    if normalized is None or current is None or not current.unused:
        salt = current.salt if current is not None else _STAND_IN_SALT
        params = recovery.decode_parameters(current.hash_parameters) if current is not None else ctx.recovery_hash
        recovery.digest(_STAND_IN_CODE, salt, params)
        return NO_MATCH
    candidate = recovery.digest(normalized, current.salt, recovery.decode_parameters(current.hash_parameters))
    return RecoveryCodeMatch(current.id, recovery.find_position(candidate, current.unused))


def spend_recovery_code(ctx: ServiceContext, uow: UnitOfWork, matched: RecoveryCodeMatch) -> FactorCheck:
    """Spend the code ``matched`` found, by one conditional UPDATE in ``uow``: of requests racing with one code,
    exactly one spends it; a code used meanwhile, or of a set replaced meanwhile, is refused as replayed."""
    if matched.set_id is not None and matched.position is not None:
        if uow.recovery_codes.consume(matched.set_id, matched.position, ctx.clock.now()):
            return FactorCheck(ok=True, method=Method.RECOVERY_CODE, position=matched.position)
        return FactorCheck(ok=False, method=Method.RECOVERY_CODE, replayed=True)
    return FactorCheck(ok=False, method=Method.RECOVERY_CODE)


def record_clock_observation(
    ctx: ServiceContext, uow: UnitOfWork, user_id: int, result: FactorCheck, context: str = "sign_in"
) -> None:
    if result.clock_offset_seconds is not None:
        uow.clock_observations.add(user_id, ClockObservation(ctx.clock.now(), result.clock_offset_seconds, context))


def failure_details(result: FactorCheck) -> dict[str, Detail]:
    """What the audit log keeps of a failed code: the method and what kind of wrong (never the code)."""
    details: dict[str, Detail] = {"method": result.method.value, "replayed": result.replayed}
    if result.clock_offset_seconds is not None:
        details["clock_offset_seconds"] = result.clock_offset_seconds
    return details


def record_success(
    ctx: ServiceContext,
    uow: UnitOfWork,
    user: User,
    result: FactorCheck,
    event: EventType,
    client: ClientInfo,
    details: Mapping[str, Detail] | None = None,
) -> None:
    """Audit a successful second factor: a recovery code by its position (never the code), then ``event`` with
    the method and ``details`` (e.g. which application asked)."""
    if result.method is Method.RECOVERY_CODE:
        position: dict[str, Detail] = {"position": result.position, **(details or {})}
        audit.record(ctx, uow, EventType.RECOVERY_CODE_USED, client=client, actor=user, subject=user, details=position)
    method: dict[str, Detail] = {"method": result.method.value, **(details or {})}
    audit.record(ctx, uow, event, client=client, actor=user, subject=user, details=method)


@dataclass(frozen=True, slots=True)
class NewRecoveryCodes:
    """A set of recovery codes, hashed and not stored yet (``store_recovery_codes``)."""

    codes: list[str] = field(repr=False)
    salt: bytes = field(repr=False)
    digests: list[bytes] = field(repr=False)
    parameters: str


def new_recovery_codes(ctx: ServiceContext) -> NewRecoveryCodes:
    """A new set, hashed here: sixteen argon2ids (a quarter of a second), so before any write transaction opens."""
    codes = recovery.generate_codes(ctx.random_bytes)
    salt = ctx.random_bytes(recovery.SALT_BYTES)
    digests = [recovery.digest(recovery.normalize(c) or "", salt, ctx.recovery_hash) for c in codes]
    return NewRecoveryCodes(codes, salt, digests, recovery.encode_parameters(ctx.recovery_hash))


def store_recovery_codes(ctx: ServiceContext, uow: UnitOfWork, user_id: int, new: NewRecoveryCodes) -> list[str]:
    """Replace the user's recovery codes with ``new``, in ``uow``; returns the codes to show once."""
    uow.recovery_codes.replace(user_id, new.salt, new.parameters, new.digests, ctx.clock.now())
    return new.codes
