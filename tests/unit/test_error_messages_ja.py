"""Errors read in Japanese: raised in English deep in nidan, rendered through the web's catalog in the reader's
language, with their values in the sentence, while the ``code`` and the English ``message`` stay as they are."""

from __future__ import annotations

import json

import pytest

from nidan.core import user_agents
from nidan.core.passwords import password_problem
from nidan.errors import ClockSkewDetected, InvalidCode, KeyMissing, NidanError, RateLimited, UserNotFound
from nidan.texts import _
from nidan.web.i18n import catalog
from nidan.web.problems import error_response

JA = catalog("ja")
EN = catalog("en")


def ja(error: NidanError) -> str:
    return JA.text(*error.texts)


def test_a_short_block_is_said_in_seconds() -> None:
    said = ja(RateLimited(5))
    assert "5秒" in said and "待ってから" in said
    assert not any(letter.isascii() and letter.isalpha() for letter in said)


def test_a_long_block_is_said_in_whole_minutes() -> None:
    said = ja(RateLimited(300))
    assert "5分" in said and "秒" not in said


def test_a_clock_behind_says_by_how_many_minutes() -> None:
    said = ja(ClockSkewDetected(-420))
    assert "7分" in said and "遅れ" in said
    assert "日付と時刻" in said  # the phone's settings, in the words the phone uses
    assert ja(ClockSkewDetected(420)).count("進んで") == 1


def test_a_wrong_code_that_starts_a_block_says_both() -> None:
    error = InvalidCode(blocked_seconds=2)
    said = ja(error)
    assert said.startswith(JA.gettext(InvalidCode.default_message.msgid))
    assert said.endswith("コードを間違えた回数が多すぎます。2秒待ってから、もう一度お試しください。")
    assert "。 " not in said  # Japanese puts no space between sentences
    assert error.message.endswith("Too many wrong codes: wait 2 seconds before you try again.")


def test_values_fill_the_japanese_sentence() -> None:
    assert ja(UserNotFound(_("No user named %(name)s exists.", name="'erin'"))) == (
        "'erin' というユーザー名のユーザーは存在しません。"
    )
    problem = password_problem("short")
    assert problem is not None and JA.text(problem) == "パスワードは12文字以上にしてください。"
    common = password_problem("qwerty123456")
    assert common is not None and JA.text(common).startswith("このパスワードはよく使われているため")
    named = password_problem("erin is here today", username="erin")
    assert named is not None and JA.text(named) == "ユーザー名（erin）を含まないパスワードにしてください。"
    said = ja(KeyMissing("ab12cd34", secrets=2))
    assert "2件" in said and "seal-ab12cd34.key" in said


def test_a_browser_is_named_in_the_readers_language() -> None:
    chrome_on_windows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36"
    assert JA.text(user_agents.label(chrome_on_windows)) == "Windows の Chrome"
    assert EN.text(user_agents.label(chrome_on_windows)) == user_agents.describe(chrome_on_windows)


@pytest.mark.parametrize(
    "error",
    [RateLimited(5), RateLimited(300), ClockSkewDetected(-420), InvalidCode(blocked_seconds=2), UserNotFound()],
    ids=lambda error: type(error).__name__,
)
def test_the_code_is_the_same_in_both_languages(error: NidanError) -> None:
    bodies = {language.locale: json.loads(error_response(error, language).body)["error"] for language in (EN, JA)}
    assert bodies["ja"]["code"] == bodies["en"]["code"] == error.code
    assert bodies["en"]["message"] == error.message
    assert bodies["ja"]["message"] != bodies["en"]["message"]
