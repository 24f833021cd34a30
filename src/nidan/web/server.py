"""Running the web face under uvicorn: one in-process worker, or several that rebuild from the environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import uvicorn

from nidan.bootstrap import Runtime
from nidan.config import load_settings
from nidan.web.access_log import AccessLog

if TYPE_CHECKING:
    from starlette.types import ASGIApp

WORKER_FACTORY = "nidan.web.server:worker_app"


#: nidan serves no WebSocket: uvicorn loads no WebSocket implementation (about 0.7 MiB per worker) and answers an
#: upgrade request as plain HTTP.
WEBSOCKETS = "none"


def logged(app: ASGIApp, *, access_log: bool) -> ASGIApp:
    """``app`` with nidan's access log around it (uvicorn's own is off), unless the settings turn it off."""
    return AccessLog(app) if access_log else app


def worker_app() -> ASGIApp:
    """Entry point for ``uvicorn --factory`` worker processes: settings come from the environment."""
    from nidan.web.app import create_app

    settings = load_settings()
    return logged(create_app(settings=settings), access_log=settings.server.access_log)


def run(runtime: Runtime, *, host: str, port: int, workers: int) -> None:
    if workers == 1:
        # Imported only here: with several workers this process only supervises them (each builds its own app), and
        # without FastAPI and the app it holds about 13 MiB less.
        from nidan.web.app import create_app

        try:
            _uvicorn(logged(create_app(runtime=runtime), access_log=runtime.settings.server.access_log), host, port)
        finally:
            runtime.engine.dispose()
        return
    _uvicorn(WORKER_FACTORY, host, port, factory=True, workers=workers)


def _uvicorn(app: ASGIApp | str, host: str, port: int, **options: Any) -> None:
    # Proxy headers are not trusted until trusted proxies can be configured: the peer address is the client.
    uvicorn.run(
        app, host=host, port=port, proxy_headers=False, server_header=False, ws=WEBSOCKETS, access_log=False, **options
    )
