"""Key URIs for authenticator apps (the de-facto ``otpauth://`` format every app scans)."""

from __future__ import annotations

import base64
from urllib.parse import quote, urlencode

from nidan.core import totp


def b32encode(key: bytes) -> str:
    return base64.b32encode(key).decode("ascii").rstrip("=")


def b32decode(text: str) -> bytes:
    compact = text.replace(" ", "").upper()
    return base64.b32decode(compact + "=" * (-len(compact) % 8))


def otpauth_uri(*, key: bytes, account: str, issuer: str) -> str:
    # The label's colon separates issuer and account; both parts are percent-encoded, spaces as %20 (not '+'),
    # because Google Authenticator shows a literal '+' otherwise.
    label = f"{quote(issuer, safe='')}:{quote(account, safe='')}"
    query = urlencode(
        {
            "secret": b32encode(key),
            "issuer": issuer,
            "algorithm": totp.ALGORITHM.upper(),
            "digits": totp.DIGITS,
            "period": totp.PERIOD,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"
