"""The sign-in pages and the API's errors in Japanese: asked for by the browser (``Accept-Language``), by the footer's
switcher (``GET /language``, which remembers it in the ``nidan_lang`` cookie) or by the cookie itself. A page in
Japanese says so (``<html lang="ja">``), reads in Japanese, and keeps none of the English page's sentences; an API
error's ``message`` is Japanese while its ``code`` stays the same."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.services import applications
from nidan.web.i18n import LANG_COOKIE
from tests.helpers import code_at, make_user
from tests.web.pages_support import enable_totp_on_page, error_code_of, sign_in, sign_out, signed_in_alice, submit
from tests.web.verify_support import CLIENT, VERIFY, totp_user, wrong_code

JA = {"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}

#: Not read as sentences: scripts, the title (taken on its own) and commands or codes in <code>.
_HIDDEN = re.compile(r"<(script|style|title|code)\b.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]*>")
#: Words people read in the attributes a browser shows or speaks.
_SHOWN_ATTRIBUTE = re.compile(r'\b(?:placeholder|aria-label|title|alt|data-[a-z-]+)="([^"]*)"')
#: An English sentence or label: two words of letters or more.
_ENGLISH = re.compile(r"[A-Za-z][A-Za-z']+(?:[ ,:;-]+[A-Za-z][A-Za-z'.]*)+")


def shown_texts(page: httpx.Response) -> list[str]:
    """What a person reads on ``page``: its text between tags (and the title) and its visible attributes."""
    source = page.text
    title = re.search(r"<title>(.*?)</title>", source, re.S)
    pieces = [title.group(1)] if title else []
    pieces += _SHOWN_ATTRIBUTE.findall(source)
    pieces += _TAG.split(_HIDDEN.sub(" ", source))
    return [" ".join(html.unescape(piece).split()) for piece in pieces if piece.strip()]


def english_sentences(page: httpx.Response) -> set[str]:
    """The English sentences and labels of ``page`` (words only: no usernames, codes, ids or version numbers)."""
    found = {match for text in shown_texts(page) for match in _ENGLISH.findall(text)}
    return {sentence for sentence in found if sentence not in ("nidan",)}


def assert_japanese(page: httpx.Response, sentence: str, english: httpx.Response) -> None:
    """``page`` is in Japanese: it says so, shows ``sentence`` and none of the ``english`` page's sentences."""
    assert '<html lang="ja">' in page.text, page.text[:200]
    assert sentence in page.text, page.text
    shown = "\n".join(shown_texts(page))
    left = sorted(s for s in english_sentences(english) if s in shown)
    assert not left, f"English left on the Japanese page: {left}"
    assert re.search(r"[\u3040-\u30ff]", shown), "no kana on the page"


def _asked_by_header(client: TestClient) -> None:
    client.headers.update(JA)


def _asked_by_cookie(client: TestClient) -> None:
    client.cookies.set(LANG_COOKIE, "ja")


def _asked_by_switcher(client: TestClient) -> None:
    chosen = client.get("/language?lang=ja&next=/login", follow_redirects=False)
    assert chosen.status_code == 303 and chosen.headers["location"] == "/login"
    assert f"{LANG_COOKIE}=ja" in chosen.headers["set-cookie"]


WAYS: dict[str, Callable[[TestClient], None]] = {
    "Accept-Language": _asked_by_header,
    "nidan_lang cookie": _asked_by_cookie,
    "the switcher": _asked_by_switcher,
}


@pytest.fixture(params=list(WAYS))
def in_japanese(request: pytest.FixtureRequest, client: TestClient) -> TestClient:
    """The client, asking for Japanese one way or another; English when a request says ``EN`` and no cookie is set."""
    WAYS[request.param](client)
    return client


def english(client: TestClient, path: str) -> httpx.Response:
    """``path`` as an English reader gets it (no cookie: a fresh client on the same app)."""
    with TestClient(client.app, raise_server_exceptions=False, headers=EN) as reader:
        return reader.get(path)


def test_the_sign_in_page_in_japanese(in_japanese: TestClient) -> None:
    page = in_japanese.get("/login")
    assert page.status_code == 200
    assert_japanese(page, "ログイン", english(in_japanese, "/login"))
    assert '<label for="username">ユーザー名</label>' in page.text
    assert '<strong lang="ja">日本語</strong>' in page.text  # the switcher shows the language in use
    assert 'href="/language?lang=en&amp;next=%2Flogin"' in page.text


