"""Running the web face under uvicorn: one in-process worker, or several that rebuild from the environment."""

from __future__ import annotations

import uvicorn

from nidan.bootstrap import Runtime
from nidan.web.access_log import logging_config

WORKER_FACTORY = "nidan.web.app:app_from_environment"


#: nidan serves no WebSocket: uvicorn loads no WebSocket implementation (about 0.7 MiB per worker) and answers an
#: upgrade request as plain HTTP.
WEBSOCKETS = "none"


def run(runtime: Runtime, *, host: str, port: int, workers: int) -> None:
    # Proxy headers are not trusted until trusted proxies can be configured: the peer address is the client.
    if workers == 1:
        # Imported only here: with several workers this process only supervises them (each builds its own app), and
        # without FastAPI and the app it holds about 13 MiB less.
        from nidan.web.app import create_app

        try:
            uvicorn.run(
                create_app(runtime=runtime),
                host=host,
                port=port,
                proxy_headers=False,
                server_header=False,
                ws=WEBSOCKETS,
                log_config=logging_config(),
            )
        finally:
            runtime.engine.dispose()
        return
    uvicorn.run(
        WORKER_FACTORY,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        proxy_headers=False,
        server_header=False,
        ws=WEBSOCKETS,
        log_config=logging_config(),
    )
