"""An administrator sees and clears a user's backoff block over the API; members cannot; every call needs step-up."""

from __future__ import annotations

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import InstanceRole
from nidan.services import audit
from tests.helpers import auth_header, code_at, enable_totp, login, make_user


def locked_out_bob(client: TestClient, runtime: Runtime) -> str:
    """Bob has TOTP and two wrong codes behind him: blocked. Returns his secret."""
    ctx = runtime.services
    make_user(ctx, "bob")
    secret, _ = enable_totp(client, ctx, login(client, "bob")["session_token"])
    for _ in range(2):
        token = login(client, "bob")["mfa_token"]
        client.post("/api/v1/auth/mfa", json={"mfa_token": token, "method": "totp", "code": "000000"})
    return secret


def test_admin_sees_and_clears_a_block(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret = locked_out_bob(client, runtime)
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    admin = auth_header(login(client, "root")["session_token"])

    status = client.get("/api/v1/admin/users/BOB/block", headers=admin)
    assert status.status_code == 200, status.text
    body = status.json()
    assert body["username"] == "bob"
    assert body["second_factor"]["failures"] == 2 and body["second_factor"]["blocked_until"] is not None
    assert body["second_factor"]["locked"] is False

    token = login(client, "bob")["mfa_token"]
    blocked = client.post("/api/v1/auth/mfa", json={"mfa_token": token, "method": "totp", "code": code_at(secret, ctx)})
    assert blocked.status_code == 429

    cleared = client.delete("/api/v1/admin/users/bob/block", params={"reason": "ticket 4711"}, headers=admin)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json() == {"username": "bob", "counters_cleared": 1}
    done = client.post("/api/v1/auth/mfa", json={"mfa_token": token, "method": "totp", "code": code_at(secret, ctx)})
    assert done.status_code == 200, done.text

    event = audit.all_events(ctx, event_type=audit.EventType.BACKOFF_CLEARED)[0].event
    assert (event.actor_username, event.subject_username) == ("root", "bob")
    assert dict(event.details) == {"counters": 1, "reason": "ticket 4711"}


def test_members_cannot_and_admins_must_have_verified_recently(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    locked_out_bob(client, runtime)
    make_user(ctx, "carol")
    member = auth_header(login(client, "carol")["session_token"])
    for method in ("GET", "DELETE"):
        refused = client.request(method, "/api/v1/admin/users/bob/block", headers=member)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_required"
    make_user(ctx, "root", role=InstanceRole.ADMIN)
    admin = auth_header(login(client, "root")["session_token"])
    ctx.clock.advance(11 * 60)  # type: ignore[attr-defined]
    stale = client.delete("/api/v1/admin/users/bob/block", headers=admin)
    assert stale.status_code == 403 and stale.json()["error"]["code"] == "reauthentication_required"
    # Step-up comes before any lookup: a stale admin session learns nothing about which users exist.
    missing = client.get("/api/v1/admin/users/nobody/block", headers=admin)
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "reauthentication_required"


def test_unknown_user_is_404(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services, "root", role=InstanceRole.ADMIN)
    admin = auth_header(login(client, "root")["session_token"])
    missing = client.get("/api/v1/admin/users/nobody/block", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "user_not_found"
