"""Usernames: the PRECIS ``UsernameCaseMapped`` profile (RFC 8265), with nidan's own, stricter alphabet.

Every face and service reaches a username through these functions, so a name that creates an account is the same
name that signs in with it, at the API, the pages, the Basic gate and the verify API alike.

The key of a name (what is unique, and what sign-in looks up) is, in order:

1. width mapping (RFC 8265 §3.3.1): full-width and half-width forms become their usual ones, so ``ｔａｎａｋａ``
   (a Japanese IME in full-width mode) is ``tanaka`` and ``ｶﾞ`` is ``ガ``;
2. spaces around the name dropped (a copy and paste brings them along; not part of PRECIS, an application's own
   mapping);
3. the rest of ``UsernameCaseMapped`` by the precis-i18n library: Unicode lower case (``TANAKA`` is ``tanaka``),
   NFC, the bidi rule of RFC 5893, and the ``IdentifierClass``: letters and digits of any script, never spaces,
   controls, invisible characters (zero-width joiners, bidi overrides, U+FEFF), symbols or compatibility forms
   (``①``, ``ﬁ``);
4. nidan's narrower alphabet on top (RFC 8265 §3.1 leaves that to the application): of ASCII punctuation only
   ``.``, ``_`` and ``-``, which may not start or end a name, so every name valid before stays valid;
5. no look-alikes made by mixing scripts (UTS #39's "highly restrictive" level): all letters of one script, except
   that Japanese mixes kanji, hiragana and katakana (and Chinese kanji with bopomofo, Korean hangul with hanja),
   each also with Latin letters; ``pаypal`` with a Cyrillic ``а`` is refused. Digits are of one number system;
6. at most ``MAX_LENGTH`` characters.

``normalised_username`` is the same name with its case kept: it is what is stored and shown.
"""

from __future__ import annotations

import re
import unicodedata

from precis_i18n import get_profile

from nidan.texts import Text, _

#: The longest key, in characters (the ``users.username_key`` column).
MAX_LENGTH = 64

#: An application's name (``nidan.services.applications``): the ASCII names usernames were limited to before
#: PRECIS, in their canonical spelling (lower case). It is also every ASCII username's key.
APPLICATION_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
_ASCII_KEY = re.compile(APPLICATION_NAME_PATTERN)

# The username key as a JSON Schema pattern can state it (the OpenAPI document): ASCII as above; any other
# character but spaces, controls and the invisible ones. What a pattern cannot state (scripts, symbols, unassigned
# code points, the bidi rule) is refused with a message from this module, documented beside the pattern.
_INVISIBLE = r"\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb"
_INNER = rf"[^\x00-\x2c/:-@A-Z\[-^`{{-\x9f\s{_INVISIBLE}]"
_EDGE = rf"[^\x00-\x2f:-@A-Z\[-`{{-\x9f\s{_INVISIBLE}]"
#: A username's key, the canonical spelling of a name: what the OpenAPI document states.
USERNAME_PATTERN = rf"^{_EDGE}(?:{_INNER}{{0,{MAX_LENGTH - 2}}}{_EDGE})?$"

#: Why a name is refused (in English each starts "A username": the OpenAPI document's fuzz test recognises them).
EMPTY = _("A username cannot be empty.")
TOO_LONG = _("A username is at most %(max)d characters.", max=MAX_LENGTH)
SPACES = _("A username cannot contain spaces.")
CONTROLS = _("A username cannot contain control characters.")
INVISIBLE = _(
    "A username cannot contain invisible characters, such as zero-width spaces or joiners and direction marks."
)
ALPHABET = _("A username may contain only letters, digits, '.', '_' and '-'.")
COMPATIBILITY = _("A username cannot contain compatibility forms such as ①, ﬁ or ²: type the plain letters or digits.")
UNASSIGNED = _("A username cannot contain characters that are not assigned in Unicode yet.")
EDGES = _("A username starts with a letter or digit and cannot end with '.', '_' or '-'.")
BIDI = _("A username cannot mix right-to-left and left-to-right writing this way, nor start with a digit (RFC 5893).")
MIXED_SCRIPTS = _(
    "A username cannot mix letters of different scripts, such as Latin and Cyrillic, which can look alike "
    "(Japanese names may mix kanji, hiragana, katakana and Latin letters)."
)
MIXED_DIGITS = _("A username cannot mix digits of different number systems.")

_CASE_MAPPED = get_profile("UsernameCaseMapped")
#: precis-i18n's reason (after ``DISALLOWED/``) -> the sentence for it; anything else is ``ALPHABET``.
_PRECIS_REASONS: dict[str, Text] = {
    "empty": EMPTY,
    "spaces": SPACES,
    "controls": CONTROLS,
    "precis_ignorable_properties": INVISIBLE,
    "zero_width_joiner": INVISIBLE,
    "zero_width_nonjoiner": INVISIBLE,
    "has_compat": COMPATIBILITY,
    "unassigned": UNASSIGNED,
    "bidi_rule": BIDI,
    "arabic_indic": MIXED_DIGITS,
    "extended_arabic_indic": MIXED_DIGITS,
}
#: Letters, marks and digits: PRECIS's ``LetterDigits`` categories. Its other valid characters are ASCII
#: punctuation (only ``._-`` kept, as before) and contextual ones (the middle dots, ZWJ and ZWNJ), refused here.
_LETTER_DIGITS = frozenset({"Ll", "Lu", "Lo", "Lm", "Mn", "Mc", "Nd"})
_PUNCTUATION = frozenset("._-")
#: Typed input past this many characters is refused before any mapping: no name is that long (bounds the work).
_MAX_TYPED = 4 * MAX_LENGTH

