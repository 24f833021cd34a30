"""Step-up re-verification ("sudo mode"): a signed-in person proves again who they are before a sensitive action.

Rules, in the order they run:

1. The session must be valid.
2. A user with a second factor must use it (any method the second-step engine offers them): a stolen password
   alone never unlocks settings. A user without one confirms with their password.
3. Every attempt passes the backoff of the user's second step first (the same counter as sign-in's codes): while
   blocked it is refused with ``RateLimited`` before anything is checked.
4. On success, in one transaction: the code is spent (by the engine, ``second_step.prove``), the counter reset,
   the old session revoked and a brand-new session opened with ``verified_at`` = now. The caller gets the new
   token; the old one stops working, so a token seen before the step-up (in a log, a shared screen) never
   carries the fresh verification.
"""

from __future__ import annotations

from typing import Literal

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, User
from nidan.core.ports import UnitOfWork
from nidan.core.second_step import FactorCheck, Option, Purpose
from nidan.errors import AuthenticationRequired, InvalidCredentials, MethodNotAllowed, MethodNotAvailable, NidanError
from nidan.services import audit, second_step, signin, throttling
from nidan.services.context import ServiceContext
from nidan.texts import _

Password = Literal["password"]
#: What a person can confirm with at step-up.
ReauthMethod = Method | Password
PASSWORD: Password = "password"  # noqa: S105 (a method name, not a password)

SECOND_FACTOR_REQUIRED = _(
    "Your account has two-step verification: confirm with a code from your authenticator app or a recovery code."
)
PASSWORD_REQUIRED = _("Two-step verification is off for your account: confirm with your password.")


def methods(ctx: ServiceContext, user: User) -> list[ReauthMethod]:
    """How this user can confirm it is them: their second factors, or their password when they have none."""
    with ctx.uow() as uow:
        available: list[ReauthMethod] = list(second_step.methods_on_offer(ctx, uow, user))
    return available or [PASSWORD]


def options(ctx: ServiceContext, user: User) -> list[Option]:
    """The second-step options a step-up offers the user, their default first; none: they confirm with their
    password."""
    with ctx.uow() as uow:
        return second_step.options(ctx, uow, user)


def default_choices(ctx: ServiceContext, user: User) -> list[Option]:
    """The options the user may make their default (what sign-in offers first): not the fallbacks."""
    defaultable = set(second_step.defaultable_methods())
    return [option for option in options(ctx, user) if option.method in defaultable]


def reauthenticate(
    ctx: ServiceContext, *, session_token: str, method: ReauthMethod, secret: str, client: ClientInfo
) -> signin.Authenticated:
    """Verify ``secret`` by ``method`` for the session's user; return a new, freshly verified session."""
    session = signin.full_session(ctx, session_token)
    user = session.user
    allowed = methods(ctx, user)
    if method not in allowed:
        if PASSWORD in allowed:
            raise MethodNotAvailable(PASSWORD_REQUIRED)
        if method == PASSWORD:
            raise MethodNotAvailable(SECOND_FACTOR_REQUIRED)
        with ctx.uow() as uow:
            if method not in second_step.allowed(uow, user.id):
                raise MethodNotAllowed()
        raise MethodNotAvailable()
    step = _StepUp(ctx, ctx.hash_token(session_token, signin.SESSION_PURPOSE), client)
    if method == PASSWORD:
        return _with_password(ctx, user, secret, step)
    attempt = second_step.Attempt(Purpose.STEP_UP, client)
    outcome = second_step.prove(ctx, attempt, user_id=user.id, method=method, code=secret, step=step)
    if isinstance(outcome, second_step.Refused):
        raise outcome.error
    return outcome


class _StepUp:
    """A step-up's pass: the old session is revoked and a new one, verified now, opened in its place (of two
    step-ups on one session only one opens a new session)."""

    def __init__(self, ctx: ServiceContext, old_hash: bytes, client: ClientInfo) -> None:
        self._ctx = ctx
        self._old_hash = old_hash
        self.client = client

    def claim(self, uow: UnitOfWork) -> NidanError | None:
        return None

    def replace_session(self, uow: UnitOfWork, user: User) -> signin.Authenticated:
        if not uow.sessions.revoke(self._old_hash, self._ctx.clock.now()):
            raise AuthenticationRequired()
        return signin.Authenticated(signin.open_session(self._ctx, uow, user, self.client, sign_in=False), user)

    def passed(self, uow: UnitOfWork, user: User, result: FactorCheck) -> signin.Authenticated:
        replaced = self.replace_session(uow, user)
        second_step.record_success(self._ctx, uow, user, result, EventType.STEP_UP_SUCCEEDED, self.client)
        return replaced


def _with_password(ctx: ServiceContext, user: User, password: str, step: _StepUp) -> signin.Authenticated:
    """A user without a second factor confirms with their password, under the same backoff as codes; its argon2id
    runs with no transaction open."""
    with ctx.uow() as uow:
        subject = throttling.second_factor_of(ctx, uow, user.id)
    turn = throttling.take_turn_now(ctx, [subject])
    settled = False
    try:
        matched = ctx.passwords.verify(user.password_hash, password)
        with ctx.uow() as uow:
            confirmed: dict[str, Detail] = {"method": PASSWORD}
            if not matched:
                throttling.record_escalations(ctx, uow, turn, step.client, user)
                audit.record(
                    ctx, uow, EventType.STEP_UP_FAILED, client=step.client, actor=user, subject=user, details=confirmed
                )
                uow.commit()
                settled = True
                raise InvalidCredentials(_("That password is not correct. Enter the password you sign in with."))
            throttling.settle_success(ctx, uow, turn)
            replaced = step.replace_session(uow, user)
            audit.record(
                ctx, uow, EventType.STEP_UP_SUCCEEDED, client=step.client, actor=user, subject=user, details=confirmed
            )
            uow.commit()
            settled = True
            return replaced
    except BaseException:
        if not settled:
            throttling.abandon(ctx, turn)
        raise
