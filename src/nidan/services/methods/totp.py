"""The authenticator app (TOTP, RFC 6238) as a second-step method: checked in microseconds under the user's lock."""

from __future__ import annotations

from weakref import WeakKeyDictionary

from nidan.core import totp
from nidan.core.models import ClientInfo, Method, TotpCredential, User
from nidan.core.ports import SecondStep, UnitOfWork
from nidan.core.sealing import KeyRing, Sealed
from nidan.core.second_step import Details, FactorCheck, Option
from nidan.services.context import ServiceContext
from nidan.texts import _

#: A TOTP seed's size in bytes (160 bits, RFC 4226's recommendation); a stand-in authenticator's too.
KEY_BYTES = 20
#: No user or authenticator has this id (they count from 1).
_NOBODY = 0
#: Each key ring's stand-in authenticator (see ``stand_in_authenticator``).
_STAND_INS: WeakKeyDictionary[KeyRing, TotpCredential] = WeakKeyDictionary()


def totp_context(user_id: int) -> str:
    """Associated data binding a sealed TOTP seed to its owner."""
    return f"totp:{user_id}"


class AuthenticatorApp:
    method = Method.TOTP
    needs_challenge = False
    backup = False
    slow = False

    def options(self, ctx: ServiceContext, uow: UnitOfWork, user: User) -> list[Option]:
        if uow.totp.get_active(user.id) is None:
            return []
        return [Option(Method.TOTP, Method.TOTP.value, _("Authenticator app"))]

    def prepare(self, ctx: ServiceContext, user_id: int | None, code: str) -> object:
        return None

    def check(
        self, ctx: ServiceContext, uow: UnitOfWork, found: SecondStep, code: str, prepared: object
    ) -> FactorCheck | None:
        if found.authenticator is None:
            self.simulate(ctx, code)
            return None
        return check_totp(ctx, uow, found.authenticator, code)

    def record_use(
        self,
        ctx: ServiceContext,
        uow: UnitOfWork,
        user: User,
        result: FactorCheck,
        client: ClientInfo,
        details: Details,
    ) -> None:
        """A code records nothing of its own: the step is spent in the authenticator's row."""

    def simulate(self, ctx: ServiceContext, code: str) -> None:
        """The unseal and every HMAC of a wrong code, on an authenticator that is nobody's."""
        _check_code(ctx, stand_in_authenticator(ctx), code)


def check_totp(ctx: ServiceContext, uow: UnitOfWork, credential: TotpCredential, code: str) -> FactorCheck:
    """Check ``code`` against ``credential`` and spend its time step (a conditional UPDATE: once)."""
    checked = _check_code(ctx, credential, code)
    found = checked.match
    if found is not None and uow.totp.consume_step(credential.id, found.step, found.drift):
        return FactorCheck(ok=True, method=Method.TOTP)
    replayed = found is not None or checked.replayed
    offset = None if replayed else checked.clock_offset_seconds
    return FactorCheck(ok=False, method=Method.TOTP, replayed=replayed, clock_offset_seconds=offset)


def _check_code(ctx: ServiceContext, credential: TotpCredential, code: str) -> totp.CodeCheck:
    key = ctx.keyring.unseal(
        Sealed(credential.key_fingerprint, credential.sealed_secret), context=totp_context(credential.user_id)
    )
    unix_time = ctx.clock.now().timestamp()
    return totp.check_code(key, code, unix_time, drift=credential.drift_steps, last_used_step=credential.last_used_step)


def stand_in_authenticator(ctx: ServiceContext) -> TotpCredential:
    """An authenticator that is nobody's, checked in place of a missing one: a random key sealed with the key ring
    exactly as enrollment seals a real one (so unsealing it costs the same), used before (as every activated one
    has been) and never stored. Made once per key ring, i.e. once per process."""
    stand_in = _STAND_INS.get(ctx.keyring)
    if stand_in is None:
        now = ctx.clock.now()
        sealed = ctx.keyring.seal(
            ctx.random_bytes(KEY_BYTES), context=totp_context(_NOBODY), random_bytes=ctx.random_bytes
        )
        stand_in = _STAND_INS[ctx.keyring] = TotpCredential(
            id=_NOBODY,
            user_id=_NOBODY,
            active=True,
            key_fingerprint=sealed.key_fingerprint,
            sealed_secret=sealed.blob,
            created_at=now,
            activated_at=now,
            last_used_step=totp.time_step(now.timestamp()),
            drift_steps=0,
        )
    return stand_in
