"""RFC 4226 Appendix D and RFC 6238 Appendix B, one test per vector (data in ``tests/vectors/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nidan.core.totp import hotp, time_step, totp

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

RFC4226 = json.loads((VECTORS / "rfc4226.json").read_text(encoding="utf-8"))
RFC6238 = json.loads((VECTORS / "rfc6238.json").read_text(encoding="utf-8"))


def _rfc6238_id(vector: dict[str, Any]) -> str:
    return f"{vector['algorithm']}-t{vector['time']}"


def test_vector_files_are_complete() -> None:
    # Guards against a truncated data file silently shrinking the parametrised tests below.
    assert [v["counter"] for v in RFC4226["vectors"]] == list(range(10))
    assert len(RFC6238["vectors"]) == 18
    assert {(v["time"], v["algorithm"]) for v in RFC6238["vectors"]} == {
        (t, a)
        for t in (59, 1111111109, 1111111111, 1234567890, 2000000000, 20000000000)
        for a in ("sha1", "sha256", "sha512")
    }
    assert {a: len(s) for a, s in RFC6238["secrets_ascii"].items()} == {
        "sha1": 20,
        "sha256": 32,
        "sha512": 64,
    }


@pytest.mark.parametrize("vector", RFC4226["vectors"], ids=lambda v: f"counter-{v['counter']}")
def test_rfc4226_hotp(vector: dict[str, Any]) -> None:
    key = RFC4226["secret_ascii"].encode("ascii")
    assert hotp(key, vector["counter"], digits=RFC4226["digits"], algorithm=RFC4226["algorithm"]) == vector["hotp"]


@pytest.mark.parametrize("vector", RFC6238["vectors"], ids=_rfc6238_id)
def test_rfc6238_totp(vector: dict[str, Any]) -> None:
    key = RFC6238["secrets_ascii"][vector["algorithm"]].encode("ascii")
    assert time_step(vector["time"], period=RFC6238["period"], t0=RFC6238["t0"]) == int(vector["step_hex"], 16)
    code = totp(
        key,
        vector["time"],
        digits=RFC6238["digits"],
        period=RFC6238["period"],
        algorithm=vector["algorithm"],
        t0=RFC6238["t0"],
    )
    assert code == vector["totp"]
