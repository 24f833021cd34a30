"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from nidan.core import passwords as passwords_module
from nidan.core.passwords import (
    COMMON_PASSWORDS_FILE,
    MAX_LENGTH,
    MIN_LENGTH,
    HashPassword,
    PasswordHashing,
    VerifyPassword,
    common_passwords,
    password_problem,
    unmatchable_hash,
)
from nidan.core.recovery import HashParameters
from nidan.services.password_steps import run_now
from tests.passwords_support import DUMMY_PASSWORD, FAST, steps_of_a_login


@pytest.fixture(scope="module")
def hashing() -> PasswordHashing:
    return PasswordHashing(FAST)


def test_hash_is_argon2id_with_the_given_parameters(hashing: PasswordHashing) -> None:
    stored = hashing.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert "m=1024,t=1,p=1" in stored
    assert "correct horse" not in stored
    # Salted: the same password hashes differently each time.
    assert hashing.hash("correct horse battery staple") != stored


def test_verify(hashing: PasswordHashing) -> None:
    stored = hashing.hash("correct horse battery staple")
    assert hashing.verify(stored, "correct horse battery staple") is True
    assert hashing.verify(stored, "correct horse battery stapl") is False
    assert hashing.verify(stored, "Correct horse battery staple") is False
    assert hashing.verify(stored, "") is False


def test_verify_unicode_password(hashing: PasswordHashing) -> None:
    stored = hashing.hash("pässwörd-二段")
    assert hashing.verify(stored, "pässwörd-二段") is True
    assert hashing.verify(stored, "passwort-二段") is False


@pytest.mark.parametrize("password", ["anything at all", DUMMY_PASSWORD, ""])
def test_verify_without_a_stored_hash_is_false(hashing: PasswordHashing, password: str) -> None:
    assert hashing.verify(None, password) is False


@pytest.mark.parametrize("stored", ["not-a-hash", "$argon2id$garbage", "$2b$12$abcdefghijklmnopqrstuv"])
def test_verify_against_garbage_is_false(hashing: PasswordHashing, stored: str) -> None:
    assert hashing.verify(stored, "correct horse battery staple") is False


def test_verify_with_an_empty_stored_hash_is_false(hashing: PasswordHashing) -> None:
    assert hashing.verify("", DUMMY_PASSWORD) is False


def test_verify_with_a_lone_surrogate_is_false(hashing: PasswordHashing) -> None:
    stored = hashing.hash("correct horse battery staple")
    assert hashing.verify(stored, "\ud800" * 8) is False


def test_verify_a_hash_made_with_other_parameters(hashing: PasswordHashing) -> None:
    stronger = PasswordHashing(HashParameters(memory_cost_kib=2048, time_cost=2))
    stored = stronger.hash("correct horse battery staple")
    assert hashing.verify(stored, "correct horse battery staple") is True
    assert hashing.needs_rehash(stored) is True
    assert hashing.needs_rehash(hashing.hash("correct horse battery staple")) is False


def test_password_problem_length_bounds() -> None:
    assert MIN_LENGTH == 12
    assert password_problem("") is not None
    assert str(password_problem("a" * (MIN_LENGTH - 1))) == "Choose a password of at least 12 characters."
    assert password_problem("tram" * 3) is None  # exactly 12
    assert password_problem("a" * MAX_LENGTH) is None
    assert str(password_problem("a" * (MAX_LENGTH + 1))) == f"Choose a password of at most {MAX_LENGTH} characters."


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("lowercaseonlyhere", id="lower-case-only"),
        pytest.param("918273645501928", id="digits-only"),
        pytest.param("correct horse battery staple", id="passphrase-with-spaces"),
        pytest.param("二段認証の合言葉はこれです", id="non-latin"),
    ],
)
def test_password_problem_has_no_composition_rules(password: str) -> None:
    assert password_problem(password) is None


def test_password_problem_counts_characters_not_bytes() -> None:
    # Eleven characters, but 44 bytes in UTF-8.
    assert password_problem("😀" * 11) is not None
    assert password_problem("二" * 12) is None


TOO_COMMON = (
    "This password is too common: it is on the lists attackers try first. Choose another, for example a few "
    "unrelated words."
)


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("qwerty123456", id="the-list-as-it-is"),
        pytest.param("Password1234", id="another-case"),
        pytest.param("ＩＬＯＶＥＹＯＵ１２３４", id="full-width"),
        pytest.param("1qaz2wsx3edc", id="keyboard-walk"),
    ],
)
def test_a_common_password_is_refused_whatever_its_length(password: str) -> None:
    assert str(password_problem(password)) == TOO_COMMON


