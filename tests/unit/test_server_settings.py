"""``server.hsts`` and ``server.public_url``: what is accepted, what stops nidan at start, and when HSTS is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nidan.config import DEFAULT_HSTS, ServerSettings, load_settings
from nidan.errors import ConfigurationError


@pytest.fixture(autouse=True)
def no_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NIDAN_CONFIG", str(tmp_path / "absent.toml"))
    for name in ("NIDAN_SERVER_HSTS", "NIDAN_SERVER_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)


def test_hsts_is_sent_only_with_an_https_public_address() -> None:
    assert ServerSettings().hsts == DEFAULT_HSTS == "max-age=63072000; includeSubDomains"
    assert ServerSettings().strict_transport_security is None
    assert ServerSettings(public_url="http://2fa.example.com").strict_transport_security is None
    assert ServerSettings(public_url="https://2fa.example.com").strict_transport_security == DEFAULT_HSTS
    assert ServerSettings(public_url="HTTPS://2fa.example.com").strict_transport_security == DEFAULT_HSTS
    assert ServerSettings(public_url="https://2fa.example.com", hsts="").strict_transport_security is None


@pytest.mark.parametrize(
    "value",
    [
        "max-age=0",
        "max-age=300",
        "max-age=300;",
        "  max-age=31536000 ; includeSubDomains  ",
        "includeSubDomains; max-age=600",
        "MAX-AGE=31536000; includesubdomains; PRELOAD",
    ],
)
def test_sane_hsts_values_are_kept(value: str) -> None:
    assert ServerSettings(hsts=value).hsts == value.strip(" ")


def test_an_empty_environment_variable_turns_hsts_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIDAN_SERVER_PUBLIC_URL", "https://2fa.example.com")
    monkeypatch.setenv("NIDAN_SERVER_HSTS", "")
    assert load_settings().server.strict_transport_security is None
    monkeypatch.setenv("NIDAN_SERVER_HSTS", "max-age=600")
    assert load_settings().server.strict_transport_security == "max-age=600"


@pytest.mark.parametrize(
    "value",
    [
        "max-age=60\r\nSet-Cookie: planted=1",
        "max-age=60\nX: y",
        "max-age=60\x00",
        "max-age=60; includeSubDomains\u00a0",
        "includeSubDomains",
        "max-age=",
        "max-age=-1",
        "max-age=ten",
        'max-age="60"',
        "max-age=99999999999",
        "max-age=60; max-age=120",
        "max-age=60; includeSubDomains; includeSubDomains",
        "max-age=60; includeSubDomain",
        "max-age=60, includeSubDomains",
        "max-age=63072000; preload",  # the preload list wants the subdomains too
        "max-age=600; includeSubDomains; preload",  # and at least a year
    ],
)
def test_an_hsts_value_a_browser_would_not_read_as_meant_stops_nidan(tmp_path: Path, value: str) -> None:
    # From the file: the environment cannot carry every one of these characters (a NUL, say).
    config = tmp_path / "nidan.toml"
    config.write_text(f"[server]\nhsts = {json.dumps(value)}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"server\.hsts \(NIDAN_SERVER_HSTS\)"):
        load_settings(config)


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("https://2fa.example.com", "https://2fa.example.com"),
        ("https://2fa.example.com:8443/", "https://2fa.example.com:8443/"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://example.com/nidan", "https://example.com/nidan"),
        ("", None),
    ],
)
def test_public_addresses_that_name_an_origin_are_kept(value: str, kept: str | None) -> None:
    assert ServerSettings(public_url=value).public_url == kept


@pytest.mark.parametrize(
    "value",
    [
        "2fa.example.com",
        "ftp://2fa.example.com",
        "https://",
        "https://user@2fa.example.com",
        "https://2fa.example.com:99999",
        "https://2fa.example.com/?x=1",
        "https://2fa.example.com/#top",
        "https://2fa.example.com\r\n",
        "https://2fa example.com",
    ],
)
def test_a_public_address_without_a_clear_origin_stops_nidan(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("NIDAN_SERVER_PUBLIC_URL", value)
    with pytest.raises(ConfigurationError, match=r"server\.public_url \(NIDAN_SERVER_PUBLIC_URL\)"):
        load_settings()
