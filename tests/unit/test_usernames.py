"""Usernames by PRECIS ``UsernameCaseMapped`` (RFC 8265) and nidan's own alphabet (issue 16)."""

from __future__ import annotations

import re
import unicodedata

import pytest

from nidan.core import usernames
from nidan.core.usernames import (
    APPLICATION_NAME_PATTERN,
    USERNAME_PATTERN,
    application_name_key,
    normalised_username,
    username_key,
    username_problem,
)
from nidan.texts import Text


@pytest.mark.parametrize(
    ("typed", "key"),
    [
        pytest.param("tanaka", "tanaka", id="ascii"),
        pytest.param("TANAKA", "tanaka", id="upper-case"),
        pytest.param("ｔａｎａｋａ", "tanaka", id="fullwidth"),
        pytest.param("ＴＡＮＡＫＡ", "tanaka", id="fullwidth-upper-case"),
        pytest.param("\u3000tanaka\u3000", "tanaka", id="ideographic-spaces-around"),
        pytest.param("tanaka.hiroshi", "tanaka.hiroshi", id="dot"),
        pytest.param("tanaka_h-2", "tanaka_h-2", id="underscore-dash-digit"),
        pytest.param("田中", "田中", id="kanji"),
        pytest.param("田中たろう", "田中たろう", id="kanji-hiragana"),
        pytest.param("タナカ・ー", None, id="katakana-middle-dot"),  # ・ is punctuation: refused
        pytest.param("田中タロー2", "田中タロー2", id="kanji-katakana-prolonged-mark-digit"),
        pytest.param("田中taro", "田中taro", id="kanji-latin"),
        pytest.param("ｶﾞﾝﾀﾞﾑ", "ガンダム", id="halfwidth-katakana"),
        pytest.param("々木", "々木", id="iteration-mark"),
        pytest.param("Müller", "müller", id="latin-diacritic"),
        pytest.param("Mu\u0308ller", "müller", id="decomposed-nfc"),
        pytest.param("STRAẞE", "straße", id="capital-sharp-s-lower-case-not-folded"),
        pytest.param("ΣΩΚΡΑΤΗΣ", "σωκρατης", id="greek"),
        pytest.param("Иван", "иван", id="cyrillic"),
        pytest.param("김철수", "김철수", id="hangul"),
        pytest.param("नमस्ते", "नमस्ते", id="devanagari-ending-with-a-mark"),
        pytest.param("דוד", "דוד", id="hebrew"),
        pytest.param("a" * 64, "a" * 64, id="64-characters"),
    ],
)
def test_names_people_type_have_their_key(typed: str, key: str | None) -> None:
    assert username_key(typed) == key
    if key is not None:
        assert username_problem(typed) is None
        assert re.match(USERNAME_PATTERN, key), "the document's pattern must accept every key"
        assert username_key(key) == key, "a key is its own key"
        assert username_key(normalised_username(typed)) == key, "the stored name finds the same account"


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        pytest.param("", usernames.EMPTY, id="empty"),
        pytest.param(" \u3000 ", usernames.EMPTY, id="empty-after-mapping"),
        pytest.param("p\u0430ypal", usernames.MIXED_SCRIPTS, id="latin-with-cyrillic-a"),
        pytest.param("\u0440aypal", usernames.MIXED_SCRIPTS, id="cyrillic-er-first"),
        pytest.param("\u03bfmega", usernames.MIXED_SCRIPTS, id="latin-with-greek-omicron"),
        pytest.param("田中тaro", usernames.MIXED_SCRIPTS, id="japanese-with-cyrillic"),
        pytest.param("김田中たろう", usernames.MIXED_SCRIPTS, id="hangul-with-kana"),
        pytest.param("user\u09e7", usernames.MIXED_SCRIPTS, id="latin-with-bengali-digit"),
        pytest.param("\u09e71", usernames.MIXED_DIGITS, id="two-number-systems"),
        pytest.param("ta\u200dnaka", usernames.INVISIBLE, id="zero-width-joiner"),
        pytest.param("ta\u200bnaka", usernames.INVISIBLE, id="zero-width-space"),
        pytest.param("ta\u200cnaka", usernames.INVISIBLE, id="zero-width-non-joiner"),
        pytest.param("\ufefftanaka", usernames.INVISIBLE, id="byte-order-mark"),
        pytest.param("tanaka\u202e", usernames.INVISIBLE, id="bidi-override"),
        pytest.param("ta\u2066naka", usernames.INVISIBLE, id="bidi-isolate"),
        pytest.param("ta\u00adnaka", usernames.INVISIBLE, id="soft-hyphen"),
        pytest.param("ta\x00naka", usernames.CONTROLS, id="nul"),
        pytest.param("ta\tnaka", usernames.CONTROLS, id="tab"),
        pytest.param("ta\x85naka", usernames.CONTROLS, id="c1-control"),
        pytest.param("tanaka hiroshi", usernames.SPACES, id="space-inside"),
        pytest.param("田中\u3000太郎", usernames.SPACES, id="ideographic-space-inside"),
        pytest.param("tanaka!", usernames.ALPHABET, id="ascii-punctuation"),
        pytest.param("tanaka@example.com", usernames.ALPHABET, id="at-sign"),
        pytest.param("tanaka☃", usernames.ALPHABET, id="symbol"),
        pytest.param("ta\ue000naka", usernames.ALPHABET, id="private-use"),
        pytest.param("ﬁsh", usernames.COMPATIBILITY, id="ligature"),
        pytest.param("①tanaka", usernames.COMPATIBILITY, id="circled-digit"),
        pytest.param("tanaka\U000e0001", usernames.INVISIBLE, id="language-tag"),
        pytest.param("ta\U0010fffdnaka", usernames.ALPHABET, id="private-use-plane-16"),
        pytest.param("tanaka\u0378", usernames.UNASSIGNED, id="unassigned"),
        pytest.param(".tanaka", usernames.EDGES, id="leading-dot"),
        pytest.param("tanaka-", usernames.EDGES, id="trailing-dash"),
        pytest.param("\u0301tanaka", usernames.EDGES, id="leading-combining-mark"),
        pytest.param("a" * 65, usernames.TOO_LONG, id="65-characters"),
        pytest.param("田" * 65, usernames.TOO_LONG, id="65-kanji"),
        pytest.param("a" * 100_000, usernames.TOO_LONG, id="huge"),
        pytest.param("aדוד", usernames.BIDI, id="bidi-rule"),
        pytest.param("\ud800", usernames.ALPHABET, id="lone-surrogate"),
    ],
)
def test_refused_names_say_why(typed: str, problem: Text) -> None:
    assert username_key(typed) is None
    assert username_problem(typed) == problem
    assert str(problem).startswith("A username"), "the document's fuzz test recognises the refusals by this start"


