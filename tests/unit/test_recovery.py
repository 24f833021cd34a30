"""Recovery codes: generation, normalisation, argon2id digests with a shared salt, and lookup."""

from __future__ import annotations

import base64
import hmac
import os
import random
import re
from collections.abc import Callable, Iterator

import pytest
from argon2.low_level import Type, hash_secret

from nidan.core import recovery
from nidan.core.recovery import (
    ALPHABET,
    CODE_LENGTH,
    CODES_PER_SET,
    HashParameters,
    digest,
    find_position,
    generate_codes,
    normalize,
)

#: Cheap argon2id parameters, for this unit test only.
FAST = HashParameters(memory_cost_kib=1024, time_cost=1)

CODE_SHAPE = re.compile(f"[{ALPHABET}]{{5}}-[{ALPHABET}]{{5}}")


def test_alphabet_is_crockford_base32() -> None:
    assert len(ALPHABET) == 32
    assert len(set(ALPHABET)) == 32
    assert ALPHABET.lower() == ALPHABET
    for excluded in "ilou":
        assert excluded not in ALPHABET


# --- generation


def test_generate_sixteen_unique_codes() -> None:
    codes = generate_codes(os.urandom)
    assert CODES_PER_SET == 16
    assert len(codes) == 16
    assert len(set(codes)) == 16
    for code in codes:
        assert CODE_SHAPE.fullmatch(code), code
        assert normalize(code) == code.replace("-", "")


def test_generate_draws_one_byte_per_character() -> None:
    requested: list[int] = []

    def source(n: int) -> bytes:
        requested.append(n)
        return bytes([len(requested)] * n)

    assert generate_codes(source, count=3) == ["11111-11111", "22222-22222", "33333-33333"]
    assert requested == [CODE_LENGTH] * 3


def test_generate_maps_bytes_onto_the_alphabet() -> None:
    assert generate_codes(lambda n: bytes(range(n)), count=1) == ["01234-56789"]
    assert generate_codes(lambda n: bytes(range(22, 22 + n)), count=1) == ["pqrst-vwxyz"]
    assert generate_codes(lambda n: bytes([255] * n), count=1) == ["zzzzz-zzzzz"]


def test_generate_redraws_duplicates() -> None:
    draws: Iterator[bytes] = iter([bytes(10), bytes(10), bytes([32] * 10), bytes([1] * 10)])
    assert generate_codes(lambda n: next(draws), count=2) == ["00000-00000", "11111-11111"]


def test_generate_with_a_seeded_source_is_reproducible() -> None:
    def seeded() -> Callable[[int], bytes]:
        rng = random.Random(1234)
        return rng.randbytes

    assert generate_codes(seeded()) == generate_codes(seeded())
    assert generate_codes(seeded()) != generate_codes(os.urandom)


# --- normalisation