def test_the_verify_page_and_a_wrong_code_in_japanese(in_japanese: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(in_japanese, ctx)
    secret, _ = enable_totp_on_page(in_japanese, ctx)
    sign_out(in_japanese)
    assert sign_in(in_japanese).headers["location"] == "/login/verify"
    page = in_japanese.get("/login/verify")
    assert page.status_code == 200
    with TestClient(in_japanese.app, raise_server_exceptions=False, headers=EN) as reader:
        assert sign_in(reader).headers["location"] == "/login/verify"
        english_page = reader.get("/login/verify")
        assert "Two-step verification" in english_page.text
        wrong_code = "000000" if code_at(secret, ctx) != "000000" else "111111"
        english_wrong = submit(reader, english_page, "/login/verify", method="totp", code=wrong_code)
        assert english_wrong.status_code == 401
    assert_japanese(page, "二段階認証", english_page)
    assert "認証アプリの確認コード" in page.text
    assert "別の確認方法を使う" in page.text

    wrong = submit(in_japanese, page, "/login/verify", method="totp", code=wrong_code)
    assert wrong.status_code == 401
    assert error_code_of(wrong) == "invalid_code"  # the code support reads is the same in every language
    assert_japanese(wrong, "サポート用の情報", english_wrong)
    assert "<dt>ユーザー名</dt><dd>alice</dd>" in wrong.text


def test_the_error_page_in_japanese(in_japanese: TestClient) -> None:
    page = in_japanese.get("/no-such-page")
    assert page.status_code == 404
    assert error_code_of(page) == "not_found"
    english_page = english(in_japanese, "/no-such-page")
    assert "Nothing was found at this address" in english_page.text
    assert_japanese(page, "このアドレスには何も見つかりませんでした", english_page)
    assert "<h1>ページが見つかりません</h1>" in page.text


def test_an_english_reader_still_reads_english(client: TestClient) -> None:
    page = client.get("/login", headers=EN)
    assert '<html lang="en">' in page.text and "<h1>Sign in</h1>" in page.text
    assert not re.search(r"[\u3040-\u30ff]", page.text.replace("日本語", ""))


def test_the_cookie_wins_over_the_browser(client: TestClient) -> None:
    client.cookies.set(LANG_COOKIE, "en")
    page = client.get("/login", headers=JA)
    assert '<html lang="en">' in page.text


def test_api_errors_speak_japanese_with_the_same_code(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    body = {"username": "alice", "password": "wrong password"}
    english_error = client.post("/api/v1/auth/login", json=body, headers=EN).json()["error"]
    japanese_error = client.post("/api/v1/auth/login", json=body, headers=JA).json()["error"]
    assert japanese_error["code"] == english_error["code"] == "invalid_credentials"
    assert japanese_error["message"] != english_error["message"]
    assert re.search(r"[\u3040-\u30ff]", japanese_error["message"]), japanese_error
    assert not re.search(r"[A-Za-z]{3,}", japanese_error["message"]), japanese_error

    missing = client.get("/api/v1/no-such-thing", headers=JA).json()["error"]
    assert missing["code"] == "not_found"
    assert missing["message"] == "このアドレスには何も見つかりませんでした。URL をご確認ください。"


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast path", "FastAPI route"])
def test_the_verify_apis_refusal_speaks_the_callers_language(
    client: TestClient, runtime: Runtime, fast_path: bool
) -> None:
    """A relying app passing its user's Accept-Language on gets the refusal in it, answered by either path."""
    ctx = runtime.services
    client.app.state.verify_fast_path = fast_path  # type: ignore[attr-defined]
    secret, _ = totp_user(ctx)
    key = applications.add(ctx, name="wiki", actor=None, client=CLIENT).api_key
    body = {"username": "alice", "code": wrong_code(secret, ctx)}
    answers = {
        language: client.post(VERIFY, json=body, headers={"Authorization": f"Bearer {key}", **headers}).json()
        for language, headers in (("en", EN), ("ja", JA))
    }
    assert answers["en"]["error"]["code"] == answers["ja"]["error"]["code"] == "invalid_code"
    assert answers["en"]["error"]["message"].startswith("That code is not valid"), answers["en"]
    assert re.search(r"[\u3040-\u30ff]", answers["ja"]["error"]["message"]), answers["ja"]
    # A malformed call (the route's 422) speaks it too.
    refused = client.post(VERIFY, json={"username": "alice"}, headers={"Authorization": f"Bearer {key}", **JA})
    assert refused.status_code == 422 and "「code」は必須です" in refused.json()["error"]["message"], refused.text


def test_the_validation_summary_names_the_fields_in_japanese(client: TestClient) -> None:
    body = {"password": "x" * 2000, "extra": 1}
    english_error = client.post("/api/v1/auth/login", json=body, headers=EN).json()["error"]
    japanese_error = client.post("/api/v1/auth/login", json=body, headers=JA).json()["error"]
    assert japanese_error["code"] == english_error["code"] == "invalid_request"
    assert japanese_error["fields"] == english_error["fields"]  # pydantic's words, for programs, as they were
    message = japanese_error["message"]
    assert message.startswith("入力内容に不足または誤りがあります（") and message.endswith("）。"), message
    assert "「username」は必須です" in message, message
    # Every field's problem is said in Japanese: none of pydantic's English remains.
    assert not re.search(r"[A-Za-z]{3,} [A-Za-z]{2,}", message), message
    assert "username: required" in english_error["message"], english_error


@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "/\\evil.example", "/login?x=1"])
def test_the_switcher_goes_back_only_to_a_local_page(client: TestClient, target: str) -> None:
    chosen = client.get("/language", params={"lang": "ja", "next": target}, follow_redirects=False)
    assert chosen.status_code == 303
    assert chosen.headers["location"] == "/"


def test_the_switcher_ignores_a_language_nidan_does_not_speak(client: TestClient) -> None:
    chosen = client.get("/language?lang=xx&next=/login", follow_redirects=False)
    assert chosen.status_code == 303 and chosen.headers["location"] == "/login"
    assert LANG_COOKIE not in chosen.headers.get("set-cookie", "")
