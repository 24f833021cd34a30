"""Checks shared by the tests of tokens and secrets: what the database must never hold."""

from __future__ import annotations

import base64

from sqlalchemy import Engine, select

from nidan.db import tables


def assert_not_stored(engine: Engine, *secrets: str) -> None:
    """No column of any table holds a secret, its random part, or the raw bytes behind it."""
    needles: list[str] = []
    raw: list[bytes] = []
    for secret in secrets:
        body = secret[len("nidan_pat_") :] if secret.startswith("nidan_") else secret
        needles += [secret, body]
        if len(body) == 43:
            raw.append(base64.urlsafe_b64decode(body + "="))
    with engine.connect() as connection:
        for table in tables.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for value in row:
                    if isinstance(value, str):
                        assert not any(n in value for n in needles), (table.name, value)
                    elif isinstance(value, bytes):
                        assert not any(n.encode() in value for n in needles), table.name
                        assert not any(r in value for r in raw), table.name
