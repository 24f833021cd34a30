"""A browser never reads raw JSON: every error on a page address (404, 405, 413, 422, 500) is the error page, in the
reader's language, with the support details (error code, this request's correlation id, the time). The API keeps
its JSON error body whatever the browser asks for.

Every path and query parameter of every page route is tried with a value it refuses (found by walking the pages'
routes: a new one is tried without a line here). A path part that names nothing is the page of an unknown address
(404); a query value or a form field that is not valid is said in words, naming the field as the reader sees it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, NamedTuple, get_args

import httpx
import pytest
from annotated_types import MaxLen
from fastapi import Form
from fastapi.dependencies.utils import get_dependant
from fastapi.routing import iter_route_contexts

from nidan.services import accounts
from nidan.web import pages
from nidan.web.app import NidanApp
from nidan.web.i18n import catalog
from nidan.web.problems import TOO_LARGE
from tests.conftest import BACKENDS, PostgresDatabases
from tests.helpers import make_user
from tests.web.admin_support import CLI
from tests.web.language_support import EN, JA, LANGUAGES, assert_in_language, has_kana
from tests.web.pages_support import CORRELATION, error_code_of, sign_in
from tests.web.site_support import ADMIN, ANONYMOUS, USER, Site, open_site

pytestmark = pytest.mark.xdist_group("error_pages")

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SECRET = "secret internals: db password hunter2"
_TIME = re.compile(r'<time datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d)">')


def _crash() -> None:
    raise RuntimeError(SECRET)


def _form_for_test(count: Annotated[int, Form()]) -> str:
    return str(count)


def _extend(app: NidanApp) -> None:
    """A page and an API route that crash, and a page form with a typed field (no page of nidan's has one: they
    read their forms themselves, after the CSRF check)."""
    app.add_api_route("/test-crash", _crash, include_in_schema=False)
    app.add_api_route("/api/v1/test-crash", _crash)
    app.add_api_route("/test-typed-form", _form_for_test, methods=["POST"], include_in_schema=False)


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[Site]:
    with open_site(request.param, tmp_path_factory, sqlite_template, postgres, extend=_extend) as populated:
        yield populated


def assert_error_page(page: httpx.Response, status: int, code: str, language: str) -> None:
    """The error page in ``language``, with the support details of this very request."""
    assert page.status_code == status, page.text
    assert page.headers["content-type"].startswith("text/html"), page.text
    assert error_code_of(page) == code
    correlation = CORRELATION.search(page.text)
    assert correlation and correlation.group(1) == page.headers["x-correlation-id"]
    shown = _TIME.search(page.text)
    assert shown and datetime.fromisoformat(shown.group(1)).utcoffset() is not None
    assert_in_language(page, language)
    for raw in ('{"error"', "Traceback", "path.", "query.", "body.", "Input should be"):
        assert raw not in page.text, raw


def said(language: str, message: str) -> str:
    """``message`` as the page shows it (HTML-escaped) in ``language``."""
    return catalog(language).gettext(message).replace("'", "&#39;")


# --- 404, 405, 413, 500 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_unknown_address_is_the_not_found_page(site: Site, language: str) -> None:
    for path in ("/no-such-page", "/security/no-such-page", "/static-ish/x", "/security/tokens/1/nothing"):
        page = site.clients[ANONYMOUS].get(path, headers={**HTML, **LANGUAGES[language]}, follow_redirects=False)
        assert_error_page(page, 404, "not_found", language)
        assert f"<h1>{said(language, 'Page not found')}</h1>" in page.text
        assert said(language, "Nothing was found at this address. Check the URL.") in page.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_wrong_method_is_a_page_that_names_the_allowed_ones(site: Site, language: str) -> None:
    for method, path in (("DELETE", "/login"), ("GET", "/logout"), ("PUT", "/security/tokens")):
        page = site.clients[USER].request(method, path, headers={**HTML, **LANGUAGES[language]})
        assert_error_page(page, 405, "http_method_not_allowed", language)
        assert page.headers["allow"]
    assert "alice" in page.text  # who was signed in, for support


def _big_form(site: Site) -> bytes:
    return b"username=alice&password=" + b"x" * site.runtime.settings.server.max_body_bytes


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("sent", ["declared", "streamed"])
def test_a_form_too_large_is_a_page(site: Site, language: str, sent: str) -> None:
    """Refused before it is read whole: at once when its length is declared, at the limit when it streams in."""
    body = _big_form(site)
    content: bytes | Iterator[bytes] = body if sent == "declared" else iter([body[:1024], body[1024:]])
    headers = {**HTML, **LANGUAGES[language], "Content-Type": "application/x-www-form-urlencoded"}
    page = site.clients[ANONYMOUS].post("/login", content=content, headers=headers)
    assert_error_page(page, 413, "payload_too_large", language)
    assert said(language, TOO_LARGE.msgid) in page.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_crash_is_a_page_with_its_correlation_id_and_nothing_else(site: Site, language: str) -> None:
    for who in (ANONYMOUS, USER):
        page = site.clients[who].get("/test-crash", headers={**HTML, **LANGUAGES[language]})
        assert_error_page(page, 500, "internal_error", language)
        assert SECRET not in page.text and "RuntimeError" not in page.text
    assert "<dd>alice</dd>" in page.text


def test_the_api_keeps_its_json_whatever_the_browser_asks_for(site: Site) -> None:
    client = site.clients[USER]
    headers = {**HTML, **JA}
    answers = {
        404: client.get("/api/v1/no-such-thing", headers=headers),
        405: client.get("/api/v1/auth/login", headers=headers),
        413: client.post("/api/v1/auth/login", content=_big_form(site), headers=headers),
        422: client.post("/api/v1/auth/login", json={"username": 5}, headers=headers),
        500: client.get("/api/v1/test-crash", headers=headers),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json", status
        error = response.json()["error"]
        assert error["correlation_id"] == response.headers["x-correlation-id"]
        assert re.search(r"[\u3040-\u30ff]", error["message"]), error  # the message in the reader's language
    assert {f["field"] for f in answers[422].json()["error"]["fields"]} >= {"username", "password"}
    assert SECRET not in answers[500].text


def test_the_error_page_speaks_the_signed_in_persons_language(site: Site) -> None:
    """Their chosen language wins over the browser's, on an address no route knows too."""
    yuki = make_user(site.ctx, "yuki")
    accounts.set_preferences(site.ctx, yuki, locale="ja", time_zone=None, client=CLI)
    with site.browser() as client:
        assert sign_in(client, "yuki").headers["location"] == "/security"
        page = client.get("/no-such-page", headers={**HTML, **EN})
        assert_error_page(page, 404, "not_found", "ja")


