"""The ASGI application factory: the web face's composition root."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from nidan import __version__
from nidan.bootstrap import Runtime, build_runtime, serving_services
from nidan.config import Settings, load_settings
from nidan.web import forward_auth, pages
from nidan.web.api.v1 import admin, apps, auth, events, me, organisations, tokens, verify
from nidan.web.client_address import parse_networks
from nidan.web.correlation import BodySizeLimitMiddleware, CorrelationIdMiddleware
from nidan.web.problems import install_error_handlers

API_DESCRIPTION = """
nidan's REST API. Sign in with `POST /api/v1/auth/login`, then, when a second factor is set up,
`POST /api/v1/auth/mfa`; send the session token as `Authorization: Bearer <token>`.

Every error answer has the body `{"error": {"code", "message", "correlation_id", "timestamp"}}`; `code` is stable.
"""


STATIC_DIR = Path(__file__).parent / "static"


def create_app(runtime: Runtime | None = None, settings: Settings | None = None) -> FastAPI:
    runtime = runtime or build_runtime(settings or load_settings())
    app = FastAPI(title="nidan", version=__version__, description=API_DESCRIPTION, docs_url=None, redoc_url=None)
    app.state.services = serving_services(runtime)
    app.state.settings = runtime.settings
    app.state.storage_is_embedded = runtime.storage_is_embedded
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
    app.include_router(admin.router)
    app.include_router(organisations.router)
    app.include_router(apps.router)
    app.include_router(pages.router)
    # The pages' own CSS and JavaScript, shipped in the package: nothing is fetched from elsewhere (air-gapped).
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Innermost: well-formed verify calls are answered before FastAPI's routing (see VerifyFastPath).
    app.add_middleware(verify.VerifyFastPath)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=runtime.settings.server.max_body_bytes)
    app.add_middleware(CorrelationIdMiddleware)
    return app
