"""Recovery codes as a second-step method: a fallback beside a real method, each code once, checked by argon2id.

A code costs an argon2id: it is matched (``prepare``) against the set read beforehand with no transaction open —
never while SQLite's writer turn or a row lock is held — and the write only spends the matched code by one
conditional UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass

from nidan.core import recovery
from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, RecoveryCodeSet, User
from nidan.core.policy import combined
from nidan.core.ports import SecondStep, UnitOfWork
from nidan.core.second_step import Details, FactorCheck, Option
from nidan.services import audit
from nidan.services.context import ServiceContext
from nidan.texts import ngettext

#: Hashed in place of a code that cannot be one, so that refusing it costs the argon2id a real check costs.
_STAND_IN_CODE = "0" * recovery.CODE_LENGTH
_STAND_IN_SALT = bytes(recovery.SALT_BYTES)
#: No user has this id (they count from 1): reads for a name nobody has find nothing with it.
_NOBODY = 0


@dataclass(frozen=True, slots=True)
class RecoveryCodeMatch:
    """A typed code compared with a set read earlier: whether codes were on offer, and the unused code it equals,
    if any. Nothing is spent yet; ``spend_recovery_code`` does that, in the caller's write."""

    offered: bool = False
    set_id: int | None = None
    position: int | None = None


class RecoveryCodes:
    method = Method.RECOVERY_CODE
    needs_challenge = False
    backup = True
    slow = True

    def options(self, ctx: ServiceContext, uow: UnitOfWork, user: User) -> list[Option]:
        left = uow.recovery_codes.count_unused(user.id)
        if not left:
            return []
        label = ngettext("A recovery code (%(n)d left)", "A recovery code (%(n)d left)", left)
        return [Option(Method.RECOVERY_CODE, Method.RECOVERY_CODE.value, label)]

    def prepare(self, ctx: ServiceContext, user_id: int | None, code: str) -> object:
        with ctx.uow() as uow:
            offered = recovery_codes_on_offer(uow, user_id if user_id is not None else _NOBODY)
        return match_recovery_code(ctx, offered, code)

    def check(
        self, ctx: ServiceContext, uow: UnitOfWork, found: SecondStep, code: str, prepared: object
    ) -> FactorCheck | None:
        if not isinstance(prepared, RecoveryCodeMatch):
            raise TypeError("a recovery code is matched by prepare() before the write")
        if not prepared.offered:
            return None
        return spend_recovery_code(ctx, uow, prepared)

    def record_use(
        self,
        ctx: ServiceContext,
        uow: UnitOfWork,
        user: User,
        result: FactorCheck,
        client: ClientInfo,
        details: Details,
    ) -> None:
        position: dict[str, Detail] = {"position": result.position, **details}
        audit.record(ctx, uow, EventType.RECOVERY_CODE_USED, client=client, actor=user, subject=user, details=position)

    def simulate(self, ctx: ServiceContext, code: str) -> None:
        match_recovery_code(ctx, None, code)


def recovery_codes_on_offer(uow: UnitOfWork, user_id: int) -> RecoveryCodeSet | None:
    """The user's recovery codes when they may use them (beside an authenticator, allowed by their organisations),
    read with the same statements whoever ``user_id`` is (with codes, without, without 2FA, nobody): the time it
    takes tells nothing."""
    has_totp = uow.totp.get_active(user_id) is not None
    allowed = Method.RECOVERY_CODE in combined(uow.organisations.policies_of(user_id)).allowed_methods
    current = uow.recovery_codes.get_current(user_id)
    return current if has_totp and allowed and current is not None and current.unused else None


def match_recovery_code(ctx: ServiceContext, current: RecoveryCodeSet | None, code: str) -> RecoveryCodeMatch:
    """Compare ``code`` with ``current``, the user's set read already (``None``: none on offer), with no transaction
    open: one argon2id whatever the code and whether there is a set, so a malformed code or a name without recovery
    codes is not answered sooner than a wrong code of a user who has them."""
    normalized = recovery.normalize(code)
    if normalized is None or current is None or not current.unused:
        salt = current.salt if current is not None else _STAND_IN_SALT
        params = recovery.decode_parameters(current.hash_parameters) if current is not None else ctx.recovery_hash
        recovery.digest(_STAND_IN_CODE, salt, params)
        return RecoveryCodeMatch(offered=current is not None and bool(current.unused))
    candidate = recovery.digest(normalized, current.salt, recovery.decode_parameters(current.hash_parameters))
    return RecoveryCodeMatch(True, current.id, recovery.find_position(candidate, current.unused))


def spend_recovery_code(ctx: ServiceContext, uow: UnitOfWork, matched: RecoveryCodeMatch) -> FactorCheck:
    """Spend the code ``matched`` found, by one conditional UPDATE in ``uow``: of requests racing with one code,
    exactly one spends it; a code used meanwhile, or of a set replaced meanwhile, is refused as replayed."""
    if matched.set_id is not None and matched.position is not None:
        if uow.recovery_codes.consume(matched.set_id, matched.position, ctx.clock.now()):
            return FactorCheck(ok=True, method=Method.RECOVERY_CODE, position=matched.position)
        return FactorCheck(ok=False, method=Method.RECOVERY_CODE, replayed=True)
    return FactorCheck(ok=False, method=Method.RECOVERY_CODE)
