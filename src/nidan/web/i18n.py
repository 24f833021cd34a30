"""The reader's language: which one a request gets, and its catalog.

The catalogs are gettext ``.po`` files under ``web/locales/<locale>/LC_MESSAGES/`` (several per language, one per
area of nidan, merged when loaded). They are compiled in memory when a language is first needed, with Babel, so no
``.mo`` file is kept in the repository or needs building. ``python -m nidan.web.catalog_files update`` extracts the
msgids from the sources and updates the files; a test fails when one is missing, untranslated or stale.

The language is, in this order: the signed-in person's preference, the ``nidan_lang`` cookie (the footer's
switcher), the browser's ``Accept-Language``, ``ui.default_locale``.
"""

from __future__ import annotations

import gettext
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from starlette.requests import Request

from nidan.core.zones import known_time_zone
from nidan.texts import LOCALES, Text, joined

DEFAULT_LOCALE = "en"
LANG_COOKIE = "nidan_lang"
LOCALE_DIR = Path(__file__).parent / "locales"
#: The names of the languages, each in itself, for the switcher.
LANGUAGE_NAMES = {"en": "English", "ja": "日本語"}
#: Accept-Language entries nidan reads at most (a header is client input).
_MAX_RANGES = 16


@dataclass(frozen=True)
class Catalog:
    """One language's translations."""

    locale: str
    translations: gettext.NullTranslations

    @property
    def separator(self) -> str:
        """Between sentences of one message: Japanese writes none."""
        return "" if self.locale == "ja" else " "

    def gettext(self, message: str, /) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int, /) -> str:
        return self.translations.ngettext(singular, plural, n)

    def text(self, *parts: Text) -> str:
        """``parts`` rendered in this language, as one message."""
        return joined(parts, self, separator=self.separator)


@cache
def catalog(locale: str) -> Catalog:
    """The catalog of ``locale`` (one of ``LOCALES``), compiled from its ``.po`` files once per process."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    if locale not in LOCALES:
        raise ValueError(f"no catalog for {locale!r}")
    merged: gettext.NullTranslations = gettext.NullTranslations()
    for path in sorted((LOCALE_DIR / locale / "LC_MESSAGES").glob("*.po"), reverse=True):
        with path.open("rb") as po:
            messages = read_po(po, locale=locale)
        compiled = BytesIO()
        write_mo(compiled, messages)
        compiled.seek(0)
        translations = gettext.GNUTranslations(compiled)
        translations.add_fallback(merged)
        merged = translations
    return Catalog(locale, merged)


def _ranges(accept_language: str) -> Iterator[tuple[float, str]]:
    for index, item in enumerate(accept_language.split(",")[:_MAX_RANGES]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            yield quality - index / 1000, tag.strip().lower()  # equal q: the earlier one first


def from_accept_language(accept_language: str | None) -> str | None:
    """The first of ``LOCALES`` the header asks for (``ja-JP`` is ``ja``), by its q-values; ``None``: none."""
    if not accept_language:
        return None
    for _, tag in sorted(_ranges(accept_language), reverse=True):
        primary = tag.split("-", 1)[0]
        if primary in LOCALES:
            return primary
    return None


def negotiate(*, preferred: str | None, cookie: str | None, accept_language: str | None, default: str) -> str:
    """The language of a request: the person's preference, the switcher's cookie, the browser's, the instance's."""
    for candidate in (preferred, cookie):
        if candidate in LOCALES:
            return candidate
    return from_accept_language(accept_language) or (default if default in LOCALES else DEFAULT_LOCALE)


_current: ContextVar[Catalog | None] = ContextVar("nidan_catalog", default=None)
_zone: ContextVar[str] = ContextVar("nidan_time_zone", default="UTC")
#: How a moment and a day are written, per language (CLDR patterns): 2026年12月7日 22:41 JST, 7 Dec 2026, 13:41 GMT.
_MOMENT = {"en": "d MMM y, HH:mm zzz", "ja": "y年M月d日 H:mm zzz"}
#: The same to the second, where the exact moment matters (the security log, blocks).
_EXACT = {"en": "d MMM y, HH:mm:ss zzz", "ja": "y年M月d日 H:mm:ss zzz"}
_DAY = {"en": "d MMM y", "ja": "y年M月d日"}


def current() -> Catalog:
    """The catalog of the page being rendered (English outside one)."""
    return _current.get() or catalog(DEFAULT_LOCALE)


@contextmanager
def rendering_in(chosen: Catalog, time_zone: str = "UTC") -> Iterator[None]:
    """Templates rendered inside speak ``chosen``'s language and show times in ``time_zone``."""
    token, zone_token = _current.set(chosen), _zone.set(time_zone)
    try:
        yield
    finally:
        _current.reset(token)
        _zone.reset(zone_token)


def moment(value: datetime, *, seconds: bool = False) -> str:
    """A stored time for people, in the page's language and time zone, with the zone named."""
    from babel.dates import format_datetime

    locale = current().locale
    pattern = (_EXACT if seconds else _MOMENT)[locale]
    return format_datetime(value, pattern, tzinfo=ZoneInfo(_zone.get()), locale=locale)


def day(value: datetime) -> str:
    """The day of a stored time, in the page's language and time zone."""
    from babel.dates import format_date

    locale = current().locale
    return format_date(value.astimezone(ZoneInfo(_zone.get())), _DAY[locale], locale=locale)


#: The cookie the page script sets to the browser's own zone (``Intl``), used until the person chooses one.
ZONE_COOKIE = "nidan_tz"


def time_zone_of(request: Request) -> str:
    """The person's chosen zone, else their browser's (when it is a zone nidan knows), else UTC."""
    state = request.scope.get("state") or {}
    for candidate in (state.get("user_time_zone"), request.cookies.get(ZONE_COOKIE)):
        if candidate and known_time_zone(candidate):
            return str(candidate)
    return "UTC"


def locale_of(request: Request) -> str:
    """The language of ``request`` (see the module's docstring); a request whose signed-in person is known has
    their preference in ``request.state.user_locale`` (``web.deps.speaking_to``)."""
    state = request.scope.get("state") or {}
    app_state = getattr(request.scope.get("app"), "state", None)
    return negotiate(
        preferred=state.get("user_locale"),
        cookie=request.cookies.get(LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
        default=getattr(app_state, "default_locale", DEFAULT_LOCALE),
    )


def catalog_for(request: Request) -> Catalog:
    return catalog(locale_of(request))
