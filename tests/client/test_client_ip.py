"""``client_ip``: a relying application passes its user's address on; nidan believes it only from a trusted proxy."""

from __future__ import annotations

from pathlib import Path

import pytest

from nidan.bootstrap import Runtime
from nidan.client import Client, MfaRequired
from nidan.config import SecuritySettings, ServerSettings, Settings
from nidan.core.audit import EventType
from nidan.services import audit
from tests.client.conftest import TotpUser
from tests.conftest import FAST_SECURITY
from tests.helpers import PASSWORD, code_at

USER_IP = "203.0.113.9"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """This application (on 127.0.0.1) is one of nidan's trusted proxies."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        server=ServerSettings(trusted_proxies=["127.0.0.1"]),
        security=SecuritySettings(**FAST_SECURITY),
    )


def logged_ips(runtime: Runtime, event_type: EventType) -> list[str | None]:
    return [record.event.client_ip for record in audit.all_events(runtime.services, event_type=event_type)]


def test_verify_and_sign_in_are_logged_with_the_user_s_address(
    live_url: str, api_key: str, alice: TotpUser, runtime: Runtime
) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        assert nidan.verify("alice", alice.recovery_codes[0], client_ip=USER_IP).ok
        assert nidan.verify("alice", alice.recovery_codes[1]).ok  # without: the application's own address
        started = nidan.login("alice", PASSWORD, client_ip=USER_IP)
        assert isinstance(started, MfaRequired)
        nidan.complete_mfa(started.mfa_token, code_at(alice.secret, runtime.services), client_ip=USER_IP)
    assert logged_ips(runtime, EventType.VERIFY_SUCCEEDED) == ["127.0.0.1", USER_IP]  # newest first
    assert logged_ips(runtime, EventType.SIGN_IN_SUCCEEDED) == [USER_IP]


def test_an_address_that_is_not_one_is_refused_before_sending(live_url: str, api_key: str) -> None:
    with Client(live_url, api_key=api_key) as nidan:
        for bad in ("203.0.113.9\r\nX-Evil: 1", "203.0.113.9, 10.0.0.1", "localhost"):
            with pytest.raises(ValueError):
                nidan.verify("alice", "123456", client_ip=bad)
            with pytest.raises(ValueError):
                nidan.login("alice", PASSWORD, client_ip=bad)
