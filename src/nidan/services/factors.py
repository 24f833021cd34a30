"""New sets of recovery codes: hashed before any write opens (sixteen argon2ids), stored in the caller's write.

Checking a code is the second-step engine's (``services/second_step.py`` with ``services/methods``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nidan.core import recovery
from nidan.core.ports import UnitOfWork
from nidan.services.context import ServiceContext


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
