"""A code as the person meant it: the one reading of typed codes that every code format starts from.

People do not type codes the way they are printed. A Japanese IME in full-width mode gives ``６３１　８９３``
(full-width digits, an ideographic space); typing a recovery code's dash it gives ``ー`` (the prolonged sound mark)
or ``－`` (a full-width hyphen-minus); word processors and phones turn a dash into ``‐``, ``–`` or ``―``. All of
these mean the plain ASCII code, so ``typed_code`` maps them to it before any format's own rule
(``nidan.core.totp.normalize_code``, ``nidan.core.recovery.normalize``) decides whether it is a code at all.

It only maps look-alike *spellings*; it never makes a code out of something that is not one: letters stay letters,
and a combining mark on a digit (``1\u0301``) is not removed (NFKC keeps it), so the formats refuse such input as
before.
"""

from __future__ import annotations

import unicodedata

#: A dash in a recovery code, as people type it. NFKC already maps the full-width and small hyphen-minus (U+FF0D,
#: U+FE63) and the half-width prolonged sound mark (U+FF70, to U+30FC); what it leaves is listed here: the dash
#: punctuation of Unicode (category Pd: ‐ ‑ ‒ – — ― 〜 …), the minus sign, the hyphen bullet, the prolonged sound
#: mark ``ー`` (what a Japanese IME gives for "-" in kana mode) and the box-drawing lines an IME offers for it.
_EXTRA_DASHES = frozenset("\u2043\u2212\u2500\u2501\u30fc")


def _is_dash(char: str) -> bool:
    return char in _EXTRA_DASHES or unicodedata.category(char) == "Pd"


def typed_code(text: str) -> str:
    """``text`` with full-width and other compatibility forms NFKC-normalised to ASCII (``６３１８９３`` is
    ``631893``), every kind of dash read as ``-``, and no whitespace at all (``631 893``, ``631　893``, a line break
    from a paste). The result may still be no code (empty, letters, marks): each format checks its own rule."""
    if text.isascii():  # NFKC leaves ASCII as it is, and its only dash is "-": what nearly every call brings
        return "".join(text.split())
    normalised = unicodedata.normalize("NFKC", text)
    return "".join("-" if _is_dash(char) else char for char in normalised if not char.isspace())
