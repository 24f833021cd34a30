"""The password rule as people meet it: the forms say it, and a refusal says which rule, in their language, with
the stable code ``weak_password``."""

from __future__ import annotations

from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.services import setup
from tests.helpers import PASSWORD, auth_header, login, make_user
from tests.web.api_support import assert_error
from tests.web.pages_support import error_code_of, signed_in_alice, submit

RULE = "At least 12 characters, not a common password and not containing your username."


def test_the_api_says_why_a_new_password_is_refused_in_english_and_japanese(
    client: TestClient, runtime: Runtime
) -> None:
    make_user(runtime.services)
    here = auth_header(login(client)["session_token"])
    common = {"current_password": PASSWORD, "new_password": "qwerty123456"}
    error = assert_error(client.post("/api/v1/me/password", json=common, headers=here), 422, "weak_password")
    assert error["message"].startswith("This password is too common: it is on the lists attackers try first.")
    named = {"current_password": PASSWORD, "new_password": "alice in wonderland"}
    japanese = client.post("/api/v1/me/password", json=named, headers={**here, "Accept-Language": "ja"})
    assert japanese.status_code == 422
    assert japanese.json()["error"] == {
        **japanese.json()["error"],
        "code": "weak_password",
        "message": "ユーザー名（alice）を含まないパスワードにしてください。",
    }


def test_the_setup_page_says_the_rule_and_refuses_a_common_password(client: TestClient, runtime: Runtime) -> None:
    token = setup.issue_setup_token(runtime.services)
    assert token
    page = client.get(f"/setup?token={token}")
    assert RULE in " ".join(page.text.split()) and 'minlength="12"' in page.text
    fields = {"token": token, "username": "root", "email": "root@example.com"}
    weak = submit(client, page, "/setup", **fields, password="password1234", password_repeat="password1234")
    assert weak.status_code == 422 and error_code_of(weak) == "weak_password"
    assert "This password is too common" in weak.text
    assert submit(client, weak, "/setup", **fields, password=PASSWORD, password_repeat=PASSWORD).status_code == 303


def test_the_change_password_page_says_the_rule(client: TestClient, runtime: Runtime) -> None:
    signed_in_alice(client, runtime.services)
    page = client.get("/security/password")
    assert RULE in " ".join(page.text.split()) and 'minlength="12"' in page.text
    japanese = client.get("/security/password", headers={"Accept-Language": "ja"})
    assert "12文字以上で、よく使われるパスワードやユーザー名を含むものは使えません。" in japanese.text