# Scripts, from the first word of a character's Unicode name (the standard library has no script property): for
# letters and digits that word names the script ("LATIN SMALL LETTER A", "CYRILLIC SMALL LETTER A", "BENGALI
# DIGIT ONE"). Where it does not, this table says what it is; ``None``: no script of its own (Common).
_SCRIPT_WORDS: dict[str, str | None] = {
    "CJK": "HAN",
    "IDEOGRAPHIC": "HAN",  # 々 〆 〇
    "HIRAGANA": "KANA",
    "KATAKANA": "KANA",
    "KATAKANA-HIRAGANA": "KANA",  # ー, written in both
    "MASU": "KANA",  # 〼
    "ARABIC-INDIC": "ARABIC",
    "EXTENDED": "ARABIC",  # EXTENDED ARABIC-INDIC DIGIT
    "TURNED": "LATIN",  # ⅎ
    "MODIFIER": None,  # ʼ and other modifier letters of no one script
    "CARON": None,
    "VERTICAL": None,
    "VEDIC": None,
}
#: UTS #39 "highly restrictive": scripts that may share a name (besides a name of one script).
_SCRIPT_MIXES = (
    frozenset({"LATIN", "HAN", "KANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)


def _width_mapped(username: str) -> str:
    # precis-i18n maps the Halfwidth and Fullwidth Forms block; the one other code point with a <wide> mapping is
    # the ideographic space, which a Japanese IME types between a family and a given name. ASCII has neither.
    if username.isascii():
        return username
    return _CASE_MAPPED.width_mapping_rule(username).replace("\u3000", " ")


def normalised_username(username: str) -> str:
    """The username as the person meant it, its case kept for display: full-width and half-width forms mapped to
    their usual ones (``Ａｌｉｃｅ`` is ``Alice``), NFC, and without the spaces around it that a copy and paste often
    brings along. Never raises: whether it is a valid name is ``username_problem``'s question."""
    return unicodedata.normalize("NFC", _width_mapped(username)).strip()


def username_key(username: str) -> str | None:
    """The case-insensitive key of a username (``TANAKA``, ``ｔａｎａｋａ`` and `` tanaka `` are ``tanaka``), or
    ``None`` when it is not a valid username."""
    return _key_or_problem(username)[0]


def username_problem(username: str) -> Text | None:
    """Why ``username`` cannot be a username (a sentence for the person who typed it), or ``None``."""
    return _key_or_problem(username)[1]


def application_name_key(name: str) -> str | None:
    """An application's key: a username's, limited to ``APPLICATION_NAME_PATTERN`` (ASCII: the names appear in
    addresses, command lines and the applications' own settings). ``None`` when it is not a valid name."""
    key = username_key(name)
    return key if key is not None and _ASCII_KEY.match(key) else None


def _key_or_problem(username: str) -> tuple[str | None, Text | None]:
    if len(username) > _MAX_TYPED:
        return None, TOO_LONG
    text = _width_mapped(username).strip()
    if text.isascii():
        # The common case, without the library: for ASCII, UsernameCaseMapped is lower-casing, and the pattern is
        # nidan's rule exactly. A refused ASCII name goes on below, for the reason.
        lowered = text.lower()
        if _ASCII_KEY.match(lowered):
            return lowered, None
    try:
        key = _CASE_MAPPED.enforce(text)
    except UnicodeEncodeError as refused:
        return None, _PRECIS_REASONS.get(str(refused.reason).removeprefix("DISALLOWED/"), ALPHABET)
    problem = _alphabet_problem(key) or _script_problem(key)
    if problem is None and len(key) > MAX_LENGTH:
        problem = TOO_LONG
    return (key, None) if problem is None else (None, problem)


def _alphabet_problem(key: str) -> Text | None:
    for char in key:
        category = unicodedata.category(char)
        if category == "Cf":
            return INVISIBLE  # ZWJ or ZWNJ where PRECIS's context rule allows them: still invisible
        if category not in _LETTER_DIGITS and char not in _PUNCTUATION:
            return ALPHABET
    first = unicodedata.category(key[0])
    if not (first.startswith("L") or first == "Nd") or key[-1] in _PUNCTUATION:
        return EDGES
    return None


def _script(char: str) -> str | None:
    """The script of a letter or digit (``None``: one of no particular script, such as an ASCII digit)."""
    if char.isascii() and not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    if not name:
        return "UNNAMED"  # ideographs the standard library has no names for (Tangut, Khitan): their own script
    word = name.split(" ", 1)[0]
    return _SCRIPT_WORDS.get(word, word)


def _script_problem(key: str) -> Text | None:
    scripts = {_script(c) for c in key if unicodedata.category(c)[0] == "L" or unicodedata.category(c) == "Nd"}
    scripts.discard(None)
    if len(scripts) > 1 and not any(scripts <= mix for mix in _SCRIPT_MIXES):
        return MIXED_SCRIPTS
    # Zero of each digit's number system: "1" (U+0031) and "১" (Bengali one) are of two.
    zeros = {ord(c) - unicodedata.decimal(c) for c in key if unicodedata.category(c) == "Nd"}
    if len(zeros) > 1:
        return MIXED_DIGITS
    return None
