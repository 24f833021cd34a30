"""The ASGI application factory: the web face's composition root."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from nidan import __version__
from nidan.bootstrap import Runtime, build_runtime, serving_services
from nidan.config import Settings, load_settings
from nidan.web import forward_auth, pages
from nidan.web.api.v1 import admin, admin_accounts, apps, auth, devices, events, me, organisations, tokens, verify
from nidan.web.client_address import parse_networks
from nidan.web.correlation import BodySizeLimitMiddleware, CorrelationIdMiddleware
from nidan.web.openapi import with_security
from nidan.web.problems import install_error_handlers
from nidan.web.trailing_slash import slash_redirect_or_not_found

API_DESCRIPTION = """
nidan's REST API. Sign in with `POST /api/v1/auth/login`, then, when a second factor is set up,
`POST /api/v1/auth/mfa`; send the session token as `Authorization: Bearer <token>`.

Every error answer has the body `{"error": {"code", "message", "correlation_id", "timestamp"}}`; `code` is stable.
"""


STATIC_DIR = Path(__file__).parent / "static"
#: nidan's mark (二, two steps), linked from every page.
FAVICON = "/static/favicon.svg"


class NidanApp(FastAPI):
    """FastAPI, with the verify API's front door ahead of its whole stack: relying applications call that one
    path at volume, and FastAPI's own middleware cost a verify call about as much as the front door itself."""

    verify_front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.verify_front is not None and scope["type"] == "http" and scope["path"] == verify.PATH:
            await self.verify_front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI's own handling, for what the front door does not answer itself."""
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, with the security each operation demands (derived from its routes)."""
        return with_security(super().openapi(), self.routes)


def create_app(runtime: Runtime | None = None, settings: Settings | None = None) -> NidanApp:
    runtime = runtime or build_runtime(settings or load_settings())
    built = runtime

    @asynccontextmanager
    async def serving(_app: FastAPI) -> AsyncIterator[None]:
        with built.background_work():
            yield

    app = NidanApp(
        title="nidan",
        version=__version__,
        description=API_DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=serving,
        # Starlette's would build the redirect from the Host header: ours is relative (nidan.web.trailing_slash).
        redirect_slashes=False,
    )
    app.router.default = slash_redirect_or_not_found(app.router)
    app.state.services = serving_services(runtime)
    app.state.settings = runtime.settings
    app.state.default_locale = runtime.settings.ui.default_locale
    app.state.storage_is_embedded = runtime.storage_is_embedded
    #: The verify API's authenticator codes that arrive together are checked together: on the event loop itself on
    #: embedded SQLite, in a thread a group at a time on a database server.
    app.state.verify_queue = verify.VerifyQueue(app.state.services, inline=runtime.storage_is_embedded)
    #: Off only in tests, which run every verify call both ways.
    app.state.verify_fast_path = True
    app.state.trusted_proxies = parse_networks(runtime.settings.server.trusted_proxies)
    install_error_handlers(app, pages.render_error_page)
    # Routes are matched in order: the endpoints programs call at volume (the verify API, the proxies' gate) first.
    app.include_router(verify.router)
    app.include_router(forward_auth.router)
    app.include_router(auth.router)
    app.include_router(me.router)
    app.include_router(events.router)
    app.include_router(tokens.router)
    app.include_router(devices.router)
    app.include_router(admin.router)
    app.include_router(admin_accounts.router)
    app.include_router(organisations.router)
    app.include_router(apps.router)
    app.include_router(pages.router)
    # The pages' own CSS and JavaScript, shipped in the package: nothing is fetched from elsewhere (air-gapped).
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Browsers ask for /favicon.ico on their own (bookmarks, tabs without a page's <link rel="icon">).
    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> RedirectResponse:
        return RedirectResponse(FAVICON, status_code=301)

    # async: answered on the event loop. A plain ``def`` would send every probe to the thread pool, which starts a
    # thread per concurrent probe (each with its stack and state) for a constant.
    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    max_body_bytes = runtime.settings.server.max_body_bytes
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=max_body_bytes)
    hsts = runtime.settings.server.strict_transport_security
    app.add_middleware(CorrelationIdMiddleware, hsts=hsts)
    # Well-formed verify calls are answered ahead of all of the above (see VerifyFastPath); the rest go through it.
    app.verify_front = CorrelationIdMiddleware(verify.VerifyFastPath(app.stack, app.state, max_body_bytes), hsts=hsts)
    return app
