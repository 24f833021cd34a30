"""``typed_code``: a code as people type it (issue 16), the one reading every code format starts from."""

from __future__ import annotations

import pytest

from nidan.core import recovery, totp
from nidan.core.codes import typed_code


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        pytest.param("631893", "631893", id="ascii"),
        pytest.param("６３１８９３", "631893", id="fullwidth-digits"),
        pytest.param("６３１\u3000８９３", "631893", id="ideographic-space"),
        pytest.param("\u3000631 893\n", "631893", id="spaces-anywhere"),
        pytest.param("631\u00a0893", "631893", id="no-break-space"),
        pytest.param("⁶³¹⁸⁹³", "631893", id="superscripts"),
        pytest.param("７ｋｑ２ｍ－ｘ９ｃ４ｔ", "7kq2m-x9c4t", id="fullwidth-recovery-code"),
        pytest.param("７ＫＱ２Ｍ－Ｘ９Ｃ４Ｔ", "7KQ2M-X9C4T", id="fullwidth-upper-case-kept"),
    ],
)
def test_what_people_type_is_read_as_the_plain_code(typed: str, meant: str) -> None:
    assert typed_code(typed) == meant


@pytest.mark.parametrize(
    "dash",
    [
        pytest.param("-", id="hyphen-minus"),
        pytest.param("\u30fc", id="prolonged-sound-mark"),  # ー: what an IME gives in kana mode
        pytest.param("\uff70", id="halfwidth-prolonged-sound-mark"),
        pytest.param("\uff0d", id="fullwidth-hyphen-minus"),
        pytest.param("\u2015", id="horizontal-bar"),
        pytest.param("\u2010", id="hyphen"),
        pytest.param("\u2011", id="non-breaking-hyphen"),
        pytest.param("\u2013", id="en-dash"),
        pytest.param("\u2014", id="em-dash"),
        pytest.param("\u2212", id="minus-sign"),
        pytest.param("\ufe63", id="small-hyphen-minus"),
        pytest.param("\u2500", id="box-drawing-line"),
    ],
)
def test_every_dash_is_read_as_a_hyphen(dash: str) -> None:
    assert typed_code(f"7kq2m{dash}x9c4t") == "7kq2m-x9c4t"
    assert recovery.normalize(f"7kq2m{dash}x9c4t") == "7kq2mx9c4t"


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("", id="empty"),
        pytest.param(" \u3000\t", id="only-spaces"),
        pytest.param("63189a", id="a-letter"),
        pytest.param("６３１８９ａ", id="a-fullwidth-letter"),
        pytest.param("63189\u0301" + "3", id="combining-acute"),  # NFKC keeps the mark
        pytest.param("".join(d + "\u20e3" for d in "631893"), id="keycap-marks"),
        pytest.param("٦٣١٨٩٣", id="arabic-indic-digits"),  # no compatibility form: NFKC keeps them
        pytest.param("631-893", id="a-dash"),
        pytest.param("631\u30fc893", id="a-prolonged-sound-mark"),
        pytest.param("6318930", id="seven-digits"),
        pytest.param("\u200b631893", id="zero-width-space"),  # not a space: refused, not silently dropped
    ],
)
def test_what_is_no_totp_code_stays_refused(typed: str) -> None:
    assert totp.normalize_code(typed) is None


def test_normalising_is_idempotent_and_never_raises() -> None:
    for typed in ("６３１　８９３", "７ｋｑ２ｍーｘ９ｃ４ｔ", "\ud800", "\x00", "ｶﾞ", "①②③"):
        once = typed_code(typed)
        assert typed_code(once) == once


def test_a_code_is_only_ever_mapped_never_invented() -> None:
    """Nothing that is not a digit after NFKC becomes one: the normaliser adds no way to guess a code."""
    assert totp.normalize_code("ー" * 6) is None
    assert recovery.normalize("ーーーーーーーーーー") is None
    assert typed_code("ａｂｃ") == "abc"
