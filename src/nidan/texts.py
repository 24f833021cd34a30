"""Sentences people read, kept as gettext msgids with named parameters until they are shown.

nidan's sentences are written in English in the source, marked with ``_`` (or ``ngettext`` for a count), and carried
as ``Text`` values: an error raised deep in a service does not know who will read it. The face that shows it renders
it in the reader's language (``web/i18n.py``: the Japanese and English catalogs); the command line and the logs
render it in English, the msgid itself (``str(text)``). Parameters are named (``%(seconds)d``) so a translation may
put them in its own order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

#: The languages nidan speaks (the first is the default of the default).
LOCALES = ("en", "ja")


class Translations(Protocol):
    """A catalog of one language (``gettext.GNUTranslations`` is one)."""

    def gettext(self, message: str, /) -> str: ...

    def ngettext(self, singular: str, plural: str, n: int, /) -> str: ...


@dataclass(frozen=True, slots=True)
class Text:
    """One sentence (or a few) to translate: ``msgid``, its ``plural`` and count when it has one, and the values of
    its named parameters."""

    msgid: str
    plural: str | None = None
    n: int = 1
    params: tuple[tuple[str, object], ...] = ()

    def render(self, translations: Translations | None = None) -> str:
        """In the language of ``translations`` (English, the msgid, without one)."""
        if translations is None:
            template = self.msgid if self.plural is None or self.n == 1 else self.plural
        elif self.plural is None:
            template = translations.gettext(self.msgid)
        else:
            template = translations.ngettext(self.msgid, self.plural, self.n)
        if not self.params:
            return template
        # A parameter may be a Text itself ("wait %(wait)s", the wait in words): it speaks the same language.
        return template % {
            name: value.render(translations) if isinstance(value, Text) else value for name, value in self.params
        }

    def __str__(self) -> str:
        return self.render()


def _(msgid: str, /, **params: object) -> Text:
    """Mark ``msgid`` for translation; ``params`` fill its ``%(name)s`` placeholders when it is shown."""
    return Text(msgid, params=tuple(params.items()))


def ngettext(singular: str, plural: str, n: int, /, **params: object) -> Text:
    """Mark a sentence with a count: ``%(n)d`` in it is ``n`` unless ``params`` say otherwise."""
    return Text(singular, plural, n, tuple({"n": n, **params}.items()))


def joined(parts: Iterable[Text], translations: Translations | None = None, *, separator: str = " ") -> str:
    """Several sentences as one message (Japanese writes them with no space between; the caller says so)."""
    return separator.join(part.render(translations) for part in parts)
