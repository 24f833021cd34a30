"""The security log in words: the device as "Chrome on Windows" (the User-Agent itself only in the cell's title),
nidan's command line and programs named, every detail a phrase, every time in the reader's zone, and each event's
correlation id on screen at phone width (the table becomes one block per event)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from types import SimpleNamespace

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import AuditEvent, AuditRecord, EventType
from nidan.core.models import ClientInfo, InstanceRole
from nidan.services import audit, break_glass
from nidan.web import i18n
from nidan.web.pages import events
from tests.helpers import PASSWORD, make_user
from tests.web.pages_support import sign_in

CHROME_ON_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
CELL = re.compile(r'<td class="device" data-label="[^"]*">(.*?)</td>', re.S)


def device_cells(page: str) -> list[str]:
    return CELL.findall(page)


def test_the_device_is_said_in_words_with_the_user_agent_in_the_title(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    client.headers["user-agent"] = CHROME_ON_WINDOWS
    assert sign_in(client).headers["location"] == "/security"
    page = client.get("/security/events")
    cells = device_cells(page.text)
    assert cells and all(CHROME_ON_WINDOWS not in re.sub(r'title="[^"]*"', "", cell) for cell in cells)
    assert f'<span title="{CHROME_ON_WINDOWS}">Chrome on Windows</span>' in cells
    client.cookies.set("nidan_lang", "ja")
    ja = client.get("/security/events")
    assert f'<span title="{CHROME_ON_WINDOWS}">Windows の Chrome</span>' in device_cells(ja.text)


def test_the_command_line_and_programs_are_named(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    root = make_user(ctx, "root", role=InstanceRole.ADMIN)
    cli = ClientInfo(user_agent="nidan 1.4.0 command line, run by ops")
    break_glass.recover_admin(ctx, username="root", client=cli)
    login = client.post(
        "/api/v1/auth/login", json={"username": "root", "password": PASSWORD}, headers={"user-agent": "curl/8.5.0"}
    )
    assert login.status_code == 200, login.text
    said = {str(events.event_row(r, root).device) for r in audit.my_events(ctx, root.id, limit=50, before=None)}
    assert "nidan command line (run by ops)" in said
    assert "Program: curl" in said
    assert not [d for d in said if "/" in d or "1.4.0" in d], said  # no raw User-Agent


#: The person reading: only their id is looked at (is the actor someone else?).
VIEWER = SimpleNamespace(id=1)


def record(event_type: str, **details: object) -> AuditRecord:
    event = AuditEvent(
        occurred_at=datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC),
        event_type=event_type,
        actor_user_id=1,
        actor_username="alice",
        subject_user_id=1,
        subject_username="alice",
        details=details,  # type: ignore[arg-type]
    )
    return AuditRecord(seq=1, event=event, prev_hash="", hash="")


def facts_in(record_: AuditRecord, locale: str, zone: str) -> list[str]:
    row = events.event_row(record_, VIEWER)  # type: ignore[arg-type]
    said = i18n.catalog(locale)
    with i18n.rendering_in(said, zone):
        return [fact.render(said) for fact in row.facts]


def test_times_in_details_are_in_the_readers_zone() -> None:
    due = record(EventType.SIGN_IN_SETUP_REQUIRED, reason="policy", two_factor_due="2026-03-20T15:00:00+00:00")
    (_, when) = facts_in(due, "en", "Asia/Tokyo")
    assert when.startswith("two-step verification due by 21 Mar 2026, 00:00 "), when  # 15:00 UTC is midnight there
    assert "UTC" not in when and "T15" not in when
    (_, ja) = facts_in(due, "ja", "Asia/Tokyo")
    assert ja.startswith("2026年3月21日 0:00 ") and ja.endswith(" までに二段階認証の設定が必要"), ja
    (_, london) = facts_in(due, "en", "Europe/London")
    assert london.startswith("two-step verification due by 20 Mar 2026, 15:00 "), london


def test_an_organisations_policy_change_is_said_in_words() -> None:
    changed = record(
        EventType.ORGANISATION_POLICY_CHANGED,
        organisation="platform",
        **{"from": "optional", "to": "required_for_all"},
        grace_period_days=1,
        allowed_methods="totp recovery_code",
        tolerated_failures=None,
        remember_device_days=0,
    )
    said = facts_in(changed, "en", "UTC")
    assert said == [
        "methods allowed: authenticator app, recovery codes",
        "was: Optional",
        "grace period: 1 day",
        "organisation: platform",
        "browsers are not remembered",
        "now: Required for everyone",
        "failures tolerated: the instance's setting",
    ]
    assert not [fact for fact in said if "_" in fact], said  # no raw key or stored value


def test_a_role_change_and_a_session_ended_are_said_in_words() -> None:
    role = record(EventType.MEMBER_CHANGED, organisation="a", role="admin", managed=True, **{"from": "member"})
    assert "previous role: Member" in facts_in(role, "en", "UTC")
    ended = record(EventType.SESSION_REVOKED, session_id=7, current=True)
    assert facts_in(ended, "en", "UTC") == ["the session in use", "session id: 7"]
    assert facts_in(ended, "ja", "UTC") == ["使用中のセッション", "セッションID: 7"]


def test_on_a_phone_every_column_is_a_labelled_line(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    sign_in(client)
    page = html.unescape(client.get("/security/events").text)
    assert 'data-label="Correlation id"><code class="correlation-id">' in page
    assert 'data-label="Device">' in page and 'data-label="IP address">' in page
    css = client.get("/static/nidan.css").text
    block = css[css.index("@media (max-width: 40rem)") :]
    assert "table.events, table.events tbody, table.events tr, table.events td { display: block; }" in block
    assert "content: attr(data-label)" in block
