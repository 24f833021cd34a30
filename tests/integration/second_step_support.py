"""The second-step engine's suite, as parameters: every method, proved for every purpose.

A later method (a security key, a phone) adds a ``MethodCase`` to ``METHODS``; the suite (``test_second_step_engine``)
runs it through sign-in, step-up and the verify API unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from nidan.core import recovery
from nidan.core.audit import EventType
from nidan.core.models import Method, User
from nidan.errors import NidanError
from nidan.services import signin, stepup, verify
from nidan.services.context import ServiceContext
from nidan.services.verify import VerifyCall
from tests.helpers import PASSWORD, code_at
from tests.integration.enforcement_support import CLIENT, turn_on_totp
from tests.integration.verify_together_support import api_key

#: One try: the method and the code; answers what passing gave, or raises the refusal.
Try = Callable[[Method, str], object]


@dataclass
class Credentials:
    """What a user set up, as a test needs it."""

    secret: str
    recovery_codes: list[str]
    spent: int = 0


@dataclass(frozen=True)
class MethodCase:
    method: Method
    #: A code that passes now (each call a fresh one where the method has several).
    good: Callable[[ServiceContext, Credentials], str]
    #: ``count`` codes that all pass, for racing correct attempts; ``None``: the method has one at a time.
    distinct: Callable[[Credentials, int], list[str]] | None = None
    #: Whether a code used before is told apart from a wrong one (a recovery code once used is not kept to compare).
    tells_replay: bool = True

    def wrong(self, ctx: ServiceContext, creds: Credentials) -> str:
        if self.method is Method.TOTP:
            right = code_at(creds.secret, ctx)
            return f"{(int(right) + 500_000) % 1_000_000:06d}"
        return recovery.generate_codes(os.urandom)[0]  # well-formed, and nobody's


def _next_recovery_code(ctx: ServiceContext, creds: Credentials) -> str:
    creds.spent += 1
    return creds.recovery_codes[creds.spent - 1]


def _distinct_recovery_codes(creds: Credentials, count: int) -> list[str]:
    codes = creds.recovery_codes[creds.spent : creds.spent + count]
    creds.spent += count
    return codes


METHODS = [
    MethodCase(Method.TOTP, lambda ctx, creds: code_at(creds.secret, ctx)),
    MethodCase(Method.RECOVERY_CODE, _next_recovery_code, _distinct_recovery_codes, tells_replay=False),
]


def set_up(ctx: ServiceContext, user: User) -> Credentials:
    secret, codes = turn_on_totp(ctx, user)
    return Credentials(secret, codes)


@dataclass(frozen=True)
class PurposeCase:
    name: str
    #: A fresh attempt for ``user`` (a sign-in token, a session, an application), ready to try.
    begin: Callable[[ServiceContext, User], Try]
    succeeded: EventType
    failed: EventType
    #: Whether a method the user has not set up is said to be so (an application is told "wrong code" instead).
    tells_what_is_set_up: bool = True
    extra: dict[str, str] = field(default_factory=dict)


def _sign_in(ctx: ServiceContext, user: User) -> Try:
    first = signin.login(ctx, username=user.username, password=PASSWORD, client=CLIENT)
    assert isinstance(first, signin.MfaRequired)
    token = first.mfa_token

    def attempt(method: Method, code: str) -> object:
        return signin.complete_mfa(ctx, mfa_token=token, method=method, code=code, client=CLIENT)

    return attempt


def _step_up(ctx: ServiceContext, user: User) -> Try:
    with ctx.uow() as uow:
        token = signin.open_session(ctx, uow, user, CLIENT)
        uow.commit()

    def attempt(method: Method, code: str) -> object:
        return stepup.reauthenticate(ctx, session_token=token, method=method, secret=code, client=CLIENT)

    return attempt


def _verify(ctx: ServiceContext, user: User) -> Try:
    key = api_key(ctx, f"app-{os.urandom(4).hex()}")

    def attempt(method: Method, code: str) -> object:
        result = verify.verify_call(ctx, VerifyCall(key, user.username, code, method, CLIENT))
        if not result.ok:
            assert isinstance(result.error, NidanError)
            raise result.error
        return result

    return attempt


PURPOSES = [
    PurposeCase("sign_in", _sign_in, EventType.SIGN_IN_SUCCEEDED, EventType.SIGN_IN_SECOND_FACTOR_FAILED),
    PurposeCase("step_up", _step_up, EventType.STEP_UP_SUCCEEDED, EventType.STEP_UP_FAILED),
    PurposeCase("verify", _verify, EventType.VERIFY_SUCCEEDED, EventType.VERIFY_FAILED, tells_what_is_set_up=False),
]
