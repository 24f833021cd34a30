"""The account's own pages in Japanese: the security page, the TOTP setup and recovery codes pages, the tokens page
and the security log read in Japanese when the browser asks for it (``Accept-Language: ja``), with none of the
English page's headings, and still in English without it. The log says its events' details in words."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import unquote

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import AuditEvent, AuditRecord, Detail, EventType
from nidan.core.models import User
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from nidan.web.i18n import catalog, rendering_in
from nidan.web.pages import events
from nidan.web.pages.rendering import environment
from tests.helpers import code_at, make_user
from tests.integration.devices_support import remembered, remembering
from tests.web.pages_support import csrf_of, enable_totp_on_page, sign_in

JA = {"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}
KANA = re.compile(r"[\u3040-\u30ff]")
_TAG = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
_HEADING = re.compile(r"<(h1|h2|title|th|legend|label)\b[^>]*>(.*?)</\1>", re.S)
#: Names that stay in Latin letters in Japanese (products, scopes, the API's name).
_NAMES = re.compile(
    r"Google Authenticator|Microsoft Authenticator|FreeOTP|Aegis|Thunderbird|verify API|unenroll API|Chrome|"
    r"Windows|Firefox|Linux|read_repository|write_repository|read_registry|write_registry|Git|HTTPS|API|QR|UTC|"
    r"nidan|TOKEN|CI|YYYY-MM-DD|Android|iPhone|clone|pull|push|testclient"
)
_CODE = re.compile(r"<code\b[^>]*>.*?</code>", re.S)


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    return remembering(runtime, 30)


@pytest.fixture
def ctx(app_runtime: Runtime) -> ServiceContext:
    return app_runtime.services


@pytest.fixture
def client(app_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=app_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def readable(page: httpx.Response, *, without_code: bool = False) -> str:
    """What a person reads on ``page``: text between tags and the attributes a browser shows or speaks."""
    source = _CODE.sub(" ", page.text) if without_code else page.text
    shown = re.findall(r'\b(?:aria-label|placeholder|title|alt)="([^"]*)"', source)
    text = _TAG.sub(" ", _HIDDEN.sub(" ", source))
    return " ".join(html.unescape(" ".join([text, *shown])).split())


def headings(page: httpx.Response) -> set[str]:
    """The English page's headings, column heads and labels (the words a reader scans first)."""
    found = {
        " ".join(html.unescape(_TAG.sub(" ", _CODE.sub(" ", inner))).split())
        for _, inner in _HEADING.findall(page.text)
    }
    return {text for text in found if re.search(r"[A-Za-z]{3,}", _NAMES.sub("", text))}


def english_words(page: httpx.Response) -> list[str]:
    """Runs of two or more English words left on a page that should be Japanese (names and code taken out)."""
    text = _NAMES.sub(" ", readable(page, without_code=True).replace("English", " "))
    return re.findall(r"[A-Za-z][A-Za-z']+(?:[ ,]+[A-Za-z][A-Za-z']+)+", text)


def assert_japanese(page: httpx.Response, heading: str, english: httpx.Response) -> None:
    """``page`` is Japanese: it says so, has ``heading`` and none of the English page's headings or sentences."""
    assert page.status_code == 200, page.text
    assert '<html lang="ja">' in page.text, page.text[:200]
    assert heading in page.text
    assert KANA.search(readable(page))
    left = sorted(h for h in headings(english) if h in page.text)
    assert not left, f"English headings on the Japanese page: {left}"
    assert not english_words(page), english_words(page)[:10]


def assert_english(page: httpx.Response, heading: str) -> None:
    assert page.status_code == 200, page.text
    assert '<html lang="en">' in page.text
    assert heading in page.text
    assert not KANA.search(readable(page).replace("日本語", ""))


def post(client: TestClient, page: httpx.Response, url: str, headers: dict[str, str], **fields: str) -> httpx.Response:
    data = {"csrf_token": csrf_of(page), **fields}
    response: httpx.Response = client.post(url, data=data, headers=headers, follow_redirects=False)
    return response


def alice_with_totp(client: TestClient, ctx: ServiceContext) -> User:
    alice = make_user(ctx)
    assert sign_in(client).headers["location"] == "/security"
    enable_totp_on_page(client, ctx)
    return alice


