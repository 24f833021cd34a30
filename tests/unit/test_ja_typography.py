"""Japanese writes numbers and units together (「30日間」「10分間」, not 「30 日間」), and a number is not set off
from the Japanese before it (「ユーザー名は%(max)d文字以内」): one style in every ja msgstr (see GLOSSARY.md)."""

from __future__ import annotations

import re

import pytest

from nidan.web import catalog_files

#: Counters and units a number is written with.
UNITS = "日分秒時回件個人台文桁年週行"
#: A number: digits, or a placeholder (``%(n)d``, and ``%(count)s`` as {% trans %} writes every placeholder).
NUMBER = r"(?:\d+|%\(\w+\)[sd])"
SPACED = (
    re.compile(rf"{NUMBER}[ \u3000]+[{UNITS}]"),  # 「30 日間」「%(n)d 秒」
    re.compile(rf"[\u3040-\u30ff\u4e00-\u9fff][ \u3000]+{NUMBER}[{UNITS}]"),  # 「では %(count)s日間」
)


def spaced_numbers(text: str) -> list[str]:
    return [found.group() for pattern in SPACED for found in pattern.finditer(text)]


def test_the_scan_finds_what_it_should() -> None:
    assert spaced_numbers("30 日間") == ["30 日"]
    assert spaced_numbers("約%(n)d 分の遅れ") == ["%(n)d 分"]
    assert spaced_numbers("このデバイスでは %(count)s日間確認しない") == ["は %(count)s日"]
    assert spaced_numbers("10\u3000分") == ["10\u3000分"]
    assert spaced_numbers("30日間、%(n)d分、6桁") == []
    assert spaced_numbers("nidan の 2 段階") == []  # not a unit it knows: left alone
    assert spaced_numbers("%(latest)s 以前") == []  # a date, then a word: Latin keeps its space


@pytest.mark.parametrize("area", list(catalog_files.AREAS))
def test_japanese_writes_numbers_and_units_together(area: str) -> None:
    offending = []
    for message in catalog_files.read("ja", area):
        strings = [message.string] if isinstance(message.string, str) else list(message.string or ())
        offending += [(message.id, found) for text in strings for found in spaced_numbers(text or "")]
    assert not offending, f"ja/{area}.po: write numbers and units together (「30日間」): {offending[:5]}"
