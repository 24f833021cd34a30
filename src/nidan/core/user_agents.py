"""A User-Agent in words people recognise ("Chrome on Windows"), for lists of remembered browsers, sessions and the
security log.

Only the common browsers and systems are named; anything else is "Unknown browser". ``device`` also names what is
not a browser: nidan's own command line, and a program by the product name it sends ("curl", "git"). The words only
help people tell their devices apart: a User-Agent is whatever the client sends, so nothing is ever decided on it.
"""

from __future__ import annotations

import re

from nidan.texts import Text, _

#: Most specific first: Edge, Opera, Samsung Internet and Vivaldi also say "Chrome", and Chrome also says "Safari".
_BROWSERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\b(?:OPR|Opera|OPiOS)/")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/")),
    ("Vivaldi", re.compile(r"\bVivaldi/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/")),
)
#: Most specific first: Android and ChromeOS also say "Linux", iOS says "like Mac OS X".
_SYSTEMS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iOS", re.compile(r"\b(?:iPhone|iPad|iPod)\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\b(?:Macintosh|Mac OS X)\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)
#: Enough of the string to find the names in; a longer one is cut (it came from the client).
_LONGEST = 512
#: nidan's command line (``nidan 1.2.0 command line, run by root``): the operator's account, when it says.
_NIDAN_CLI = re.compile(r"nidan\b[^,]*\bcommand line(?:, run by (?P<account>[\w.@-]{1,64}))?")
#: A program's product token (``curl/8.5.0``, ``git/2.43.0``, ``python-httpx/0.28``): its name, not its version.
_PROGRAM = re.compile(r"(?P<name>[A-Za-z][A-Za-z0-9._-]{0,31})/[0-9A-Za-z]")


def _first(candidates: tuple[tuple[str, re.Pattern[str]], ...], text: str) -> str | None:
    return next((name for name, pattern in candidates if pattern.search(text)), None)


def describe(user_agent: str | None) -> str:
    """``Chrome on Windows``, ``Firefox``, ``Unknown browser on Linux``, or ``Unknown browser``: in English, as the
    audit log and the API give it (``label`` is the same for a page, in the reader's language)."""
    return str(label(user_agent))


def label(user_agent: str | None) -> Text:
    """``describe``'s words to translate: the names of browsers and systems stay as they are."""
    text = (user_agent or "")[:_LONGEST]
    browser = _first(_BROWSERS, text)
    system = _first(_SYSTEMS, text)
    if browser is None:
        return _("Unknown browser") if system is None else _("Unknown browser on %(system)s", system=system)
    return Text(browser) if system is None else _("%(browser)s on %(system)s", browser=browser, system=system)


def device(user_agent: str | None) -> Text:
    """What sent a request, in words: a browser as ``label`` says it, ``nidan command line (run by root)``, or
    ``Program: curl``."""
    text = (user_agent or "")[:_LONGEST]
    if cli := _NIDAN_CLI.match(text):
        account = cli.group("account")
        return (
            _("nidan command line")
            if account is None
            else _("nidan command line (run by %(account)s)", account=account)
        )
    program = _PROGRAM.match(text)
    if program is not None and program.group("name") != "Mozilla" and _first(_BROWSERS, text) is None:
        return _("Program: %(name)s", name=program.group("name"))
    return label(user_agent)
