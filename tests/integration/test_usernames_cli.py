"""``nidan user add`` with names as people write them (issue 16): PRECIS UsernameCaseMapped (RFC 8265)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from nidan.bootstrap import Runtime
from nidan.config import Settings
from nidan.core.models import ClientInfo
from nidan.services import signin
from tests.helpers import PASSWORD
from tests.integration.backup_support import assert_refused, cli_for

Invoke = Callable[..., Result]
CLIENT = ClientInfo(ip="192.0.2.7")


@pytest.fixture
def nidan(settings: Settings, tmp_path: Path) -> Invoke:
    return cli_for(settings, tmp_path)


def add(nidan: Invoke, username: str, email: str = "someone@example.com") -> Result:
    return nidan("user", "add", username, "--email", email, "--password-stdin", input=PASSWORD + "\n")


@pytest.mark.parametrize(
    ("typed", "shown", "signs_in_as"),
    [
        ("田中", "田中", ["田中", " 田中 "]),
        ("tanaka.hiroshi", "tanaka.hiroshi", ["TANAKA.HIROSHI", "ｔａｎａｋａ．ｈｉｒｏｓｈｉ"]),
        ("ｔａｎａｋａ", "tanaka", ["tanaka", "TANAKA", "Ｔａｎａｋａ"]),
        ("Müller", "Müller", ["müller", "MÜLLER", "Mu\u0308ller"]),
        ("ｶﾞﾝﾀﾞﾑ", "ガンダム", ["ガンダム"]),
    ],
)
def test_names_of_any_script_are_created_and_sign_in(
    nidan: Invoke, runtime: Runtime, typed: str, shown: str, signs_in_as: list[str]
) -> None:
    result = add(nidan, typed)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"Created member {shown} <someone@example.com>."
    listed = json.loads(nidan("user", "list", "--json").stdout)
    assert [user["username"] for user in listed] == [shown]
    for name in signs_in_as:
        answer = signin.login(runtime.services, username=name, password=PASSWORD, client=CLIENT)
        assert isinstance(answer, signin.Authenticated), name
        assert answer.user.username == shown


def test_the_same_name_in_another_width_or_case_is_taken(nidan: Invoke) -> None:
    assert add(nidan, "tanaka").exit_code == 0
    for same in ("TANAKA", "ｔａｎａｋａ", " Tanaka "):
        assert_refused(add(nidan, same, "other@example.com"), "username_taken")


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("p\u0430ypal", "A username cannot mix letters of different scripts"),  # a Cyrillic а
        ("ta\u200dnaka", "A username cannot contain invisible characters"),  # zero-width joiner
        ("tanaka\u202e", "A username cannot contain invisible characters"),  # right-to-left override
        ("\u3000", "A username cannot be empty."),
        ("tanaka!", "A username may contain only letters, digits, '.', '_' and '-'."),
    ],
)
def test_refused_names_say_why_in_english(nidan: Invoke, typed: str, says: str) -> None:
    line = assert_refused(add(nidan, typed), "invalid_request")
    assert says in line
    assert json.loads(nidan("user", "list", "--json").stdout) == []
