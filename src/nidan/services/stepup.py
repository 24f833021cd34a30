"""Step-up re-verification ("sudo mode"): a signed-in person proves again who they are before a sensitive action.

Rules, in the order they run:

1. The session must be valid.
2. A user with a second factor must use it (a code from the authenticator app or a recovery code): a stolen
   password alone never unlocks settings. A user without one confirms with their password.
3. Every attempt passes the backoff of the user's second step first (the same counter as sign-in's codes): while
   blocked it is refused with ``RateLimited`` before anything is checked.
4. On success, in one transaction: the code is spent, the counter reset, the old session revoked and a brand-new
   session opened with ``verified_at`` = now. The caller gets the new token; the old one stops working, so a
   token seen before the step-up (in a log, a shared screen) never carries the fresh verification.
"""

from __future__ import annotations

from typing import Literal

from nidan.core.audit import Detail, EventType
from nidan.core.models import ClientInfo, Method, User
from nidan.core.tokens import new_token
from nidan.errors import AuthenticationRequired, InvalidCode, InvalidCredentials, MethodNotAvailable
from nidan.services import audit, factors, signin, throttling
from nidan.services.context import ServiceContext

Password = Literal["password"]
#: What a person can confirm with at step-up.
ReauthMethod = Method | Password
PASSWORD: Password = "password"  # noqa: S105 (a method name, not a password)

SECOND_FACTOR_REQUIRED = (
    "Your account has two-step verification: confirm with a code from your authenticator app or a recovery code."
)
PASSWORD_REQUIRED = "Two-step verification is off for your account: confirm with your password."  # noqa: S105


def methods(ctx: ServiceContext, user_id: int) -> list[ReauthMethod]:
    """How this user can confirm it is them: their second factors, or their password when they have none."""
    with ctx.uow() as uow:
        available: list[ReauthMethod] = list(factors.available_methods(uow, user_id))
    return available or [PASSWORD]


def reauthenticate(
    ctx: ServiceContext, *, session_token: str, method: ReauthMethod, secret: str, client: ClientInfo
) -> signin.Authenticated:
    """Verify ``secret`` by ``method`` for the session's user; return a new, freshly verified session."""
    session = signin.full_session(ctx, session_token)
    user = session.user
    allowed = methods(ctx, user.id)
    if method not in allowed:
        if PASSWORD in allowed:
            raise MethodNotAvailable(PASSWORD_REQUIRED)
        raise MethodNotAvailable(SECOND_FACTOR_REQUIRED if method == PASSWORD else None)

    with ctx.uow() as uow:
        subjects = [throttling.second_factor_of(ctx, uow, user.id)]
        offered = factors.recovery_codes_on_offer(uow, user.id) if method == Method.RECOVERY_CODE else None
    reservation = throttling.reserve(ctx, subjects)  # counted as a failure until the success below resets it

    # Argon2 is slow by design: no transaction is open while it runs (a password; a recovery code, against the set
    # read above, which the transaction below only spends).
    if method == PASSWORD and not ctx.passwords.verify(user.password_hash, secret):
        _record_failure(ctx, reservation, user, client, {"method": PASSWORD})
        raise InvalidCredentials("That password is not correct. Enter the password you sign in with.")
    matched = factors.match_recovery_code(ctx, offered, secret) if offered is not None else factors.NO_MATCH

    old_hash = ctx.hash_token(session_token, signin.SESSION_PURPOSE)
    with ctx.uow() as uow:
        # A code is checked and spent inside the transaction that opens the new session (replay-safe).
        result = factors.check(ctx, uow, user.id, Method(method), secret, matched) if method != PASSWORD else None
        if result is not None and not result.ok:
            factors.record_clock_observation(ctx, uow, user.id, result, "step_up")
            throttling.record_escalations(ctx, uow, reservation, client, user)
            failed = factors.failure_details(result)
            audit.record(ctx, uow, EventType.STEP_UP_FAILED, client=client, actor=user, subject=user, details=failed)
            uow.commit()  # the failure's record, not the code: nothing was spent
            raise InvalidCode()
        now = ctx.clock.now()
        # Spent once: of two step-ups on one session, only one opens a new session.
        if not uow.sessions.revoke(old_hash, now):
            raise AuthenticationRequired()
        throttling.settle_success(ctx, uow, subjects)
        token = new_token(ctx.random_bytes, prefix=signin.SESSION_PREFIX)
        uow.sessions.add(
            user.id,
            ctx.hash_token(token, signin.SESSION_PURPOSE),
            now,
            now + ctx.session_lifetime,
            client.ip,
            client.user_agent,
        )
        if result is not None:
            factors.record_success(ctx, uow, user, result, EventType.STEP_UP_SUCCEEDED, client)
        else:
            confirmed: dict[str, Detail] = {"method": PASSWORD}
            audit.record(
                ctx, uow, EventType.STEP_UP_SUCCEEDED, client=client, actor=user, subject=user, details=confirmed
            )
        uow.commit()
    return signin.Authenticated(token, user)


def _record_failure(
    ctx: ServiceContext, reservation: throttling.Reservation, user: User, client: ClientInfo, details: dict[str, Detail]
) -> None:
    with ctx.uow() as uow:
        throttling.record_escalations(ctx, uow, reservation, client, user)
        audit.record(ctx, uow, EventType.STEP_UP_FAILED, client=client, actor=user, subject=user, details=details)
        uow.commit()
