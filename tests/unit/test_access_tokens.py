"""Access tokens as pure decisions: their shape, scopes, names and lifetimes, and the organisation 2FA policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from nidan.core.access_tokens import (
    APP_KEY_PREFIX,
    MAX_LIVE_TOKENS,
    NAME_MAX_LENGTH,
    NON_ADMIN_SCOPES,
    PREFIXES,
    AccessToken,
    Scope,
    TokenKind,
    clean_name,
    decode_scopes,
    encode_scopes,
    expiry,
    kind_of,
    parse_scopes,
)
from nidan.core.models import OrgRole
from nidan.core.policy import TwoFactorPolicy, requires_two_factor, two_factor_required
from nidan.core.tokens import new_token
from nidan.errors import InvalidInput

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
TODAY = NOW.date()
BODY = "A" * 43


def fixed_bytes(count: int) -> bytes:
    return bytes(range(count))


# --- shapes -----------------------------------------------------------------------------------------------------


def test_the_prefixes_are_distinct_and_recognisable() -> None:
    assert PREFIXES == {TokenKind.PERSONAL: "nidan_pat_", TokenKind.APP_PASSWORD: "nidan_app_"}
    assert APP_KEY_PREFIX == "nidan_key_"
    assert MAX_LIVE_TOKENS == 100


@pytest.mark.parametrize("kind", list(TokenKind))
def test_a_new_token_of_each_kind_is_recognised_as_that_kind(kind: TokenKind) -> None:
    secret = new_token(fixed_bytes, prefix=PREFIXES[kind])
    assert len(secret) == len(PREFIXES[kind]) + 43
    assert kind_of(secret) is kind


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("", id="empty"),
        pytest.param("correct horse battery", id="a-password"),
        pytest.param("nidan_pat_", id="prefix-only"),
        pytest.param("nidan_pat_" + BODY[:-1], id="one-short"),
        pytest.param("nidan_pat_" + BODY + "A", id="one-long"),
        pytest.param("nidan_pat_" + BODY[:-1] + "=", id="padding"),
        pytest.param("nidan_pat_" + BODY[:-1] + "+", id="not-url-safe"),
        pytest.param("nidan_pat_" + BODY[:-1] + "é", id="non-ascii"),
        pytest.param("NIDAN_PAT_" + BODY, id="prefix-case"),
        pytest.param(" nidan_pat_" + BODY, id="leading-space"),
        pytest.param(APP_KEY_PREFIX + BODY, id="an-app-key-is-no-access-token"),
        pytest.param("nidan_s_" + BODY, id="a-session-token"),
    ],
)
def test_anything_else_is_not_a_token(secret: str) -> None:
    assert kind_of(secret) is None


# --- scopes -----------------------------------------------------------------------------------------------------


def test_the_scopes() -> None:
    assert [s.value for s in Scope] == [
        "read_repository",
        "write_repository",
        "read_registry",
        "write_registry",
        "api",
    ]
    # An app password carries every scope, for clients that cannot be told one.
    assert set(NON_ADMIN_SCOPES) == set(Scope)


def test_scopes_come_back_in_canonical_order_without_duplicates() -> None:
    assert parse_scopes(["api", "read_repository", "api"]) == (Scope.READ_REPOSITORY, Scope.API)
    assert parse_scopes(iter(["write_registry"])) == (Scope.WRITE_REGISTRY,)


@pytest.mark.parametrize("bad", ["admin", "sudo", "API", " api", "read-repository", ""])
def test_an_unknown_scope_is_refused_naming_the_known_ones(bad: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_scopes(["read_repository", bad])
    assert repr(bad) in refused.value.message
    assert all(s.value in refused.value.message for s in Scope)


def test_no_scope_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least one scope"):
        parse_scopes([])


def test_scopes_are_stored_as_words_and_unknown_stored_ones_grant_nothing() -> None:
    scopes = (Scope.READ_REPOSITORY, Scope.API)
    assert encode_scopes(scopes) == "read_repository api"
    assert decode_scopes(encode_scopes(scopes)) == scopes
    # Written by a newer version: ignored here, never an error and never a grant.
    assert decode_scopes("read_repository admin_mode  api") == scopes
    assert decode_scopes("") == ()


def token(**changes: object) -> AccessToken:
    values: dict[str, object] = {
        "id": 1,
        "user_id": 1,
        "kind": TokenKind.PERSONAL,
        "name": "laptop",
        "scopes": (Scope.READ_REPOSITORY,),
        "created_at": NOW,
        "expires_at": NOW + timedelta(days=1),
        "last_used_at": None,
        "revoked_at": None,
    }
    values.update(changes)
    return AccessToken(**values)  # type: ignore[arg-type]


def test_a_token_grants_only_its_scopes() -> None:
    read_only = token()
    assert read_only.grants(Scope.READ_REPOSITORY)
    assert not read_only.grants(Scope.WRITE_REPOSITORY)
    assert not read_only.grants(Scope.API)


def test_a_token_is_expired_from_its_expiry_on() -> None:
    expires = NOW + timedelta(days=1)
    assert not token(expires_at=expires).expired(expires - timedelta(microseconds=1))
    assert token(expires_at=expires).expired(expires)
    assert token(expires_at=expires).expired(expires + timedelta(days=400))
    assert not token(expires_at=None).expired(NOW + timedelta(days=100 * 365))


# --- names ------------------------------------------------------------------------------------------------------


def test_a_name_is_trimmed_and_its_spaces_collapsed() -> None:
    assert clean_name("  laptop \t git\n") == "laptop git"
    assert clean_name("x" * NAME_MAX_LENGTH) == "x" * NAME_MAX_LENGTH


@pytest.mark.parametrize("blank", ["", " ", "\t\n  "])
def test_a_blank_name_is_refused(blank: str) -> None:
    with pytest.raises(InvalidInput, match="name"):
        clean_name(blank)


def test_a_long_name_is_refused() -> None:
    with pytest.raises(InvalidInput, match=str(NAME_MAX_LENGTH)):
        clean_name("x" * (NAME_MAX_LENGTH + 1))


# --- lifetimes --------------------------------------------------------------------------------------------------


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_without_a_date_a_token_expires_at_the_cap() -> None:
    assert expiry(None, NOW, 365) == midnight(TODAY + timedelta(days=365))
    assert expiry(None, NOW, 1) == midnight(TODAY + timedelta(days=1))


def test_without_a_cap_and_without_a_date_a_token_never_expires() -> None:
    assert expiry(None, NOW, 0) is None


def test_a_date_expires_at_midnight_utc_that_day() -> None:
    tomorrow = TODAY + timedelta(days=1)
    assert expiry(tomorrow, NOW, 365) == midnight(tomorrow)
    # The last day the cap allows is allowed.
    assert expiry(TODAY + timedelta(days=365), NOW, 365) == midnight(TODAY + timedelta(days=365))
    # Without a cap any future date is.
    far = TODAY + timedelta(days=50 * 365)
    assert expiry(far, NOW, 0) == midnight(far)


def test_a_date_beyond_the_cap_is_refused_naming_the_limit_and_the_last_day() -> None:
    latest = TODAY + timedelta(days=30)
    with pytest.raises(InvalidInput) as refused:
        expiry(latest + timedelta(days=1), NOW, 30)
    assert "30 days" in refused.value.message
    assert latest.isoformat() in refused.value.message


@pytest.mark.parametrize("days_ago", [0, 1, 365])
@pytest.mark.parametrize("cap", [0, 365])
def test_today_or_a_past_date_is_refused(days_ago: int, cap: int) -> None:
    with pytest.raises(InvalidInput, match="future"):
        expiry(TODAY - timedelta(days=days_ago), NOW, cap)


def test_the_day_is_counted_in_utc_whatever_the_zone_of_now() -> None:
    # 23:30 UTC on the 14th is already the 15th in Tokyo: "today" is still the 14th.
    late = datetime(2026, 3, 14, 23, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=9)))
    assert expiry(date(2026, 3, 15), late, 365) == datetime(2026, 3, 15, tzinfo=UTC)
    assert expiry(None, late, 1) == datetime(2026, 3, 15, tzinfo=UTC)


# --- who must have 2FA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "required_of"),
    [
        (TwoFactorPolicy.OPTIONAL, set()),
        (TwoFactorPolicy.REQUIRED_FOR_ADMINS, {OrgRole.OWNER, OrgRole.ADMIN, OrgRole.USER_ADMIN}),
        (TwoFactorPolicy.REQUIRED_FOR_ALL, set(OrgRole)),
    ],
)
def test_a_policy_applies_to_roles(policy: TwoFactorPolicy, required_of: set[OrgRole]) -> None:
    assert {role for role in OrgRole if requires_two_factor(policy, role)} == required_of


def test_the_strictest_membership_wins() -> None:
    assert not two_factor_required([])
    assert not two_factor_required([(TwoFactorPolicy.OPTIONAL, OrgRole.OWNER)])
    assert not two_factor_required(
        [(TwoFactorPolicy.OPTIONAL, OrgRole.OWNER), (TwoFactorPolicy.REQUIRED_FOR_ADMINS, OrgRole.MEMBER)]
    )
    assert two_factor_required(
        [(TwoFactorPolicy.OPTIONAL, OrgRole.MEMBER), (TwoFactorPolicy.REQUIRED_FOR_ADMINS, OrgRole.USER_ADMIN)]
    )
    assert two_factor_required(iter([(TwoFactorPolicy.REQUIRED_FOR_ALL, OrgRole.MEMBER)]))
