"""The files every page loads (base.html's stylesheet, script and icon) are served, under the path the page names,
and the access log names them as the browser asked for them."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.web.access_log import AccessLog, LineWriter
from nidan.web.app import create_app

#: Where base.html points a browser: <link href>, <script src>.
ASSET = re.compile(r'<(?:link|script)\b[^>]*\b(?:href|src)="(/[^"]+)"')


def assets_of(page: str) -> list[str]:
    return ASSET.findall(page)


def test_every_asset_base_html_names_is_served(client: TestClient) -> None:
    page = client.get("/login")
    assets = assets_of(page.text)
    assert {a.split("?")[0] for a in assets} >= {"/static/nidan.css", "/static/nidan.js", "/static/favicon.svg"}
    for asset in assets:
        answer = client.get(asset, follow_redirects=False)
        assert answer.status_code == 200, asset
        assert "/static/static/" not in asset
    assert client.get("/static/favicon.svg").headers["content-type"].startswith("image/svg+xml")


def test_the_access_log_names_a_static_file_once(runtime: Runtime) -> None:
    stream = io.StringIO()
    app = AccessLog(create_app(runtime=runtime), LineWriter(lambda: stream))
    with TestClient(app) as client:
        page = client.get("/login")
        for asset in assets_of(page.text):
            assert client.get(asset).status_code == 200
    log = stream.getvalue()
    assert '"GET /static/nidan.css?[redacted] HTTP/1.1" 200 ' in log
    assert '"GET /static/favicon.svg?[redacted] HTTP/1.1" 200 ' in log
    assert "/static/static/" not in log


@pytest.mark.parametrize("path", ["/favicon.ico"])
def test_the_browsers_own_favicon_request_finds_the_icon(client: TestClient, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 301 and answer.headers["location"] == "/static/favicon.svg"
    icon = client.get(path)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in icon.content
