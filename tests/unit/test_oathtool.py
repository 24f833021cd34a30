"""Key URIs, and codes from a real client (OATH Toolkit's ``oathtool``) accepted by ``match_code``."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from nidan.core import totp as totp_module
from nidan.core.otpauth import b32decode, b32encode, otpauth_uri
from nidan.core.totp import TotpMatch, match_code, time_step


def _oathtool() -> str:
    # Called in the test body, not a fixture: a missing client is a test FAILURE, not a skip or an error.
    path = shutil.which("oathtool")
    if path is None:
        pytest.fail(
            "oathtool is not installed: the TOTP interoperability test needs the real client "
            "(Debian/Ubuntu: apt-get install oathtool)"
        )
    return path


def _secret_from(uri: str) -> str:
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    secrets = parse_qs(parts.query, strict_parsing=True)["secret"]
    assert len(secrets) == 1
    return secrets[0]


def _oathtool_code(oathtool: str, secret: str, when: datetime) -> str:
    result = subprocess.run(
        [oathtool, "--totp", "-b", "--now", when.strftime("%Y-%m-%d %H:%M:%S UTC"), secret],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
        env={**os.environ, "TZ": "Pacific/Chatham"},  # a far-off zone: the time must be read as UTC
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


WHEN = [
    datetime(1970, 1, 1, 0, 1, 0, tzinfo=UTC),
    datetime(2001, 9, 9, 1, 46, 40, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
    datetime(2025, 6, 30, 12, 0, 15, tzinfo=UTC),
    datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
    datetime(2099, 12, 31, 23, 59, 30, tzinfo=UTC),
]


@pytest.mark.e2e
@pytest.mark.parametrize("key_bytes", [20, 10, 32], ids=lambda n: f"key-{n}-bytes")
@pytest.mark.parametrize("when", WHEN, ids=lambda w: w.strftime("%Y%m%dT%H%M%S"))
def test_oathtool_code_is_accepted(key_bytes: int, when: datetime) -> None:
    oathtool = _oathtool()
    key = os.urandom(key_bytes)
    uri = otpauth_uri(key=key, account="alice", issuer="Nidan")
    secret = _secret_from(uri)
    assert b32decode(secret) == key

    code = _oathtool_code(oathtool, secret, when)
    assert len(code) == 6
    assert code.isdigit()

    unix_time = when.timestamp()
    assert match_code(key, code, unix_time) == TotpMatch(step=time_step(unix_time), drift=0)
    # The same code two steps later is refused: the check depends on the time passed in, not the wall clock.
    assert match_code(key, code, unix_time + 2 * totp_module.PERIOD) is None


@pytest.mark.e2e
def test_oathtool_code_from_previous_step_is_accepted_with_drift() -> None:
    oathtool = _oathtool()
    key = os.urandom(20)
    secret = _secret_from(otpauth_uri(key=key, account="alice", issuer="Nidan"))
    device_time = datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    code = _oathtool_code(oathtool, secret, device_time)
    server_time = device_time.timestamp() + totp_module.PERIOD
    assert match_code(key, code, server_time) == TotpMatch(step=time_step(device_time.timestamp()), drift=-1)


def test_uri_format() -> None:
    key = os.urandom(20)
    uri = otpauth_uri(key=key, account="alice", issuer="Nidan")
    assert uri.startswith("otpauth://totp/Nidan:alice?")
    query = parse_qs(urlsplit(uri).query, strict_parsing=True)
    assert query == {
        "secret": [b32encode(key)],
        "issuer": ["Nidan"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    # Authenticator apps expect the unpadded RFC 4648 upper-case alphabet.
    assert "=" not in query["secret"][0]
    assert query["secret"][0] == query["secret"][0].upper()


def test_uri_parameters_follow_the_totp_defaults() -> None:
    query = parse_qs(urlsplit(otpauth_uri(key=bytes(20), account="a", issuer="b")).query)
    assert query["algorithm"] == [totp_module.ALGORITHM.upper()]
    assert query["digits"] == [str(totp_module.DIGITS)]
    assert query["period"] == [str(totp_module.PERIOD)]


def test_issuer_with_spaces_is_percent_encoded() -> None:
    uri = otpauth_uri(key=bytes(20), account="alice smith", issuer="Acme Corp")
    assert uri.startswith("otpauth://totp/Acme%20Corp:alice%20smith?")
    assert "+" not in uri
    assert " " not in uri
    parts = urlsplit(uri)
    assert "issuer=Acme%20Corp" in parts.query.split("&")
    assert parse_qs(parts.query)["issuer"] == ["Acme Corp"]
    issuer, account = unquote(parts.path.removeprefix("/")).split(":")
    assert (issuer, account) == ("Acme Corp", "alice smith")


def test_colons_and_reserved_characters_in_label_parts_are_encoded() -> None:
    uri = otpauth_uri(key=bytes(20), account="a:b@example.com", issuer="R&D/Ops?")
    label = urlsplit(uri).path.removeprefix("/")
    # Exactly one literal colon separates issuer and account.
    assert label.count(":") == 1
    issuer, account = (unquote(part) for part in label.split(":"))
    assert (issuer, account) == ("R&D/Ops?", "a:b@example.com")
    assert parse_qs(urlsplit(uri).query)["issuer"] == ["R&D/Ops?"]


def test_non_ascii_names_are_utf8_percent_encoded() -> None:
    uri = otpauth_uri(key=bytes(20), account="jürgen", issuer="二段")
    assert uri.isascii()
    assert uri.startswith("otpauth://totp/%E4%BA%8C%E6%AE%B5:j%C3%BCrgen?")


@pytest.mark.parametrize("length", [1, 5, 10, 16, 20, 32, 64])
def test_base32_round_trip(length: int) -> None:
    key = os.urandom(length)
    text = b32encode(key)
    assert "=" not in text
    assert b32decode(text) == key
    assert b32decode(text.lower()) == key
    spaced = " ".join(text[i : i + 4] for i in range(0, len(text), 4))
    assert b32decode(spaced) == key


def test_base32_known_value() -> None:
    assert b32encode(b"12345678901234567890") == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert b32encode(b"f") == "MY"
    assert b32decode("my") == b"f"
