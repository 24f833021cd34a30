"""Reading a page as a person does, to tell whether a Japanese page kept English sentences: its visible text nodes,
the English sentences of the catalogs (msgids of two words or more), and the comparison of a Japanese rendering
with the English one of the same page."""

from __future__ import annotations

import html
import re
from functools import cache

import httpx

from nidan.texts import LOCALES
from nidan.web import catalog_files

JA = {"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"}
EN = {"Accept-Language": "en-GB,en;q=0.9"}
LANGUAGES = {"en": EN, "ja": JA}
assert set(LANGUAGES) == set(LOCALES)

#: Not read as sentences: scripts, styles, and commands, codes or keys in <code> and <pre>.
_HIDDEN = re.compile(r"<(script|style|code|pre)\b.*?</\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]*>")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
#: Words people read in the attributes a browser shows or speaks.
_SHOWN_ATTRIBUTE = re.compile(r'\b(?:placeholder|aria-label|title|alt)="([^"]*)"')
_KANA = re.compile(r"[\u3040-\u30ff]")
#: A word of a sentence: letters between spaces, maybe with punctuation (an address or a name with digits is not).
_WORD = re.compile(r"(?<!\S)[(\"'“]?[A-Za-z][A-Za-z'’-]*[.,:;!?)\"'”…]*(?!\S)")
_PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|%%")
#: Names that stay in Latin letters in Japanese: products, the switcher's "English", scope names.
KEPT_IN_LATIN = re.compile(
    r"Google Authenticator|Microsoft Authenticator|FreeOTP|Aegis|nidan|English|read_repository|write_repository|"
    r"read_registry|write_registry"
)


def lang_of(page: httpx.Response) -> str | None:
    found = re.search(r'<html lang="([a-z-]+)"', page.text)
    return found.group(1) if found else None


def visible_texts(page: httpx.Response) -> list[str]:
    """The page's text nodes (and shown attributes), entities decoded and white space collapsed."""
    source = _COMMENT.sub(" ", page.text)
    pieces = _SHOWN_ATTRIBUTE.findall(source) + _TAG.split(_HIDDEN.sub(" ", source))
    texts = (" ".join(html.unescape(piece).split()) for piece in pieces)
    return [text for text in texts if text]


def has_kana(page: httpx.Response) -> bool:
    return any(_KANA.search(text) for text in visible_texts(page))


def _english_words(text: str) -> int:
    return len(_WORD.findall(KEPT_IN_LATIN.sub(" ", text)))


#: A catalog's sentence counts from two words ("Sign out"); a text both pages show, from three (a name of two words,
#: "Org PLATFORM", is the same in every language).
CATALOG_WORDS = 2
SHARED_WORDS = 3


def _fragment_pattern(fragment: str) -> str | None:
    """A msgid's fragment (the text between its tags) as a pattern for a whole text node; ``None`` when it has fewer
    than ``CATALOG_WORDS`` English words of its own."""
    text = " ".join(html.unescape(fragment).split())
    if _english_words(_PLACEHOLDER.sub(" ", text)) < CATALOG_WORDS:
        return None
    return ".+?".join(re.escape(part) for part in _PLACEHOLDER.split(text))


@cache
def english_sentences() -> re.Pattern[str]:
    """Every English sentence of the catalogs of two words or more, as one pattern for a whole text node (a
    parameter matches anything; a msgid with tags in it is cut at its tags, as the page's text nodes are)."""
    patterns: set[str] = set()
    for area in catalog_files.AREAS:
        for message in catalog_files.read("en", area):
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            for msgid in ids:
                for fragment in _TAG.split(msgid or ""):
                    pattern = _fragment_pattern(fragment)
                    if pattern is not None:
                        patterns.add(pattern)
    return re.compile("|".join(sorted(patterns, key=len, reverse=True)))


def english_left(japanese: httpx.Response, english: httpx.Response) -> list[str]:
    """The text nodes of the Japanese page that are English: a sentence of the English catalog, or a text of three
    English words or more that the English rendering of the same page shows too."""
    sentences = english_sentences()
    shown_in_english = set(visible_texts(english))
    left = []
    for text in visible_texts(japanese):
        words = _english_words(text)
        if _KANA.search(text) or words < CATALOG_WORDS:
            continue
        if sentences.fullmatch(text) or (words >= SHARED_WORDS and text in shown_in_english):
            left.append(text)
    return sorted(set(left))


def assert_in_language(page: httpx.Response, language: str, english: httpx.Response | None = None) -> None:
    """``page`` says it is in ``language`` and is: Japanese has kana and none of the English sentences (of the
    catalogs, or of ``english``, the same page in English); English has no kana (but the switcher's 日本語)."""
    assert lang_of(page) == language, page.text[:300]
    if language == "ja":
        assert has_kana(page), "no Japanese on the page"
        left = english_left(page, english if english is not None else page)
        assert not left, f"English left on the Japanese page: {left}"
    else:
        texts = [text for text in visible_texts(page) if text != "日本語"]
        japanese = [text for text in texts if _KANA.search(text)]
        assert not japanese, f"Japanese on the English page: {japanese}"