CODE = "01kq2-m1x0t"
CANONICAL = "01kq2m1x0t"


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("01kq2-m1x0t", id="as-issued"),
        pytest.param("01KQ2-M1X0T", id="upper-case"),
        pytest.param("01kQ2-m1X0t", id="mixed-case"),
        pytest.param("01kq2m1x0t", id="no-dash"),
        pytest.param("01kq2 m1x0t", id="space-instead-of-dash"),
        pytest.param("  01kq2-m1x0t  ", id="surrounding-spaces"),
        pytest.param("01kq2 - m1x0t", id="spaces-around-dash"),
        pytest.param("01kq2-m1x0t\n", id="trailing-newline"),
        pytest.param("01kq2\tm1x0t", id="tab"),
        pytest.param("01-kq-2m-1x-0t", id="extra-dashes"),
        pytest.param("o1kq2-m1xot", id="lower-o-for-zero"),
        pytest.param("O1KQ2-M1XOT", id="upper-o-for-zero"),
        pytest.param("0ikq2-mix0t", id="lower-i-for-one"),
        pytest.param("0IKQ2-MIX0T", id="upper-i-for-one"),
        pytest.param("0lkq2-mlx0t", id="lower-l-for-one"),
        pytest.param("0LKQ2-MLX0T", id="upper-l-for-one"),
        pytest.param("OLkq2-mIxot", id="all-lookalikes"),
        # As a Japanese IME types it (full-width letters and digits, its dashes) and as word processors do.
        pytest.param("０１ｋｑ２-ｍ１ｘ０ｔ", id="fullwidth"),
        pytest.param("０１ｋｑ２ーｍ１ｘ０ｔ", id="fullwidth-prolonged-sound-mark"),
        pytest.param("01kq2ーm1x0t", id="prolonged-sound-mark"),
        pytest.param("01kq2－m1x0t", id="fullwidth-hyphen-minus"),
        pytest.param("01kq2―m1x0t", id="horizontal-bar"),
        pytest.param("01kq2‐m1x0t", id="hyphen"),
        pytest.param("01kq2–m1x0t", id="en-dash"),
        pytest.param("01kq2\u3000m1x0t", id="ideographic-space"),
        pytest.param("０１ＫＱ２ｰＭ１Ｘ０Ｔ", id="fullwidth-upper-halfwidth-sound-mark"),
        # NFKC reads the Kelvin sign as K: the same letter to anyone who reads it.
        pytest.param("01\u212aq2-m1x0t", id="kelvin-sign"),
    ],
)
def test_normalize_variants(typed: str) -> None:
    assert normalize(typed) == CANONICAL


@pytest.mark.parametrize(
    "typed",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="only-spaces"),
        pytest.param("-----", id="only-dashes"),
        pytest.param("01kq2-m1x0", id="nine-chars"),
        pytest.param("01kq2-m1x0tt", id="eleven-chars"),
        pytest.param("01kq2-m1x0u", id="u-not-in-alphabet"),
        pytest.param("01kq2_m1x0t", id="underscore"),
        pytest.param("01kq2.m1x0t", id="dot"),
        pytest.param("01kq2-m1x0!", id="punctuation"),
        pytest.param("01кq2-m1x0t", id="cyrillic-ka"),
        pytest.param("01kq2-m1x0\u0442", id="cyrillic-te"),
        pytest.param("01kq2-m1x0t\u0301", id="combining-accent"),
        pytest.param("01kq2-m1x0\u0130", id="dotted-capital-i"),
        pytest.param("01kq2-m1x0\ud800", id="lone-surrogate"),
        pytest.param("01kq2-m1x0\x00", id="nul"),
        pytest.param("01kq2-m1x0t" * 2, id="code-twice"),
    ],
)
def test_normalize_refuses_invalid_input(typed: str) -> None:
    assert normalize(typed) is None


def test_normalize_refuses_what_nfkc_does_not_make_a_code_character() -> None:
    """Letters of other scripts, a combining mark, a dash that is not between characters of a code."""
    assert normalize("01kq2-m1x0\u0442") is None  # Cyrillic te, not t
    assert normalize("01kq2-m1x0t\u0301") is None
    assert normalize("ーーーーー") is None


def test_normalize_output_is_always_ascii_alphabet() -> None:
    for code in generate_codes(os.urandom):
        for variant in (code, code.upper(), code.replace("-", " ")):
            normalized = normalize(variant)
            assert normalized is not None
            assert len(normalized) == CODE_LENGTH
            assert set(normalized) <= set(ALPHABET)


# --- digests and lookup


@pytest.fixture(scope="module")
def issued() -> tuple[list[str], bytes, list[tuple[int, bytes]]]:
    """A set of 16 codes, their shared salt, and the stored ``(position, digest)`` rows in scrambled order."""
    codes = generate_codes(os.urandom)
    salt = os.urandom(recovery.SALT_BYTES)
    rows = [(position, digest(normalize(code) or "", salt, FAST)) for position, code in enumerate(codes)]
    random.Random(7).shuffle(rows)
    return codes, salt, rows


