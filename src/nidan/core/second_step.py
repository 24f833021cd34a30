"""What a second-step method is to the engine (``services/second_step.py``): a small protocol each method implements.

The engine owns everything the methods share — which ones a user may use, the backoff, the transaction, the audit
trail, clock observations and what a success opens — and asks a method only what is its own: what the user has set
up, how a code is checked and spent, and what equal work to do for a name that has no such method. Adding a method
(a security key, a phone) is one plug-in registered in ``services/methods``; sign-in, step-up and the verify API do
not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from nidan.core.audit import Detail
from nidan.core.models import ClientInfo, Method, User
from nidan.core.ports import SecondStep, UnitOfWork
from nidan.texts import Text


class Purpose(StrEnum):
    """Why a second step is proved; it names the audit events and the context of clock observations."""

    SIGN_IN = "sign_in"
    STEP_UP = "step_up"
    VERIFY = "verify"


@dataclass(frozen=True, slots=True)
class FactorCheck:
    """A method's answer to one attempt, inside the write that spent it (when ``ok``)."""

    ok: bool
    method: Method
    #: A recovery code's position, for the audit trail (never the code).
    position: int | None = None
    #: The code was right but already spent.
    replayed: bool = False
    #: When a TOTP code was wrong but matches within ±15 minutes: how far the device clock seems off.
    clock_offset_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Option:
    """One thing a person can use for the second step, as a sign-in page lists it: ``id`` tells two of one method
    apart (two security keys); ``label`` names it in words, never revealing a secret (a phone number is masked)."""

    method: Method
    id: str
    label: Text


Context = TypeVar("Context", contravariant=True)
Details = Mapping[str, Detail]


class MethodPlugin(Protocol[Context]):
    """A way of proving the second step. ``Context`` is the services' context (core does not know its type)."""

    @property
    def method(self) -> Method: ...

    @property
    def needs_challenge(self) -> bool:
        """Whether something must be sent (a code by text) or asked (a key's challenge) before a check."""
        ...

    @property
    def backup(self) -> bool:
        """A fallback (recovery codes): offered only beside a method that is not one, never on its own."""
        ...

    @property
    def slow(self) -> bool:
        """Whether checking costs real time (an argon2id). A slow method is prepared with no transaction open and
        the backoff turn taken; a fast one is checked in one transaction under the user's row lock."""
        ...

    def options(self, ctx: Context, uow: UnitOfWork, user: User) -> list[Option]:
        """What of this method the user has set up and may use now (empty: nothing)."""
        ...

    def prepare(self, ctx: Context, user_id: int | None, code: str) -> object:
        """The work before the write (a slow method's hash against what it reads now), the same whether or not
        ``user_id`` (``None``: nobody) has the method. A fast method returns ``None`` at once."""
        ...

    def check(
        self, ctx: Context, uow: UnitOfWork, found: SecondStep, code: str, prepared: object
    ) -> FactorCheck | None:
        """Check ``code`` for ``found.user`` in the write ``uow`` and spend it once when right (a conditional write:
        of attempts racing with one code, exactly one passes); ``prepared`` is what ``prepare`` answered. ``None``:
        the user has not set this method up (after the same work as a wrong code)."""
        ...

    def record_use(
        self, ctx: Context, uow: UnitOfWork, user: User, result: FactorCheck, client: ClientInfo, details: Details
    ) -> None:
        """Audit what this method records of a use beyond the engine's event (a recovery code's position)."""
        ...

    def simulate(self, ctx: Context, code: str) -> None:
        """The work ``check`` does for a wrong code, for a name without the method, so its answer is not sooner."""
        ...