def test_the_security_page_with_totp_on_in_japanese_and_in_english(client: TestClient, ctx: ServiceContext) -> None:
    alice = alice_with_totp(client, ctx)
    remembered(ctx, alice)  # Chrome on Windows
    english = client.get("/security", headers=EN)
    assert_english(english, "<h1>Account security</h1>")
    assert '<strong class="remaining">16 of 16</strong> codes left.' in english.text
    assert "Chrome on Windows" in english.text and "Remembered browsers" in english.text

    page = client.get("/security", headers=JA)
    assert_japanese(page, "<h1>アカウントのセキュリティ</h1>", english)
    assert '<span class="badge on">有効</span>' in page.text or "有効" in page.text
    assert '<h2 id="recovery">リカバリーコード</h2>' in page.text
    assert '<strong class="remaining">16個中16個</strong>' in page.text
    assert "Windows の Chrome" in page.text and "記憶したブラウザー" in page.text
    assert 'aria-label="Windows の Chrome（最終使用' in page.text
    assert client.get("/security").text.count("Account security") >= 1  # no header: English


def test_the_clock_warning_in_japanese(client: TestClient, ctx: ServiceContext) -> None:
    make_user(ctx)
    assert sign_in(client).headers["location"] == "/security"
    secret, _ = enable_totp_on_page(client, ctx)
    client.cookies.clear()
    assert sign_in(client).headers["location"] == "/login/verify"
    verifying = client.get("/login/verify")
    late = post(client, verifying, "/login/verify", EN, method="totp", code=code_at(secret, ctx, offset_steps=-12))
    assert late.status_code == 401
    assert post(client, verifying, "/login/verify", EN, method="totp", code=code_at(secret, ctx)).status_code == 303
    english = client.get("/security", headers=EN)
    assert "Your device clock was about 6 minutes behind at your last sign-in" in english.text
    assert "Android: Settings &gt; System &gt; Date &amp; time &gt; Set time automatically" in english.text

    page = client.get("/security", headers=JA)
    assert_japanese(page, "デバイスの時計に約6分の遅れがありました", english)
    assert "Android: 設定 &gt; システム &gt; 日付と時刻 &gt; 日時を自動的に設定" in page.text
    assert "iPhone: 設定 &gt; 一般 &gt; 日付と時刻 &gt; 自動設定" in page.text


def test_the_totp_setup_and_recovery_codes_pages_in_japanese(client: TestClient, ctx: ServiceContext) -> None:
    make_user(ctx)
    assert sign_in(client).headers["location"] == "/security"
    security = client.get("/security", headers=JA)
    assert '<h2 id="two-step">二段階認証</h2>' in security.text
    english_setup = post(client, security, "/security/totp", EN)
    assert_english(english_setup, "<h1>Set up your authenticator app</h1>")

    setup = post(client, security, "/security/totp", JA)
    assert_japanese(setup, "<h1>認証アプリを設定する</h1>", english_setup)
    assert 'aria-label="認証アプリ用のキーを含む QR コード"' in setup.text
    assert "<dt>発行者</dt>" in setup.text and "時間ベース、6桁、30秒ごと" in setup.text
    key = re.search(r'<code id="totp-key" class="key">([A-Z2-7 ]+)</code>', setup.text)
    assert key
    secret = key.group(1).replace(" ", "")

    wrong = "000000" if code_at(secret, ctx) != "000000" else "111111"
    retry = post(client, setup, "/security/totp/activate", JA, code=wrong)
    assert retry.status_code == 401 and '<html lang="ja">' in retry.text
    assert "設定したアプリの確認がまだ済んでいません。" in retry.text and "新しい QR コードでやり直す" in retry.text

    codes = post(client, setup, "/security/totp/activate", JA, code=code_at(secret, ctx))
    with TestClient(client.app, raise_server_exceptions=False) as other:
        make_user(ctx, "bob")
        assert sign_in(other, "bob").headers["location"] == "/security"
        bobs_setup = post(other, other.get("/security"), "/security/totp", EN)
        bob_key = re.search(r'<code id="totp-key" class="key">([A-Z2-7 ]+)</code>', bobs_setup.text)
        assert bob_key
        code = code_at(bob_key.group(1).replace(" ", ""), ctx)
        english_codes = post(other, bobs_setup, "/security/totp/activate", EN, code=code)
    assert_english(english_codes, "<h1>Save your recovery codes</h1>")
    assert_japanese(codes, "<h1>リカバリーコードを保存してください</h1>", english_codes)
    assert "<strong>コードが表示されるのは今回だけです。</strong>" in codes.text
    assert "alice のリカバリーコード" in codes.text
    download = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', codes.text)
    assert download and "alice のリカバリーコード" in unquote(html.unescape(download.group(1)))
    english_download = re.search(r'href="data:text/plain;charset=utf-8,([^"]+)"', english_codes.text)
    assert english_download and "Recovery codes for bob at" in unquote(html.unescape(english_download.group(1)))