# --- every parameter of every page route ----------------------------------------------------------------------------


class Refused(NamedTuple):
    method: str
    route: str
    url: str
    #: What the page must name: the query parameter (a path part that names nothing is just 404).
    field: str | None


def _wrong(annotation: object, metadata: list[object]) -> str:
    if annotation is int or int in get_args(annotation):  # int, or int | None
        return "abc"
    longest = next((m.max_length for m in metadata if isinstance(m, MaxLen)), None)
    return "x" * (longest + 1) if longest is not None else "no-such-thing"


def refused_values() -> list[Refused]:
    """For every page route: its path with each part given a value it refuses, and each of its query parameters
    that has a type or a limit, given one that breaks it."""
    found = []
    for context in iter_route_contexts(pages.router.routes):
        assert context.path is not None and context.endpoint is not None
        dependant = get_dependant(path=context.path, call=context.endpoint)
        for method in sorted(context.methods or ()):
            if dependant.path_params:
                url = context.path
                for param in dependant.path_params:
                    wrong = _wrong(param.field_info.annotation, param.field_info.metadata)
                    url = url.replace(f"{{{param.name}}}", wrong)
                found.append(Refused(method, context.path, url, None))
            for param in dependant.query_params:
                info = param.field_info
                if info.annotation is str and not info.metadata:
                    continue  # any text is taken (a link's token: the page says when it is not valid)
                example = re.sub(r"\{[a-z_]+\}", "x", context.path)
                url = f"{example}?{param.alias}={_wrong(info.annotation, info.metadata)}"
                found.append(Refused(method, context.path, url, param.alias))
    return found


REFUSED = refused_values()


def test_the_walk_finds_the_pages_parameters() -> None:
    routes = {(r.method, r.route, r.field) for r in REFUSED}
    assert ("GET", "/security/tokens/{token_id}/revoke", None) in routes
    assert ("POST", "/security/sessions/{session_id}/end", None) in routes
    assert ("GET", "/security/events", "before") in routes and ("GET", "/admin", "q") in routes


def _named(refused: Refused) -> str:
    return f"{refused.method} {refused.route}" + (f"?{refused.field}" if refused.field else "")


@pytest.mark.parametrize("refused", REFUSED, ids=_named)
def test_every_refused_value_is_a_page_in_words(site: Site, refused: Refused) -> None:
    client = site.clients[ADMIN]
    data = {"csrf_token": site.csrf_token(ADMIN)} if refused.method == "POST" else None
    page = client.request(refused.method, refused.url, headers={**HTML, **JA}, data=data, follow_redirects=False)
    if refused.field is None:
        assert page.status_code == 404, page.text
        assert_in_language(page, "ja")
        assert error_code_of(page).endswith("not_found")
        return
    assert_error_page(page, 422, "invalid_request", "ja")
    assert f"「{refused.field}」" in page.text
    english = client.request(refused.method, refused.url, headers={**HTML, **EN}, data=data)
    assert_error_page(english, 422, "invalid_request", "en")
    assert f"{refused.field}: must be" in english.text and "address is not valid" in english.text


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_typed_form_field_is_said_in_words(site: Site, language: str) -> None:
    page = site.clients[ANONYMOUS].post(
        "/test-typed-form", data={"count": "many"}, headers={**HTML, **LANGUAGES[language]}
    )
    assert_error_page(page, 422, "invalid_request", language)
    if language == "en":
        assert "count: must be a whole number" in page.text and "Some fields of the form" in page.text
    else:
        assert "「count」は整数で指定してください" in page.text and has_kana(page)
