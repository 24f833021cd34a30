"""Keeping the gettext catalogs in step with the sources: ``python -m nidan.web.catalog_files update [--area A]``.

Each language has one ``.po`` file per area of nidan (``AREAS``), so that the areas can be translated side by side;
a msgid belongs to the area of the first source that uses it. ``update`` extracts the msgids (Babel's extractors for
Python and Jinja2), adds the new ones to every language's files, drops the ones no source uses any more and keeps
every translation. English is written out (a msgstr equal to its msgid) so that "every msgid is translated" holds in
both languages. The tests (``tests/unit/test_catalogs.py``) run ``extract`` and fail when a file is stale.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

from nidan.texts import LOCALES
from nidan.web.i18n import LOCALE_DIR

PACKAGE = Path(__file__).resolve().parent.parent
#: Area file -> the package-relative sources whose msgids it holds (the first area that matches wins).
AREAS: dict[str, tuple[str, ...]] = {
    "errors": ("errors.py", "texts.py", "core/*.py", "services/*.py", "services/*/*.py"),
    "web": ("web/*.py", "web/api/*.py", "web/api/*/*.py", "web/pages/rendering.py", "web/pages/csrf.py"),
    "pages_signin": (
        "web/pages/auth.py",
        "web/pages/stepup.py",
        "web/pages/setup.py",
        "web/pages/recover.py",
        "web/pages/password_link.py",
        "web/templates/base.html",
        "web/templates/_support.html",
        "web/templates/_options.html",
        "web/templates/error.html",
        "web/templates/login.html",
        "web/templates/verify.html",
        "web/templates/reauth.html",
        "web/templates/setup*.html",
        "web/templates/recover.html",
        "web/templates/methods/*.html",
    ),
    "pages_security": (
        "web/pages/security.py",
        "web/pages/tokens.py",
        "web/pages/events.py",
        "web/templates/security*.html",
        "web/templates/_events_table.html",
        "web/templates/totp*.html",
        "web/templates/recovery_codes.html",
        "web/templates/disable_confirm.html",
        "web/templates/token*.html",
    ),
    "pages_account": ("web/pages/account.py", "web/templates/account*.html"),
    "pages_admin": ("web/pages/*.py", "web/templates/*.html"),
}
_KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2)}
_JINJA_OPTIONS = {"extensions": "jinja2.ext.i18n", "trimmed": "true"}
_HEADER = "nidan's %(area)s sentences"
_FIXED_DATE = datetime(2026, 12, 7, tzinfo=UTC)


def _matches(relative: str, pattern: str) -> bool:
    """``pattern`` with ``*`` standing for part of one path segment (``web/*.py`` is not ``web/pages/auth.py``,
    which ``fnmatch`` would say it is)."""
    return re.fullmatch("[^/]*".join(map(re.escape, pattern.split("*"))), relative) is not None


def _area_of(relative: str) -> str | None:
    for area, patterns in AREAS.items():
        if any(_matches(relative, pattern) for pattern in patterns):
            return area
    return None


def sources() -> Iterable[tuple[str, Path]]:
    """(area, file) for every source file with sentences, in a stable order."""
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".html") or "locales" in path.parts or path.name == "catalog_files.py":
            continue
        area = _area_of(path.relative_to(PACKAGE).as_posix())
        if area is not None:
            yield area, path


def extract() -> dict[str, Catalog]:
    """The msgids each area's sources use now."""
    catalogs = {area: Catalog(project="nidan", domain=area) for area in AREAS}
    owner: dict[object, str] = {}
    for area, path in sources():
        method = "jinja2" if path.suffix == ".html" else "python"
        options = _JINJA_OPTIONS if method == "jinja2" else {}
        for line, message, comments, context in extract_from_file(
            method, str(path), keywords=_KEYWORDS, options=options
        ):
            msgid = message if isinstance(message, str) else tuple(message)
            if isinstance(msgid, tuple) and len(msgid) == 1:
                msgid = msgid[0]
            key = msgid[0] if isinstance(msgid, tuple) else msgid
            first = owner.setdefault(key, area)
            where = (path.relative_to(PACKAGE).as_posix(), line)
            catalogs[first].add(msgid, locations=[where], auto_comments=comments, context=context)
    return catalogs


def po_path(locale: str, area: str) -> Path:
    return LOCALE_DIR / locale / "LC_MESSAGES" / f"{area}.po"


def read(locale: str, area: str) -> Catalog:
    path = po_path(locale, area)
    if not path.exists():
        return Catalog(locale=locale, project="nidan", domain=area)
    with path.open("rb") as handle:
        return read_po(handle, locale=locale, domain=area)


def update(only: str | None = None) -> None:
    """Bring every language's files in step with the sources (see the module's docstring); with ``only``, just
    that area's files (people translating different areas at once do not write each other's files)."""
    for area, template in extract().items():
        if only is not None and area != only:
            continue
        for locale in LOCALES:
            catalog = read(locale, area)
            catalog.update(copy.deepcopy(template), no_fuzzy_matching=True)  # update shares the template's messages
            catalog.obsolete.clear()
            if locale == "en":
                for message in catalog:
                    if isinstance(message.id, str) and message.id and not message.string:
                        message.string = message.id
                    elif not isinstance(message.id, str) and not all(message.string or ()):
                        message.string = tuple(message.id)
            catalog.header_comment = f"# {_HEADER % {'area': area}} ({locale}).\n"
            catalog.creation_date = catalog.revision_date = _FIXED_DATE  # no churn in git at each update
            path = po_path(locale, area)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as handle:
                write_po(handle, catalog, width=120, omit_header=False, sort_output=True, include_lineno=False)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if (
        arguments[:1] != ["update"]
        or len(arguments) not in (1, 3)
        or (len(arguments) == 3 and (arguments[1] != "--area" or arguments[2] not in AREAS))
    ):
        sys.exit(f"usage: python -m nidan.web.catalog_files update [--area {'|'.join(AREAS)}]")
    update(arguments[2] if len(arguments) == 3 else None)
