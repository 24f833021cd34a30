"""A real nidan for the client: ``create_app(runtime)`` served by uvicorn on a free 127.0.0.1 port in a thread.

The server shares the test's runtime, so the test moves its fixed clock and makes users through the services.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.core.models import ClientInfo, User
from nidan.services import applications, enrollment
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.helpers import code_at, make_user


@pytest.fixture
def live_url(runtime: Runtime) -> Iterator[str]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # As `nidan serve` runs it (proxy_headers=False: nidan alone decides whom to believe), except for logging:
    # log_config=None leaves the process's logging alone (other tests in this worker read it).
    app = create_app(runtime=runtime)
    config = uvicorn.Config(app, proxy_headers=False, server_header=False, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)
    listener.close()


@dataclass(frozen=True)
class TotpUser:
    user: User
    secret: str
    recovery_codes: list[str]


def totp_user(ctx: ServiceContext, username: str = "alice") -> TotpUser:
    """A user with an authenticator app and recovery codes; the clock moves two steps on (the next code is fresh)."""
    user = make_user(ctx, username)
    started = enrollment.start_totp(ctx, user)
    activated = enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=ClientInfo())
    ctx.clock.advance(2 * totp.PERIOD)  # type: ignore[attr-defined]
    return TotpUser(user, started.secret, activated.recovery_codes)


@pytest.fixture
def alice(runtime: Runtime) -> TotpUser:
    return totp_user(runtime.services)


@pytest.fixture
def api_key(runtime: Runtime) -> str:
    return applications.add(runtime.services, name="wiki", actor=None, client=ClientInfo()).api_key
