"""Server-rendered pages (Jinja2). Placeholder until the pages module lands: routes and the error page."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

router = APIRouter()


def render_error_page(request: Request, status: int, code: str, message: str) -> Response:
    from nidan.web.problems import problem_response

    response: JSONResponse = problem_response(status, code, message)
    return response
