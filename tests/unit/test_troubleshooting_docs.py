"""Every error code people can meet has its own entry in the troubleshooting guide, in English and in Japanese.

An entry is a heading ``### `code` (status …)``: the code in backticks, then its HTTP status or CLI exit status in
parentheses, one code per heading. The codes are those of every ``NidanError`` subclass (``nidan.errors``), the
HTTP ones of ``nidan.web.problems`` and the two the handlers answer by name (``invalid_request``,
``internal_error``). A code without an entry fails, in either language; so does an entry for a code nidan no longer
has, two entries for one code, or an entry whose HTTP status is not the one nidan answers. The links of the two
guides and of the Japanese documents land on files and headings that exist.
"""

from __future__ import annotations

import inspect
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from nidan import errors
from nidan.web import problems

DOCS = Path(__file__).resolve().parents[2] / "docs"
GUIDES = {"English": DOCS / "troubleshooting.md", "Japanese": DOCS / "ja" / "troubleshooting.md"}
#: Answered by name by the web's handlers (request validation, an unexpected exception), not by a class alone.
NAMED_IN_HANDLERS = {"invalid_request": 422, "internal_error": 500}

#: ``### `code` (…)``: a troubleshooting entry.
ENTRY = re.compile(r"^###\s+`([a-z][a-z0-9_]*)`\s*\(([^)]*)\)", re.MULTILINE)
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$", re.MULTILINE)
BACKTICKED = re.compile(r"`([a-z][a-z0-9_]*)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def error_classes() -> list[type[errors.NidanError]]:
    """``NidanError`` and every subclass: those ``nidan.errors`` defines, and any defined elsewhere and imported."""
    found = {cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, errors.NidanError)}
    pending = [errors.NidanError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return sorted(found, key=lambda cls: cls.__name__)


def expected_statuses() -> dict[str, set[int]]:
    """Every code nidan answers with, and the HTTP statuses it comes with."""
    statuses: dict[str, set[int]] = {}
    for cls in error_classes():
        status = next((s for error_class, s in problems.STATUS_BY_ERROR if issubclass(cls, error_class)), 500)
        statuses.setdefault(cls.code, set()).add(status)
    for status, (code, _message) in problems._HTTP_CODES.items():
        statuses.setdefault(code, set()).add(status)
    for code, status in NAMED_IN_HANDLERS.items():
        statuses.setdefault(code, set()).add(status)
    return statuses


def entries(text: str) -> list[tuple[str, str]]:
    """``(code, what the parentheses say)`` of every entry heading, in order."""
    return ENTRY.findall(text)


def test_the_codes_are_collected() -> None:
    codes = expected_statuses()
    assert {"rate_limited", "verification_locked", "database_unavailable", "http_method_not_allowed"} <= codes.keys()
    assert codes.keys() >= NAMED_IN_HANDLERS.keys()
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in codes)


@pytest.mark.parametrize("language", GUIDES)
def test_every_error_code_has_an_entry(language: str) -> None:
    documented = {code for code, _ in entries(GUIDES[language].read_text(encoding="utf-8"))}
    missing = sorted(expected_statuses().keys() - documented)
    assert not missing, (
        f"{GUIDES[language].relative_to(DOCS.parent)} ({language}) has no entry for {', '.join(missing)}: add a "
        "heading '### `code` (status)' with the message, the cause and what to do"
    )


@pytest.mark.parametrize("language", GUIDES)
def test_every_entry_names_a_code_that_exists(language: str) -> None:
    documented = {code for code, _ in entries(GUIDES[language].read_text(encoding="utf-8"))}
    stale = sorted(documented - expected_statuses().keys())
    assert not stale, (
        f"{GUIDES[language].relative_to(DOCS.parent)} ({language}) has entries for codes nidan no longer has: "
        f"{', '.join(stale)}"
    )


@pytest.mark.parametrize("language", GUIDES)
def test_each_code_has_one_entry_of_its_own(language: str) -> None:
    text = GUIDES[language].read_text(encoding="utf-8")
    twice = sorted(code for code, n in Counter(code for code, _ in entries(text)).items() if n > 1)
    assert not twice, f"{language}: more than one entry for {', '.join(twice)}"
    known = expected_statuses().keys()
    shared = [
        heading
        for _, heading in HEADING.findall(text)
        if heading.startswith("`") and len({c for c in BACKTICKED.findall(heading) if c in known}) > 1
    ]
    assert not shared, f"{language}: one entry per code, not several in one heading: {shared}"


@pytest.mark.parametrize("language", GUIDES)
def test_an_entry_states_the_status_nidan_answers(language: str) -> None:
    """The first HTTP status in an entry's parentheses is one the code is answered with (CLI-only entries, such as
    ``(exit 1)``, state none)."""
    statuses = expected_statuses()
    wrong = []
    for code, said in entries(GUIDES[language].read_text(encoding="utf-8")):
        first = re.search(r"\b([1-5]\d\d)\b", said)
        if first is not None and code in statuses and int(first.group(1)) not in statuses[code]:
            wrong.append(f"{code} says {first.group(1)}, nidan answers {sorted(statuses[code])}")
    assert not wrong, f"{language}: {'; '.join(wrong)}"


def test_both_languages_give_the_same_status() -> None:
    def first_status(said: str) -> str | None:
        found = re.search(r"\b([1-5]\d\d)\b", said)
        return found.group(1) if found else None

    english, japanese = (
        {code: first_status(said) for code, said in entries(path.read_text(encoding="utf-8"))}
        for path in GUIDES.values()
    )
    differ = sorted(code for code in english.keys() & japanese.keys() if english[code] != japanese[code])
    assert not differ, f"the English and Japanese entries state different statuses for {', '.join(differ)}"


# --- links ---------------------------------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped, spaces as hyphens."""
    kept = (
        char
        for char in heading.replace("`", "").strip().lower()
        if char in " -" or unicodedata.category(char)[0] in "LMN" or unicodedata.category(char) == "Pc"
    )
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: Counter[str] = Counter()
    for _, heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:: not ours to check
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    return broken


LINKED_DOCS = [DOCS / "troubleshooting.md", DOCS / "user-guide.md", *sorted((DOCS / "ja").glob("*.md"))]


@pytest.mark.parametrize("path", LINKED_DOCS, ids=lambda path: str(path.relative_to(DOCS)))
def test_links_land_on_a_file_and_heading(path: Path) -> None:
    assert not broken_links(path), f"{path.relative_to(DOCS)}: {broken_links(path)}"


def test_the_japanese_documents_link_to_each_other_not_to_the_english_ones() -> None:
    """A reader of the Japanese guides stays in Japanese: a link to a guide that docs/ja/ has in Japanese points
    there, except on a line that offers the English version."""
    english_versions = {(DOCS / path.name).resolve() for path in (DOCS / "ja").glob("*.md")}
    leaving = []
    for path in sorted((DOCS / "ja").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        for link in LINK.finditer(text):
            line_start = text.rfind("\n", 0, link.start()) + 1
            line = text[line_start : text.find("\n", link.end())]
            linked = (path.parent / link.group(1).partition("#")[0]).resolve()
            if linked in english_versions and "English" not in line:
                leaving.append(f"{path.name}: {link.group(1)}")
    assert not leaving, f"links that leave docs/ja/ for a guide it has in Japanese: {leaving}"


def test_the_english_documents_point_to_the_japanese_ones() -> None:
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    assert "(docs/ja/README.md)" in readme
    assert "(ja/user-guide.md)" in (DOCS / "user-guide.md").read_text(encoding="utf-8").split("\n## ", 1)[0]
