"""One normalisation of usernames everywhere: the name that created an account is the name that signs in with it.

An account created as ``" Alice "`` is ``Alice``; it used to answer 401 when signed in with the same spaces.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import ClientInfo
from nidan.core.usernames import normalised_username, username_key
from nidan.errors import InvalidInput
from nidan.services import accounts, applications, enrollment
from tests.helpers import PASSWORD, auth_header, basic_header, code_at

#: How people type a name: with spaces from a copy and paste, in another case, full-width from a Japanese IME.
TYPED = [" alice ", "alice\t", "ALICE", "\u3000alice\u3000", "ａｌｉｃｅ", " Ａｌｉｃｅ\n"]


@pytest.mark.parametrize("typed", TYPED)
def test_every_typed_form_has_the_one_key(typed: str) -> None:
    assert username_key(typed) == "alice"


def test_normalising_keeps_the_case_for_display() -> None:
    assert normalised_username(" Ａｌｉｃｅ ") == "Alice"


def create_alice(runtime: Runtime, typed: str = " Alice ") -> None:
    accounts.create_user(runtime.services, username=typed, email="alice@example.com", password=PASSWORD)


def test_an_account_created_with_spaces_is_stored_without_them(runtime: Runtime) -> None:
    create_alice(runtime)
    assert [user.username for user in accounts.list_users(runtime.services)] == ["Alice"]


@pytest.mark.parametrize("typed", TYPED)
def test_the_api_signs_in_with_the_name_as_it_was_typed(client: TestClient, runtime: Runtime, typed: str) -> None:
    create_alice(runtime)
    response = client.post("/api/v1/auth/login", json={"username": typed, "password": PASSWORD})
    assert response.status_code == 200, response.text
    me = client.get("/api/v1/me", headers=auth_header(response.json()["session_token"]))
    assert me.json()["username"] == "Alice"


def test_the_sign_in_page_accepts_the_name_as_it_was_typed(client: TestClient, runtime: Runtime) -> None:
    create_alice(runtime)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed_in = client.post(
        "/login",
        data={"username": " alice ", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"].startswith("/security")


def test_the_basic_gate_takes_the_name_as_it_was_typed(client: TestClient, runtime: Runtime) -> None:
    create_alice(runtime)
    response = client.get("/auth/basic", params={"scope": "read_repository"}, headers=basic_header(" alice ", PASSWORD))
    assert response.status_code == 200, response.text
    assert response.headers["x-nidan-user"] == "Alice"


def test_the_verify_api_takes_the_name_as_it_was_typed(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    create_alice(runtime)
    alice = accounts.find_user(ctx, "alice")
    started = enrollment.start_totp(ctx, alice)
    enrollment.activate_totp(ctx, alice, code_at(started.secret, ctx), client=ClientInfo())
    ctx.clock.advance(60)  # type: ignore[attr-defined]
    key = applications.add(ctx, name="wiki", actor=None, client=ClientInfo()).api_key
    answer = client.post(
        "/api/v1/verify",
        json={"username": " ａｌｉｃｅ ", "code": code_at(started.secret, ctx)},
        headers=auth_header(key),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True


# --- PRECIS UsernameCaseMapped (RFC 8265): names of any script, as Japanese users type them (issue 16) ----------


@pytest.mark.parametrize(
    ("created", "typed"),
    [
        ("田中", "田中"),
        ("tanaka.hiroshi", "ＴＡＮＡＫＡ.hiroshi"),
        ("tanaka", "ｔａｎａｋａ"),
        ("tanaka", "TANAKA"),
        ("ｔａｎａｋａ", "tanaka"),
        ("田中たろう", "\u3000田中たろう\u3000"),
    ],
)
def test_the_api_signs_in_names_of_any_script(client: TestClient, runtime: Runtime, created: str, typed: str) -> None:
    accounts.create_user(runtime.services, username=created, email="t@example.com", password=PASSWORD)
    response = client.post("/api/v1/auth/login", json={"username": typed, "password": PASSWORD})
    assert response.status_code == 200, response.text
    me = client.get("/api/v1/me", headers=auth_header(response.json()["session_token"]))
    assert me.json()["username"] == normalised_username(created)


@pytest.mark.parametrize("typed", ["田中", "ＴＡＮＡＫＡ"])
def test_the_sign_in_page_signs_in_names_of_any_script(client: TestClient, runtime: Runtime, typed: str) -> None:
    accounts.create_user(runtime.services, username="田中", email="t@example.com", password=PASSWORD)
    accounts.create_user(runtime.services, username="Tanaka", email="u@example.com", password=PASSWORD)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    signed_in = client.post(
        "/login", data={"username": typed, "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert signed_in.status_code == 303, signed_in.text


@pytest.mark.parametrize(
    "look_alike",
    [
        "p\u0430ypal",  # a Cyrillic а in a Latin name
        "pay\u200dpal",  # a zero-width joiner
        "paypal\u202e",  # a right-to-left override
        "pay\u200bpal",  # a zero-width space
    ],
)
def test_a_look_alike_of_a_name_signs_in_as_nobody(client: TestClient, runtime: Runtime, look_alike: str) -> None:
    """Refused names are no account: at sign-in they are an unknown name (the same 401, after the same hash)."""
    accounts.create_user(runtime.services, username="paypal", email="p@example.com", password=PASSWORD)
    assert username_key(look_alike) is None
    api = client.post("/api/v1/auth/login", json={"username": look_alike, "password": PASSWORD})
    assert api.status_code == 401 and api.json()["error"]["code"] == "invalid_credentials"
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = client.post(
        "/login", data={"username": look_alike, "password": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert refused.status_code == 401, refused.text
    assert "Incorrect username or password" in refused.text


@pytest.mark.parametrize("look_alike", ["p\u0430ypal", "ta\u200dnaka", "tanaka\u202e", "\u3000 "])
def test_a_look_alike_cannot_be_created(runtime: Runtime, look_alike: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        accounts.create_user(runtime.services, username=look_alike, email="p@example.com", password=PASSWORD)
    assert refused.value.message.startswith("A username")
