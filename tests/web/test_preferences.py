"""A person's language and time zone: chosen over the API and on a page, guessed from the browser until then;
times on pages in that zone and written the way the language writes them, the API staying UTC."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.services import accounts, audit
from tests.helpers import auth_header, login, make_user
from tests.web.api_support import assert_error
from tests.web.pages_support import signed_in_alice, submit


def test_preferences_are_chosen_over_the_api(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    session = auth_header(login(client)["session_token"])
    chosen = client.put("/api/v1/me/preferences", json={"locale": "ja", "time_zone": "Asia/Tokyo"}, headers=session)
    assert chosen.status_code == 200 and chosen.json() == {"locale": "ja", "time_zone": "Asia/Tokyo"}
    me = client.get("/api/v1/me", headers=session).json()
    assert me["locale"] == "ja" and me["time_zone"] == "Asia/Tokyo"
    assert me["created_at"].endswith("Z") or me["created_at"].endswith("+00:00")  # the API stays UTC
    (event,) = audit.all_events(runtime.services, username="alice", event_type=EventType.PREFERENCES_CHANGED)
    assert event.event.details == {"locale": "ja", "time_zone": "Asia/Tokyo"}
    back = client.put("/api/v1/me/preferences", json={"locale": None, "time_zone": None}, headers=session)
    assert back.status_code == 200 and accounts.find_user(runtime.services, "alice").locale is None


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime", "Asia\\Tokyo", ""])
def test_a_zone_nobody_has_is_refused(client: TestClient, runtime: Runtime, zone: str) -> None:
    make_user(runtime.services)
    session = auth_header(login(client)["session_token"])
    refused = client.put("/api/v1/me/preferences", json={"locale": "en", "time_zone": zone}, headers=session)
    assert_error(refused, 422, "invalid_request")
    assert accounts.find_user(runtime.services, "alice").time_zone is None


def test_a_language_nidan_does_not_speak_is_refused(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    session = auth_header(login(client)["session_token"])
    refused = client.put("/api/v1/me/preferences", json={"locale": "fr", "time_zone": None}, headers=session)
    assert_error(refused, 422, "invalid_request")


def test_pages_show_times_in_the_chosen_zone_and_language(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)  # the test clock: 2026-03-14 15:09 UTC
    page = client.get("/security/preferences")
    saved = submit(client, page, "/security/preferences", locale="ja", time_zone="Asia/Tokyo")
    assert saved.status_code == 303 and saved.headers["location"] == "/security?notice=preferences_saved"
    security = client.get("/security")
    assert '<html lang="ja">' in security.text
    assert "2026年3月15日 0:09 JST" in security.text  # 15:09 UTC is 00:09 the next day in Tokyo


def test_the_browsers_zone_is_used_until_one_is_chosen(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    client.cookies.set("nidan_tz", "America/New_York")
    security = client.get("/security")
    assert "14 Mar 2026, 11:09 EDT" in security.text  # New York is on summer time from 8 March 2026
    client.cookies.set("nidan_tz", "../../etc/passwd")
    assert "14 Mar 2026, 15:09 UTC" in client.get("/security").text


def test_a_wrong_zone_on_the_page_keeps_the_form(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    page = client.get("/security/preferences")
    refused = submit(client, page, "/security/preferences", locale="en", time_zone="Mars/Olympus")
    assert (
        refused.status_code == 422
        and "Mars/Olympus" in refused.text
        and 'action="/security/preferences"' in refused.text
    )
