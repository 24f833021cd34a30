"""Creating an account with a one-time set-password link, and deleting one, over the admin API (issue 16): the
link's life (set the password once, then sign in; reused, superseded and expired links refused), who may, the
PRECIS-normalised name, and what a deletion ends (session, token, app password, remembered browser) while the audit
chain stays intact."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.audit import EventType
from nidan.core.models import ClientInfo, InstanceRole, OrgRole
from nidan.errors import (
    InvalidCredentials,
    LastAdministrator,
    PasswordLinkExpired,
    PasswordLinkInvalid,
    PasswordLinkUsed,
    WeakPassword,
)
from nidan.services import account_status, accounts, audit, organisations, password_links, signin, tokens
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.conftest import START
from tests.helpers import PASSWORD, auth_header, basic_header, code_at, enable_totp, login, make_user
from tests.integration.devices_support import remembering
from tests.web.api_support import assert_error

CLIENT = ClientInfo()
REASON = {"reason": "left the company, ticket 16"}
NEW_PASSWORD = "lantern orchid quarry"
JA = {"Accept-Language": "ja"}


@pytest.fixture
def app_runtime(runtime: Runtime) -> Runtime:
    return remembering(runtime, 30)


@pytest.fixture
def ctx(app_runtime: Runtime) -> ServiceContext:
    return app_runtime.services


@pytest.fixture
def client(app_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=app_runtime), raise_server_exceptions=False) as test_client:
        yield test_client


def admin(client: TestClient, ctx: ServiceContext, username: str = "root") -> dict[str, str]:
    make_user(ctx, username, role=InstanceRole.ADMIN)
    return auth_header(login(client, username)["session_token"])


def create(client: TestClient, headers: dict[str, str], **body: Any) -> Any:
    fields = {"username": "hanako", "email": "hanako@example.com", "role": "member"} | body
    return client.post("/api/v1/admin/users", json=fields, headers=headers)


def delete(client: TestClient, username: str, headers: dict[str, str], reason: str | None = REASON["reason"]) -> Any:
    params = {} if reason is None else {"reason": reason}
    return client.delete(f"/api/v1/admin/users/{username}", params=params, headers=headers)


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


# --- creating an account ---------------------------------------------------------------------------------------------


def test_an_administrator_creates_an_account_whose_owner_sets_the_password_once(
    client: TestClient, ctx: ServiceContext
) -> None:
    root = admin(client, ctx)
    made = create(client, root, role="admin")
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["username"] == "hanako" and body["email"] == "hanako@example.com" and body["role"] == "admin"
    assert body["set_password_url"].startswith("http://testserver/set-password?token=")
    assert body["expires_at"].startswith((START + timedelta(hours=72)).strftime("%Y-%m-%dT%H:%M:%S"))
    token = token_of(body["set_password_url"])
    # Nobody knows the password it was created with: signing in is refused until the owner sets theirs.
    refused = client.post("/api/v1/auth/login", json={"username": "hanako", "password": PASSWORD})
    assert_error(refused, 401, "invalid_credentials")

    assert password_links.check_link(ctx, token).username == "hanako"
    password_links.set_password(ctx, token=token, password=NEW_PASSWORD, client=CLIENT)
    signed = login(client, "hanako", NEW_PASSWORD)
    assert signed["status"] == "authenticated"
    with pytest.raises(PasswordLinkUsed):
        password_links.set_password(ctx, token=token, password="another long passphrase", client=CLIENT)
    assert login(client, "hanako", NEW_PASSWORD)["status"] == "authenticated"

    created = audit.all_events(ctx, username="hanako", event_type=EventType.USER_CREATED)[0].event
    assert created.actor_username == "root" and created.details["via"] == "password_link"
    assert created.details["role"] == "admin" and created.details["link_valid_hours"] == 72
    used = audit.all_events(ctx, username="hanako", event_type=EventType.PASSWORD_LINK_USED)[0].event
    assert used.actor_username == "hanako" and used.subject_username == "hanako"
    assert audit.verify(ctx).problem is None
    # An administrator, as asked: the owner of the default organisation like every administrator.
    member = accounts.find_user(ctx, "hanako")
    assert member.role is InstanceRole.ADMIN


def test_a_weak_password_spends_nothing_and_an_expired_link_is_told_apart(
    client: TestClient, ctx: ServiceContext
) -> None:
    root = admin(client, ctx)
    token = token_of(create(client, root).json()["set_password_url"])
    with pytest.raises(WeakPassword, match="at least"):
        password_links.set_password(ctx, token=token, password="short", client=CLIENT)
    with pytest.raises(WeakPassword, match="username"):
        password_links.set_password(ctx, token=token, password="hanako's garden door", client=CLIENT)
    assert password_links.check_link(ctx, token).username == "hanako"  # still live
    ctx.clock.advance(72 * 3600)  # type: ignore[attr-defined]
    with pytest.raises(PasswordLinkExpired):
        password_links.check_link(ctx, token)
    with pytest.raises(PasswordLinkExpired):
        password_links.set_password(ctx, token=token, password=NEW_PASSWORD, client=CLIENT)
    with pytest.raises(PasswordLinkInvalid) as unknown:
        password_links.check_link(ctx, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert type(unknown.value) is PasswordLinkInvalid
    assert not [e for e in audit.all_events(ctx, event_type=EventType.PASSWORD_LINK_USED)]


def test_a_new_link_replaces_the_old_one_and_signs_the_account_out(client: TestClient, ctx: ServiceContext) -> None:
    root = admin(client, ctx)
    make_user(ctx)
    alice_session = login(client)["session_token"]
    first = client.post("/api/v1/admin/users/alice/password-link", headers=root)
    assert first.status_code == 201, first.text
    second = client.post("/api/v1/admin/users/ALICE/password-link", headers=root).json()
    assert second["username"] == "alice"
    # The first one was not used: it is told as expired, not as used.
    with pytest.raises(PasswordLinkExpired):
        password_links.check_link(ctx, token_of(first.json()["set_password_url"]))
    password_links.set_password(ctx, token=token_of(second["set_password_url"]), password=NEW_PASSWORD, client=CLIENT)
    assert_error(client.get("/api/v1/me", headers=auth_header(alice_session)), 401, "authentication_required")
    assert_error(
        client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}), 401, "invalid_credentials"
    )
    assert login(client, "alice", NEW_PASSWORD)["status"] == "authenticated"
    issued = audit.all_events(ctx, username="alice", event_type=EventType.PASSWORD_LINK_ISSUED)
    assert len(issued) == 2 and issued[0].event.actor_username == "root"
    assert_error(client.post("/api/v1/admin/users/root/password-link", headers=root), 403, "cannot_act_on_self")
    assert_error(client.post("/api/v1/admin/users/nobody/password-link", headers=root), 404, "user_not_found")


def test_the_username_is_normalised_and_taken_in_any_spelling(client: TestClient, ctx: ServiceContext) -> None:
    root = admin(client, ctx)
    made = create(client, root, username="\uff34\uff41\uff4e\uff41\uff4b\uff41")  # Ｔａｎａｋａ from a Japanese IME
    assert made.status_code == 201, made.text
    assert made.json()["username"] == "Tanaka"
    for spelling in ("tanaka", "TANAKA", " Tanaka "):
        assert_error(create(client, root, username=spelling), 409, "username_taken")
    japanese = create(client, root, username="田中", email="tanaka.jp@example.com")
    assert japanese.status_code == 201 and japanese.json()["username"] == "田中"
    assert [u.username for u in accounts.list_users(ctx)] == ["root", "Tanaka", "田中"]


def test_bad_input_is_a_422_said_in_english_and_japanese(client: TestClient, ctx: ServiceContext) -> None:
    root = admin(client, ctx)
    mixed = create(client, root, username="p\u0430ypal")  # a Cyrillic а among Latin letters
    assert assert_error(mixed, 422, "invalid_request")["message"].startswith("A username cannot mix letters")
    in_japanese = client.post(
        "/api/v1/admin/users",
        json={"username": "p\u0430ypal", "email": "p@example.com"},
        headers=root | JA,
    )
    assert in_japanese.status_code == 422 and in_japanese.json()["error"]["code"] == "invalid_request"
    said = in_japanese.json()["error"]["message"]
    assert "ユーザー名" in said and "A username" not in said
    email = assert_error(create(client, root, email="not an address"), 422, "invalid_request")["message"]
    assert "name@example.com" in email
    assert_error(create(client, root, role="owner"), 422, "invalid_request")
    assert_error(create(client, root, password="chosen by the admin"), 422, "invalid_request")
    assert_error(client.post("/api/v1/admin/users", json={"username": "x"}, headers=root), 422, "invalid_request")
    assert [u.username for u in accounts.list_users(ctx)] == ["root"]


def test_only_an_instance_administrator_who_verified_recently_creates_accounts(
    client: TestClient, ctx: ServiceContext
) -> None:
    root = admin(client, ctx)
    make_user(ctx, "uma")
    organisations.create(ctx, slug="a", name="Org A", actor=None, client=CLIENT)
    organisations.add_member(ctx, "a", username="uma", role=OrgRole.OWNER, managed=True, actor=None, client=CLIENT)
    make_user(ctx, "bob")
    for name in ("uma", "bob"):
        headers = auth_header(login(client, name)["session_token"])
        assert_error(create(client, headers), 403, "admin_required")
        assert_error(client.post("/api/v1/admin/users/bob/password-link", headers=headers), 403, "admin_required")
    assert_error(create(client, {}), 401, "authentication_required")
    ctx.clock.advance(11 * 60)  # type: ignore[attr-defined]
    assert_error(create(client, root), 403, "reauthentication_required")
    assert_error(client.post("/api/v1/admin/users/bob/password-link", headers=root), 403, "reauthentication_required")
    assert "hanako" not in {u.username for u in accounts.list_users(ctx)}


# --- deleting an account ---------------------------------------------------------------------------------------------


def test_deleting_ends_every_credential_and_keeps_the_audit_chain(client: TestClient, ctx: ServiceContext) -> None:
    root = admin(client, ctx)
    alice = make_user(ctx)
    session = login(client)["session_token"]
    secret, _ = enable_totp(client, ctx, session)
    first = login(client)
    mfa = {"mfa_token": first["mfa_token"], "method": "totp", "code": code_at(secret, ctx), "remember_device": True}
    signed = client.post("/api/v1/auth/mfa", json=mfa).json()
    ctx.clock.advance(30)  # type: ignore[attr-defined]
    personal = tokens.create(
        ctx,
        alice,
        kind=tokens.TokenKind.PERSONAL,
        name="ci",
        scopes=["read_repository"],
        expires_on=None,
        client=CLIENT,
    ).secret
    app_password = tokens.create(
        ctx, alice, kind=tokens.TokenKind.APP_PASSWORD, name="mail", scopes=["read_repository"], expires_on=None,
        client=CLIENT,
    ).secret  # fmt: skip
    gate = {"scope": "read_repository"}
    for secret_of_alice in (personal, app_password):
        assert client.get("/auth/basic", params=gate, headers=basic_header("alice", secret_of_alice)).is_success
    before = audit.verify(ctx)
    assert before.problem is None

    answer = delete(client, "ALICE", root)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "username": "alice",
        "sessions_ended": 2,
        "tokens_revoked": 2,
        "devices_forgotten": 1,
        "memberships_removed": 1,
    }
    assert_error(client.get("/api/v1/me", headers=auth_header(signed["session_token"])), 401, "authentication_required")
    for secret_of_alice in (personal, app_password):
        assert client.get("/auth/basic", params=gate, headers=basic_header("alice", secret_of_alice)).status_code == 401
    with_device = {"username": "alice", "password": PASSWORD, "device_token": signed["device_token"]}
    assert_error(client.post("/api/v1/auth/login", json=with_device), 401, "invalid_credentials")
    assert_error(client.get("/api/v1/admin/users/alice", headers=root), 404, "user_not_found")

    # The log keeps every event about her, the chain verifies, and the deletion is its last link.
    after = audit.verify(ctx)
    assert after.problem is None and after.events > before.events
    kept = [r.event for r in audit.all_events(ctx, username="alice", limit=200)]
    assert {EventType.USER_CREATED, EventType.TOTP_ENROLLED, EventType.TOKEN_CREATED} <= {e.event_type for e in kept}
    deleted = kept[0]
    assert deleted.event_type == EventType.USER_DELETED and deleted.actor_username == "root"
    assert deleted.subject_user_id == alice.id and deleted.details["reason"] == REASON["reason"]
    # A new account of the same name is someone else: a new id, and none of the old account's log.
    again = make_user(ctx)
    assert again.id > alice.id
    assert [r.event.event_type for r in audit.my_events(ctx, again.id)] == [EventType.USER_CREATED]
    assert login(client)["status"] == "authenticated"


def test_not_oneself_not_the_last_administrator_nor_an_organisations_last_owner(
    client: TestClient, ctx: ServiceContext
) -> None:
    root = admin(client, ctx)
    assert_error(delete(client, "root", root), 403, "cannot_act_on_self")
    assert_error(delete(client, "nobody", root), 404, "user_not_found")
    assert_error(delete(client, "root", root, reason=None), 422, "invalid_request")
    make_user(ctx, "ada", role=InstanceRole.ADMIN)
    assert_error(delete(client, "ada", root, reason="ab"), 422, "invalid_request")
    # The command line on the server may delete anyone but the last administrator who is not disabled.
    account_status.delete(ctx, username="ada", actor=None, client=CLIENT, reason="ticket 16")
    with pytest.raises(LastAdministrator):
        account_status.delete(ctx, username="root", actor=None, client=CLIENT, reason="ticket 16")
    assert [u.username for u in accounts.list_users(ctx)] == ["root"]
    # An organisation keeps an owner.
    make_user(ctx, "olga")
    organisations.create(ctx, slug="a", name="Org A", actor=None, client=CLIENT)
    organisations.add_member(ctx, "a", username="olga", role=OrgRole.OWNER, managed=True, actor=None, client=CLIENT)
    refused = assert_error(delete(client, "olga", root), 409, "last_owner")
    assert "Org A" in refused["message"]
    organisations.add_member(ctx, "a", username="root", role=OrgRole.OWNER, managed=False, actor=None, client=CLIENT)
    assert delete(client, "olga", root).status_code == 200
    ctx.clock.advance(11 * 60)  # type: ignore[attr-defined]
    make_user(ctx, "bob")
    assert_error(delete(client, "bob", root), 403, "reauthentication_required")
    assert accounts.find_user(ctx, "bob").username == "bob"


def test_an_organisations_manager_deletes_only_members_it_manages(client: TestClient, ctx: ServiceContext) -> None:
    for name in ("uma", "mia", "otto", "bert"):
        make_user(ctx, name)
    make_user(ctx, "ian", role=InstanceRole.ADMIN)
    organisations.create(ctx, slug="a", name="Org A", actor=None, client=CLIENT)
    organisations.create(ctx, slug="b", name="Org B", actor=None, client=CLIENT)
    for slug, name, role, managed in [
        ("a", "uma", OrgRole.USER_ADMIN, True),
        ("a", "mia", OrgRole.MEMBER, True),
        ("a", "otto", OrgRole.MEMBER, False),
        ("b", "bert", OrgRole.MEMBER, True),
    ]:
        organisations.add_member(ctx, slug, username=name, role=role, managed=managed, actor=None, client=CLIENT)
    uma = auth_header(login(client, "uma")["session_token"])
    for target in ("otto", "bert", "ian", "nobody"):
        assert_error(delete(client, target, uma), 403, "not_permitted")
    assert_error(delete(client, "uma", uma), 403, "cannot_act_on_self")
    done = delete(client, "mia", uma)
    assert done.status_code == 200 and done.json()["memberships_removed"] == 2  # "default" and "a"
    member = auth_header(login(client, "otto")["session_token"])
    assert_error(delete(client, "bert", member), 403, "admin_required")
    assert {u.username for u in accounts.list_users(ctx)} == {"uma", "otto", "bert", "ian"}


def test_a_link_made_for_an_account_dies_with_it(client: TestClient, ctx: ServiceContext) -> None:
    root = admin(client, ctx)
    token = token_of(create(client, root).json()["set_password_url"])
    assert delete(client, "hanako", root).status_code == 200
    with pytest.raises(PasswordLinkInvalid):
        password_links.check_link(ctx, token)
    with pytest.raises(InvalidCredentials):
        signin.login(ctx, username="hanako", password=NEW_PASSWORD, client=CLIENT)


def test_the_document_states_the_new_operations_and_their_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    expected = {
        ("/api/v1/admin/users", "post"): {"201", "401", "403", "409", "422"},
        ("/api/v1/admin/users/{username}/password-link", "post"): {"201", "401", "403", "404", "422"},
        ("/api/v1/admin/users/{username}", "delete"): {"200", "401", "403", "404", "409", "422"},
    }
    for (path, method), statuses in expected.items():
        operation = spec["paths"][path][method]
        assert set(operation["responses"]) == statuses, (path, method)
        assert operation["security"] == [{"session": []}]
        for status in statuses - {"200", "201"}:
            body = operation["responses"][status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorResponse"}, (path, method, status)
    body = spec["components"]["schemas"]["NewUserRequest"]
    assert body["required"] == ["username", "email"] and body["additionalProperties"] is False
    assert "RFC 8265" in body["properties"]["username"]["description"]
    assert "password" not in body["properties"]
    reason = next(
        p for p in spec["paths"]["/api/v1/admin/users/{username}"]["delete"]["parameters"] if p["name"] == "reason"
    )
    assert reason["required"] is True and reason["schema"]["minLength"] == 3
    created = spec["components"]["schemas"]["NewUserOut"]["properties"]
    assert {"username", "email", "role", "set_password_url", "expires_at"} <= created.keys()
