"""A count in a sentence goes through ngettext with both forms ("1 minute", "2 minutes"; Japanese has one form):
no sentence builds its plural itself, and the page script's countdown gets both forms from the catalog."""

from __future__ import annotations

import re

import pytest

from nidan.texts import ngettext
from nidan.web import catalog_files
from nidan.web.i18n import catalog

#: A count followed by a unit, in a sentence without a plural form: "for %(n)s minutes" says "for 1 minutes".
#: A range's upper end ("0 to %(days)d days") is always plural and allowed.
_COUNTED = re.compile(r"(?<!to )%\(\w+\)[sd] (?:minute|second|hour|day|week|code|attempt|time)s?\b")


def counts_without_plural(messages: object) -> list[str]:
    return [
        message.id
        for message in messages  # type: ignore[attr-defined]
        if isinstance(message.id, str) and message.id and _COUNTED.search(message.id)
    ]


def test_no_sentence_builds_its_own_plural() -> None:
    found = [msgid for area in catalog_files.extract().values() for msgid in counts_without_plural(area)]
    assert not found, f"use ngettext (or {{% trans count=... %}}{{% pluralize %}}) for: {found[:5]}"


def test_the_scan_finds_what_it_should() -> None:
    from babel.messages.catalog import Catalog

    sample = Catalog()
    sample.add("You can try again in %(n)s seconds.")
    sample.add("blocked for %(n)d minute")
    sample.add(("for %(n)d minute", "for %(n)d minutes"))
    sample.add("The grace period is 0 to %(days)d days.")
    assert counts_without_plural(sample) == ["You can try again in %(n)s seconds.", "blocked for %(n)d minute"]


@pytest.mark.parametrize(("n", "said"), [(1, "wait 1 minute"), (2, "wait 2 minutes")])
def test_ngettext_says_one_and_many_in_english(n: int, said: str) -> None:
    text = ngettext("wait %(n)d minute", "wait %(n)d minutes", n)
    assert str(text) == said
    assert text.render(catalog("en")) == said


@pytest.mark.parametrize(("n", "said"), [(1, "1 second"), (2, "2 seconds")])
def test_the_catalogs_plural_forms_in_english(n: int, said: str) -> None:
    assert ngettext("%(n)d second", "%(n)d seconds", n).render(catalog("en")) == said
    assert ngettext("%(n)d second", "%(n)d seconds", n).render(catalog("ja")) == f"{n}秒"
