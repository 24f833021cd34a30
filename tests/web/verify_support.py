"""The verify API's tests' helpers: a user with an authenticator, a wrong code, the ASGI scope of a call."""

from __future__ import annotations

from typing import Any

from nidan.core import totp
from nidan.core.models import ClientInfo
from nidan.services import enrollment
from nidan.services.context import ServiceContext
from tests.helpers import code_at, make_user

VERIFY = "/api/v1/verify"


CLIENT = ClientInfo()


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def totp_user(ctx: ServiceContext, username: str = "alice") -> tuple[str, list[str]]:
    """A user with an authenticator; the clock is moved past the activation's time step."""
    user = make_user(ctx, username)
    started = enrollment.start_totp(ctx, user)
    codes = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT).recovery_codes
    advance(ctx, 2 * totp.PERIOD)
    return started.secret, codes


def verify_scope(authorization: bytes, content_length: int) -> dict[str, Any]:
    """The ASGI scope of a JSON POST to the verify API, for tests that drive the app without an HTTP client."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": VERIFY,
        "raw_path": VERIFY.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", authorization),
            (b"content-type", b"application/json"),
            (b"content-length", str(content_length).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def wrong_code(secret: str, ctx: ServiceContext) -> str:
    right = {code_at(secret, ctx, offset) for offset in (-1, 0, 1)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in right)
