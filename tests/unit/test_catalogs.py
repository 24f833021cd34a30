"""The two languages are complete and current: every sentence of the sources is in both catalogs, translated, with
the same placeholders; no template shows text outside ``{% trans %}`` or ``_()``; the catalogs are not stale
(``python -m nidan.web.catalog_files update`` brings them in step)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog

from nidan.web import catalog_files
from nidan.web.i18n import LOCALES, catalog, from_accept_language, negotiate
from nidan.web.pages.rendering import environment

AREAS = list(catalog_files.AREAS)
TEMPLATES = Path(catalog_files.PACKAGE) / "web" / "templates"
UPDATE = "run `python -m nidan.web.catalog_files update`, then translate what it added"


def ids(messages: Catalog) -> set[object]:
    return {message.id if isinstance(message.id, str) else tuple(message.id) for message in messages if message.id}


@pytest.fixture(scope="module")
def extracted() -> dict[str, Catalog]:
    return catalog_files.extract()


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("area", AREAS)
def test_the_catalog_holds_exactly_what_the_sources_say(extracted: dict[str, Catalog], area: str, locale: str) -> None:
    on_file = catalog_files.read(locale, area)
    missing = ids(extracted[area]) - ids(on_file)
    gone = ids(on_file) - ids(extracted[area])
    assert not missing, f"{locale}/{area}.po lacks {sorted(map(str, missing))[:5]}: {UPDATE}"
    assert not gone, f"{locale}/{area}.po keeps msgids no source uses: {sorted(map(str, gone))[:5]}: {UPDATE}"


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("area", AREAS)
def test_every_sentence_is_translated_with_its_placeholders(area: str, locale: str) -> None:
    on_file = catalog_files.read(locale, area)
    untranslated = [
        message.id
        for message in on_file
        if message.id and (not message.string or (not isinstance(message.string, str) and not all(message.string)))
    ]
    assert not untranslated, f"{locale}/{area}.po: no translation for {untranslated[:5]}"
    problems = [(message.id, errors) for message, errors in on_file.check()]
    assert not problems, f"{locale}/{area}.po: placeholders differ from the msgid: {problems[:3]}"


#: Visible attributes whose text people read.
_VISIBLE_ATTRIBUTE = re.compile(r'\b(?:title|placeholder|aria-label|alt|summary)="([^"]*)"')
_CODE = re.compile(r"<code\b[^>]*>.*?</code>", re.S)
_TAG = re.compile(r"<[^>]*>", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_ENTITY = re.compile(r"&[a-z]+;|&#\d+;")
#: Stands for an expression or a block tag between two pieces of text.
_GAP = "\x00"
#: Not words to translate: the product's name and markup.
_NOT_WORDS = {"nidan", "doctype", "html"}


def _visible(text: str) -> list[str]:
    return [" ".join(part.split()) for part in text.split(_GAP) if re.search(r"[A-Za-z]{2,}", part)]


def untranslated_text(source: str) -> list[str]:
    """Text a person would read that the template writes outside ``{% trans %}`` (``{{ _() }}`` is an
    expression, so it is a gap here, never text)."""
    pieces: list[str] = []
    inside_trans = False
    previous = ""
    for _, kind, value in environment().lex(source):
        if kind == "name" and previous == "block_begin":
            inside_trans = value == "trans" or (inside_trans and value != "endtrans")
        previous = kind if kind != "whitespace" else previous
        pieces.append(value if kind == "data" and not inside_trans else _GAP)
    page = _COMMENT.sub(_GAP, "".join(pieces))
    found = [v for value in _VISIBLE_ATTRIBUTE.findall(page) for v in _visible(value)]
    text = _ENTITY.sub(" ", _TAG.sub(_GAP, _CODE.sub(_GAP, page)))
    for piece in _visible(text):
        if [w for w in re.findall(r"[A-Za-z][A-Za-z']+", piece) if w.lower() not in _NOT_WORDS]:
            found.append(piece)
    return found


@pytest.mark.parametrize(
    "template", sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.html")), ids=str
)
def test_no_template_shows_text_outside_trans(template: str) -> None:
    leftovers = untranslated_text((TEMPLATES / template).read_text(encoding="utf-8"))
    assert not leftovers, f"{template}: text outside {{% trans %}} or _(): {leftovers[:5]}"


def test_the_scan_finds_what_it_should() -> None:
    """The scanner above can fail: plain text, a visible attribute, and text after an expression are found; text
    in trans blocks, expressions, comments and code samples is not."""
    assert untranslated_text("<p>Sign in</p>") == ["Sign in"]
    assert untranslated_text('<input placeholder="Your name">') == ["Your name"]
    assert untranslated_text("<p>{{ name }} signed in</p>") == ["signed in"]
    assert untranslated_text("{% trans %}Sign in{% endtrans %}<p>{{ _('Sign in') }}</p>") == []
    assert untranslated_text("<!-- a note --><code>nidan serve</code>") == []


def test_a_translation_is_used_and_english_is_the_msgid() -> None:
    text = "Sign in to continue."
    assert catalog("en").gettext(text) == text
    assert catalog("ja").gettext(text) != text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7", "ja"),
        ("en-GB,en;q=0.9,ja;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,ja;q=0.5", "ja"),
        ("fr,de", None),
        ("ja;q=0, en;q=0.1", "en"),
        ("ja;q=abc,en", "en"),
        ("", None),
    ],
)
def test_accept_language_picks_the_first_language_nidan_speaks(header: str, expected: str | None) -> None:
    assert from_accept_language(header) == expected


def test_the_person_then_the_switcher_then_the_browser_then_the_instance() -> None:
    assert negotiate(preferred="ja", cookie="en", accept_language="en", default="en") == "ja"
    assert negotiate(preferred=None, cookie="ja", accept_language="en", default="en") == "ja"
    assert negotiate(preferred=None, cookie="xx", accept_language="ja-JP", default="en") == "ja"
    assert negotiate(preferred=None, cookie=None, accept_language="fr", default="ja") == "ja"
    assert negotiate(preferred="klingon", cookie=None, accept_language=None, default="nope") == "en"
