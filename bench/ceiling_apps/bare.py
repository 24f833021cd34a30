"""The HTTP + JSON ceiling: plain Starlette answering nidan's verify contract without any check.

Every ``POST /api/v1/verify`` gets ``200 {"ok":true,"method":"totp"}`` (so only ``wrk/verify.lua``'s valid mode
makes sense against it). The body is still parsed as JSON: a real endpoint cannot answer without reading it.
Served by ``bench/ceilings.py`` as ``uvicorn bare:app`` from this directory.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


async def verify(request: Request) -> Response:
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return JSONResponse({"ok": False, "error": {"code": "invalid_request"}}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"ok": False, "error": {"code": "invalid_request"}}, status_code=400)
    return JSONResponse({"ok": True, "method": "totp"})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/api/v1/verify", verify, methods=["POST"]), Route("/healthz", healthz)])