def test_the_common_passwords_ship_with_the_package() -> None:
    """Read from the installed package (no network): 10,000 of them, each long enough to pass the length rule,
    kept as nidan compares them (lower case), and named in pyproject's package-data so a wheel carries them."""
    listed = common_passwords()
    assert len(listed) == 10_000
    assert all(len(password) >= MIN_LENGTH and password == password.casefold() for password in listed)
    assert {"qwerty123456", "password1234", "1q2w3e4r5t6y"} <= listed
    shipped = Path(passwords_module.__file__).with_name(COMMON_PASSWORDS_FILE)
    assert shipped.is_file()
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert f"core/{COMMON_PASSWORDS_FILE}" in pyproject["tool"]["setuptools"]["package-data"]["nidan"]


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param("alice.example", "alice.example", id="the-username-itself"),
        pytest.param("Alice", "alice likes long walks", id="inside-any-case"),
        pytest.param("alice", "my name is ＡＬＩＣＥ, ok?", id="inside-full-width"),
        pytest.param("bob", "bob-bob-bob-bob", id="three-letters"),
    ],
)
def test_a_password_containing_the_username_is_refused(username: str, password: str) -> None:
    problem = password_problem(password, username=username)
    assert problem is not None and str(problem) == (
        f"Choose a password that does not contain your username ({username})."
    )
    assert password_problem(password) is None or password == "bob-bob-bob-bob"  # only because of the name


def test_a_two_letter_username_inside_a_password_is_fine() -> None:
    # Two letters turn up inside too many words: "al" in "a pleasant walk" is not the name.
    assert password_problem("a pleasant walk in the park", username="al") is None
    assert password_problem("a pleasant walk in the park", username="carol") is None


def test_the_made_up_hash_for_unknown_users_is_a_real_one_that_nothing_matches() -> None:
    """Unknown usernames are verified against it, costing one real argon2 verify: same parameters, same shape as
    a computed hash, and no password (nor an empty one) matches it."""
    hashing = PasswordHashing(FAST)
    made_up, computed = unmatchable_hash(FAST), hashing.hash("correct horse battery staple")
    assert made_up.rsplit("$", 2)[0] == computed.rsplit("$", 2)[0]  # $argon2id$v=19$m=1024,t=1,p=1
    assert [len(part) for part in made_up.split("$")[-2:]] == [len(part) for part in computed.split("$")[-2:]]
    assert not hashing.needs_rehash(made_up)
    checker = PasswordHasher(memory_cost=FAST.memory_cost_kib, time_cost=FAST.time_cost, parallelism=1)
    for password in ("", "correct horse battery staple", DUMMY_PASSWORD):
        with pytest.raises(VerifyMismatchError):  # a verify that ran to the end, and did not match
            checker.verify(made_up, password)


# --- password work handed to the hashing threads, and use cases written as steps -----------------------------------


def test_submitted_work_is_answered_as_done_work(either: PasswordHashing) -> None:
    stored = either.hash("correct horse battery staple")
    assert either.submit(VerifyPassword(stored, "correct horse battery staple")).result() is True
    assert either.submit(VerifyPassword(stored, "wrong")).result() is False
    assert either.submit(VerifyPassword(None, DUMMY_PASSWORD)).result() is False  # an unknown user
    assert either.submit(VerifyPassword("not a hash", "x")).result() is False
    made = either.submit(HashPassword("another password")).result()
    assert isinstance(made, str) and either.verify(made, "another password")
    assert either.do(VerifyPassword(stored, "correct horse battery staple")) is True


def test_a_password_is_never_shown_by_the_work_that_carries_it() -> None:
    assert "hunter2" not in repr(VerifyPassword("$argon2id$...", "hunter2"))
    assert "hunter2" not in repr(HashPassword("hunter2"))


def test_run_now_sends_each_answer_back_and_returns_the_result(either: PasswordHashing) -> None:
    stored = either.hash("correct horse battery staple")
    rehashed = run_now(either, steps_of_a_login(stored, "correct horse battery staple"))
    assert rehashed != stored and either.verify(rehashed, "correct horse battery staple")
    with pytest.raises(ValueError, match="wrong password"):
        run_now(either, steps_of_a_login(stored, "wrong"))