def test_digest_properties(issued: tuple[list[str], bytes, list[tuple[int, bytes]]]) -> None:
    codes, salt, rows = issued
    digests = [d for _, d in rows]
    assert all(len(d) == FAST.digest_bytes == 32 for d in digests)
    assert len(set(digests)) == 16
    first = normalize(codes[0])
    assert first is not None
    # Deterministic for a salt, different for another salt or other parameters.
    assert digest(first, salt, FAST) == digest(first, salt, FAST)
    assert digest(first, os.urandom(16), FAST) != digest(first, salt, FAST)
    assert digest(first, salt, HashParameters(memory_cost_kib=2048, time_cost=1)) != digest(first, salt, FAST)
    # The stored value is not the code.
    assert first.encode() not in digest(first, salt, FAST)


def test_digest_is_raw_argon2id_with_the_given_parameters() -> None:
    salt = b"nidan-test-salt!"
    raw = digest(CANONICAL, salt, FAST)
    # The encoded form names the variant and cost, so a wrong type or parameter mapping shows up here.
    encoded = hash_secret(
        CANONICAL.encode(), salt, time_cost=1, memory_cost=1024, parallelism=1, hash_len=32, type=Type.ID
    )
    prefix, _, b64_hash = encoded.decode().rpartition("$")
    assert prefix.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert raw == base64.b64decode(b64_hash + "=" * (-len(b64_hash) % 4))
    # Regression value (argon2-cffi 23+, libargon2 20190702).
    assert raw.hex() == "f6a640e734c2867fad17b3e18c9ba30ec6a2a60bc3f381b9fd04626b89ce19e4"


@pytest.mark.parametrize("position", [0, 7, 15])
def test_find_position_finds_the_typed_code(
    issued: tuple[list[str], bytes, list[tuple[int, bytes]]], position: int
) -> None:
    codes, salt, rows = issued
    for typed in (codes[position], codes[position].upper(), codes[position].replace("-", "")):
        normalized = normalize(typed)
        assert normalized is not None
        assert find_position(digest(normalized, salt, FAST), rows) == position


def test_find_position_with_lookalikes(issued: tuple[list[str], bytes, list[tuple[int, bytes]]]) -> None:
    codes, salt, rows = issued
    typed = codes[3].upper().replace("0", "O").replace("1", "l")
    normalized = normalize(typed)
    assert normalized is not None
    assert find_position(digest(normalized, salt, FAST), rows) == 3


def test_find_position_refuses_a_wrong_code(issued: tuple[list[str], bytes, list[tuple[int, bytes]]]) -> None:
    codes, salt, rows = issued
    wrong = next(c for c in generate_codes(os.urandom, count=32) if c not in codes)
    normalized = normalize(wrong)
    assert normalized is not None
    assert find_position(digest(normalized, salt, FAST), rows) is None


def test_find_position_needs_the_right_salt(issued: tuple[list[str], bytes, list[tuple[int, bytes]]]) -> None:
    codes, _, rows = issued
    normalized = normalize(codes[5])
    assert normalized is not None
    assert find_position(digest(normalized, os.urandom(16), FAST), rows) is None


def test_find_position_on_an_empty_set() -> None:
    assert find_position(bytes(32), []) is None


def test_find_position_ignores_spent_positions(
    issued: tuple[list[str], bytes, list[tuple[int, bytes]]],
) -> None:
    codes, salt, rows = issued
    remaining = [(p, d) for p, d in rows if p != 9]
    normalized = normalize(codes[9])
    assert normalized is not None
    assert find_position(digest(normalized, salt, FAST), remaining) is None


def test_find_position_returns_the_first_of_equal_digests() -> None:
    stored = [(4, bytes(32)), (2, bytes(32)), (9, bytes([1]) * 32)]
    assert find_position(bytes(32), stored) == 4


def test_find_position_compares_every_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = [(position, bytes([position]) * 32) for position in range(16)]
    calls: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the module core looks it up on
    assert find_position(bytes([0]) * 32, stored) == 0
    assert len(calls) == 16