def test_the_tokens_page_and_a_new_token_in_japanese(client: TestClient, ctx: ServiceContext) -> None:
    alice_with_totp(client, ctx)
    english = client.get("/security/tokens", headers=EN)
    assert_english(english, "<h1>Access tokens and app passwords</h1>")
    page = client.get("/security/tokens", headers=JA)
    assert_japanese(page, "<h1>アクセストークンとアプリパスワード</h1>", english)
    assert "Git リポジトリを clone・pull します。" in page.text  # a scope's description

    made = post(client, page, "/security/tokens/personal", JA, name="laptop git", scopes="read_repository")
    assert made.status_code == 200, made.text
    assert "<h1>新しい個人用アクセストークン</h1>" in made.text
    assert "「laptop git」を作成しました。" in made.text and "スコープ: <code>read_repository</code>。" in made.text
    assert "<strong>今すぐコピーしてください。二度と表示されません。</strong>" in made.text
    listed = client.get("/security/tokens", headers=JA)
    assert '<span class="hint">個人用アクセストークン</span>' in listed.text
    assert 'aria-label="laptop git を無効化"' in listed.text


def test_the_security_log_in_japanese_and_in_english(client: TestClient, ctx: ServiceContext) -> None:
    alice_with_totp(client, ctx)
    english = client.get("/security/events", headers=EN)
    assert_english(english, "<h1>Security log</h1>")
    assert "Two-step verification turned on" in english.text and "16 new recovery codes" in english.text

    page = client.get("/security/events", headers=JA)
    assert_japanese(page, "<h1>セキュリティログ</h1>", english)
    assert "二段階認証を有効にしました" in page.text and "新しいリカバリーコード16個" in page.text
    assert '<th scope="col">問い合わせID</th>' in page.text


# --- the log's details in words --------------------------------------------------------------------------------


def record(event_type: str, details: dict[str, Detail], actor: str | None = None) -> AuditRecord:
    when = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    event = AuditEvent(when, event_type, actor_user_id=2 if actor else None, actor_username=actor, details=details)
    return AuditRecord(seq=1, event=event, prev_hash="0" * 64, hash="1" * 64)


def facts_in(locale: str, item: AuditRecord, viewer: User) -> tuple[str, str]:
    row = events.event_row(item, viewer)
    language = catalog(locale)
    with rendering_in(language):
        cell = environment().from_string('{{ row.label | said }} {{ row.facts | map("said") | join(_(", ")) }}')
        said = cell.render(row=row)
        by = language.text(row.by) if row.by else ""
    return said, by


@pytest.mark.parametrize(
    ("event_type", "details", "english", "japanese"),
    [
        (
            EventType.SIGN_IN_SECOND_FACTOR_FAILED,
            {"method": "recovery_code", "replayed": True},
            "Sign-in failed: wrong code a recovery code that was already used",
            "ログインに失敗しました: 確認コードが違います 使用済みのリカバリーコード",
        ),
        (
            EventType.SIGN_IN_SECOND_FACTOR_FAILED,
            {"method": "totp", "replayed": False, "clock_offset_seconds": -360},
            "Sign-in failed: wrong code the device clock was 360 seconds behind, with the authenticator app",
            "ログインに失敗しました: 確認コードが違います デバイスの時計が360秒遅れていた、認証アプリを使用",
        ),
        (
            EventType.REMEMBERED_DEVICE_ADDED,
            {"browser": "Chrome on Windows", "days": 30, "device_id": 4},
            "Browser remembered: it skips the second step Chrome on Windows, remembered for 30 days, browser id: 4",
            "ブラウザーを記憶しました（2段階目の認証を省略します） Windows の Chrome、30日間記憶、ブラウザーID: 4",
        ),
        (
            EventType.BACKOFF_BLOCKED,
            {"scope": "second_factor", "failures": 5, "blocked_seconds": 30},
            "Blocked for a while after failed attempts blocked for 30 seconds, after 5 failed attempts, "
            "for the second step",
            "失敗が続いたため、一時的にブロックされました 30秒間ブロック、5回失敗した後、2段階目の認証",
        ),
        (
            EventType.TWO_FACTOR_RESET,
            {"had_two_factor": True, "sessions_ended": 1, "reason": "lost phone, called back"},
            "Two-step verification reset by an administrator two-step verification was on, "
            "reason: lost phone, called back, 1 session ended",
            "管理者が二段階認証をリセットしました 二段階認証は有効だった、理由: lost phone, called back、"
            "1件のセッションを終了",
        ),
        (
            "something.new",
            {"surprise_value": 3},
            "something.new surprise value: 3",
            "something.new surprise value: 3",
        ),
    ],
)
def test_the_log_says_details_in_words(
    ctx: ServiceContext, event_type: str, details: dict[str, Detail], english: str, japanese: str
) -> None:
    viewer = make_user(ctx)
    item = record(event_type, details, actor="root")
    said, by = facts_in("en", item, viewer)
    assert said == english and by == "by root"
    said, by = facts_in("ja", item, viewer)
    assert said == japanese and by == "操作した人: root"
    assert "replayed" not in said and "False" not in said