@pytest.mark.parametrize("name", ["alice", "Alice", "bob.smith", "b0b_x", "x-1", "ROOT", "a1", "ＡＬＩＣＥ"])
def test_the_names_of_before_keep_their_keys(name: str) -> None:
    """Every name the ASCII rule allowed has the key it had then (NFKC, case folded): accounts keep working."""
    old_key = unicodedata.normalize("NFKC", name).casefold()
    assert re.match(APPLICATION_NAME_PATTERN, old_key)
    assert username_key(name) == old_key


def test_the_display_name_keeps_its_case_and_maps_widths() -> None:
    assert normalised_username(" Ａｌｉｃｅ ") == "Alice"
    assert normalised_username("ｶﾞﾝﾀﾞﾑ") == "ガンダム"
    assert normalised_username("Mu\u0308ller") == "Müller"
    assert normalised_username("\u3000田中\u3000") == "田中"


def test_application_names_stay_ascii() -> None:
    assert application_name_key(" Wiki ") == "wiki"
    assert application_name_key("ＷＩＫＩ") == "wiki"
    assert application_name_key("経費") is None
    assert application_name_key("p\u0430ypal") is None


def test_the_pattern_refuses_what_it_can_state() -> None:
    pattern = re.compile(USERNAME_PATTERN)
    for refused in ("", "Tanaka", ".a", "a.", "a b", "a!b", "a\u200db", "a\u202eb", "a\ufeffb", "a\x85b", "a" * 65):
        assert not pattern.match(refused), repr(refused)
    for accepted in ("a", "tanaka.hiroshi", "田中", "ガンダム", "müller"):
        assert pattern.match(accepted), accepted
