"""``/auth/basic?scope=``: the HTTP Basic gate reverse proxies ask before letting a Git-style client through.

A token with the scope passes (200 + ``X-Nidan-User``); a password only for a user without 2FA who is not required
to have it, while the instance allows it; every other answer is GitLab's 401 message; failures count towards the
password backoff (403 + ``Retry-After`` while blocked) and are audited with the reason, never with the secret.
"""

from __future__ import annotations

import base64
from datetime import date, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.config import RateLimitSettings, Settings
from nidan.core.access_tokens import TokenKind
from nidan.core.audit import AuditEvent, EventType
from nidan.core.models import ClientInfo, InstanceRole, Method, User
from nidan.core.policy import TwoFactorPolicy
from nidan.errors import BASIC_AUTH_DENIED_MESSAGE
from nidan.services import applications, audit, enrollment, organisations, throttling, tokens
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, basic_header, code_at, make_user
from tests.web.tokens_support import assert_not_stored

GATE = "/auth/basic"
DENIED_BODY = BASIC_AUTH_DENIED_MESSAGE + "\n"
CLIENT = ClientInfo()


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def gate(
    client: TestClient,
    headers: dict[str, str] | None,
    scope: str | None = "read_repository",
    method: str = "GET",
) -> httpx.Response:
    params = {"scope": scope} if scope is not None else {}
    response: httpx.Response = client.request(method, GATE, params=params, headers=headers or {})
    return response


def new_token(
    ctx: ServiceContext,
    user: User,
    scopes: list[str] | None = None,
    kind: TokenKind = TokenKind.PERSONAL,
    expires_on: date | None = None,
) -> tuple[int, str]:
    made = tokens.create(
        ctx,
        user,
        kind=kind,
        name="ci",
        scopes=scopes if scopes is not None else ["read_repository"],
        expires_on=expires_on,
        client=CLIENT,
    )
    return made.token.id, made.secret


def with_totp(ctx: ServiceContext, user: User) -> str:
    started = enrollment.start_totp(ctx, user)
    enrollment.activate_totp(ctx, user, code_at(started.secret, ctx), client=CLIENT)
    return started.secret


def set_policy(ctx: ServiceContext, policy: TwoFactorPolicy) -> None:
    changed = organisations.set_policy(
        ctx,
        "default",
        two_factor=policy,
        grace_period_days=0,
        allowed_methods=list(Method),
        tolerated_failures=None,
        actor=None,
        client=CLIENT,
    )
    assert changed.policy.two_factor is policy


def refusals(ctx: ServiceContext) -> list[AuditEvent]:
    """The gate's refusals in the security log, oldest first."""
    return [r.event for r in reversed(audit.all_events(ctx, event_type=EventType.BASIC_AUTH_FAILED))]


def assert_denied(response: httpx.Response) -> None:
    """GitLab's answer, exactly: what Git prints after ``remote:``."""
    assert response.status_code == 401, response.text
    assert response.text == DENIED_BODY
    assert response.headers["www-authenticate"] == 'Basic realm="nidan"'
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-nidan-error"] == "basic_auth_denied"
    assert "x-nidan-user" not in response.headers


def assert_admitted(response: httpx.Response, username: str, via: str) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["x-nidan-user"] == username
    assert response.headers["x-nidan-auth"] == via
    assert response.headers["cache-control"] == "no-store"
    assert "www-authenticate" not in response.headers


def raw_basic(decoded: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(decoded).decode("ascii")}


# --- tokens ------------------------------------------------------------------------------------------------------


def test_a_token_with_the_scope_passes_and_names_its_owner(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx, "alice")
    make_user(ctx, "bob")
    _, secret = new_token(ctx, alice, ["read_repository", "write_repository"])
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")
    assert_admitted(gate(client, basic_header("alice", secret), "write_repository"), "alice", "token")
    # The username typed beside a token is not checked (as GitLab and GitHub do): the token names its owner.
    for typed in ("oauth2", "bob", "", "x-access-token", "not a valid username!"):
        assert_admitted(gate(client, basic_header(typed, secret)), "alice", "token")
    assert refusals(ctx) == []


def test_an_app_password_opens_every_scope(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, secret = new_token(ctx, make_user(ctx), kind=TokenKind.APP_PASSWORD)
    for scope in ("read_repository", "write_repository", "read_registry", "write_registry", "api"):
        assert_admitted(gate(client, basic_header("alice", secret), scope), "alice", "token")


def test_a_token_without_the_scope_gets_gitlabs_refusal(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    token_id, secret = new_token(ctx, alice, ["read_repository"])
    response = gate(client, basic_header("alice", secret), "write_repository")
    assert_denied(response)
    (event,) = refusals(ctx)
    assert event.subject_username == "alice" and event.actor_username is None
    assert dict(event.details) == {
        "via": "token",
        "reason": "scope_missing",
        "scope": "write_repository",
        "token_id": token_id,
    }


def test_an_expired_token_is_refused_from_midnight_utc(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    tomorrow = ctx.clock.now().date() + timedelta(days=1)
    token_id, secret = new_token(ctx, make_user(ctx), expires_on=tomorrow)
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=ctx.clock.now().tzinfo)
    ctx.clock.set(midnight - timedelta(seconds=1))  # type: ignore[attr-defined]
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")
    ctx.clock.set(midnight)  # type: ignore[attr-defined]
    assert_denied(gate(client, basic_header("alice", secret)))
    (event,) = refusals(ctx)
    assert event.details["reason"] == "token_expired" and event.details["token_id"] == token_id


def test_a_revoked_token_is_refused(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    token_id, secret = new_token(ctx, alice)
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")
    tokens.revoke(ctx, alice, token_id, client=CLIENT)
    assert_denied(gate(client, basic_header("alice", secret)))
    (event,) = refusals(ctx)
    assert event.details["reason"] == "token_revoked" and event.details["token_id"] == token_id
    assert event.subject_username == "alice"


def test_tokens_revoked_by_an_admin_are_refused(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    _, pat = new_token(ctx, alice)
    _, app_password = new_token(ctx, alice, kind=TokenKind.APP_PASSWORD)
    tokens.revoke_all(ctx, username="alice", actor=None, client=CLIENT, reason="lost laptop")
    assert_denied(gate(client, basic_header("alice", pat)))
    advance(ctx, 60)
    assert_denied(gate(client, basic_header("alice", app_password)))
    assert [e.details["reason"] for e in refusals(ctx)] == ["token_revoked", "token_revoked"]


def test_an_unknown_token_is_refused_without_naming_anyone(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    forged = "nidan_pat_" + "A" * 43
    assert_denied(gate(client, basic_header("alice", forged)))
    (event,) = refusals(ctx)
    assert event.subject_username is None
    assert dict(event.details) == {
        "via": "token",
        "reason": "token_unknown",
        "scope": "read_repository",
        "username_known": False,
    }


def test_other_secrets_are_taken_as_a_wrong_password(client: TestClient, runtime: Runtime) -> None:
    """A verify API key, a session token or a cut-off token is no access token: checked (and refused) as a password."""
    ctx = runtime.services
    alice = make_user(ctx)
    _, pat = new_token(ctx, alice)
    others = [
        applications.add(ctx, name="wiki", actor=None, client=CLIENT).api_key,
        client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).json()["session_token"],
        pat[:-1],
    ]
    for secret in others:
        assert_denied(gate(client, basic_header("alice", secret)))
        advance(ctx, 3600)  # out of the backoff's way
    assert [(e.details["via"], e.details["reason"]) for e in refusals(ctx)] == [("password", "password_incorrect")] * 3


# --- passwords -----------------------------------------------------------------------------------------------------


def test_a_user_without_2fa_may_use_the_password(client: TestClient, runtime: Runtime) -> None:
    make_user(runtime.services)
    assert_admitted(gate(client, basic_header("alice", PASSWORD)), "alice", "password")
    # The username is case-insensitive; the header names the canonical one.
    assert_admitted(gate(client, basic_header("ALICE", PASSWORD), "write_repository"), "alice", "password")


def test_a_wrong_password_or_an_unknown_user_is_refused(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    assert_denied(gate(client, basic_header("alice", "not the password")))
    assert_denied(gate(client, basic_header("nobody", PASSWORD)))
    wrong, unknown = refusals(ctx)
    assert wrong.subject_username == "alice"
    assert dict(wrong.details) == {"via": "password", "reason": "password_incorrect", "scope": "read_repository"}
    assert unknown.subject_username is None
    assert unknown.details["reason"] == "password_incorrect" and unknown.details["username_known"] is False


def test_a_2fa_users_correct_password_opens_nothing(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    with_totp(ctx, alice)
    assert_denied(gate(client, basic_header("alice", PASSWORD)))
    (event,) = refusals(ctx)
    assert event.details["reason"] == "two_factor_enabled" and event.subject_username == "alice"
    # Their token still works.
    _, secret = new_token(ctx, alice)
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")


def test_a_user_required_to_have_2fa_cannot_use_the_password(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    set_policy(ctx, TwoFactorPolicy.REQUIRED_FOR_ALL)
    assert_denied(gate(client, basic_header("alice", PASSWORD)))
    (event,) = refusals(ctx)
    assert event.details["reason"] == "two_factor_required"


def test_required_for_admins_applies_to_owners_not_to_members(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx, "alice")
    make_user(ctx, "root", role=InstanceRole.ADMIN)  # an owner of the default organisation
    set_policy(ctx, TwoFactorPolicy.REQUIRED_FOR_ADMINS)
    assert_admitted(gate(client, basic_header("alice", PASSWORD)), "alice", "password")
    assert_denied(gate(client, basic_header("root", PASSWORD)))
    (event,) = refusals(ctx)
    assert event.subject_username == "root" and event.details["reason"] == "two_factor_required"
    # Back to optional: the owner's password passes again.
    set_policy(ctx, TwoFactorPolicy.OPTIONAL)
    assert_admitted(gate(client, basic_header("root", PASSWORD)), "root", "password")


class TestPasswordsOff:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        security = settings.security.model_copy(update={"password_authentication_for_git": False})
        return settings.model_copy(update={"security": security})

    def test_only_tokens_pass(self, client: TestClient, runtime: Runtime) -> None:
        ctx = runtime.services
        alice = make_user(ctx)
        assert_denied(gate(client, basic_header("alice", PASSWORD)))
        (event,) = refusals(ctx)
        assert event.details["reason"] == "password_disabled"
        _, secret = new_token(ctx, alice)
        assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")


# --- the request ---------------------------------------------------------------------------------------------------


MALFORMED: dict[str, dict[str, str] | None] = {
    "no header": None,
    "empty": {"Authorization": ""},
    "scheme only": {"Authorization": "Basic"},
    "not base64": {"Authorization": "Basic !!!not-base64!!!"},
    "bad padding": {"Authorization": "Basic YWxpY2U"},
    "no colon": raw_basic(b"alice"),
    "empty secret": raw_basic(b"alice:"),
    "not UTF-8": raw_basic(b"alice:\xff\xfe"),
    "bearer": {"Authorization": "Bearer " + "nidan_pat_" + "A" * 43},
    "digest": {"Authorization": 'Digest username="alice"'},
    "too long": {"Authorization": "Basic " + "A" * 5000},
}


def test_missing_or_malformed_credentials_are_refused_and_not_counted(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    for what, headers in MALFORMED.items():
        for _ in range(2):
            response = gate(client, headers)
            assert response.status_code == 401, what
            assert_denied(response)
    # Nothing was evaluated, so nothing was counted or logged: the password still passes at once.
    assert refusals(ctx) == []
    assert_admitted(gate(client, basic_header("alice", PASSWORD)), "alice", "password")


def test_the_scheme_is_case_insensitive(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, secret = new_token(ctx, make_user(ctx))
    encoded = base64.b64encode(f"alice:{secret}".encode()).decode()
    for scheme in ("basic", "BASIC", "Basic"):
        assert_admitted(gate(client, {"Authorization": f"{scheme} {encoded}"}), "alice", "token")


def test_a_password_with_a_colon_and_non_ascii_characters(client: TestClient, runtime: Runtime) -> None:
    password = "pass:wörd with 二段"
    make_user(runtime.services, password=password)
    assert_admitted(gate(client, basic_header("alice", password)), "alice", "password")


def test_a_missing_or_unknown_scope_is_a_proxy_configuration_error(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, secret = new_token(ctx, make_user(ctx))
    for params in ({}, {"scope": "admin"}, {"scope": ""}, {"scope": "READ_REPOSITORY"}):
        response = client.get(GATE, params=params, headers=basic_header("alice", secret))
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "invalid_request"
        assert "scope" in response.text
    assert refusals(ctx) == []


def test_head_and_post_are_answered_like_get(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, secret = new_token(ctx, make_user(ctx))
    for method in ("HEAD", "POST"):
        assert_admitted(gate(client, basic_header("alice", secret), method=method), "alice", "token")
        refused = gate(client, basic_header("alice", secret), "api", method=method)
        assert refused.status_code == 401, method
        assert refused.headers["www-authenticate"] == 'Basic realm="nidan"'
        assert refused.text == ("" if method == "HEAD" else DENIED_BODY)


def test_the_denied_and_blocked_pages_for_proxies(client: TestClient, runtime: Runtime) -> None:
    for method in ("GET", "HEAD", "POST"):
        response = client.request(method, f"{GATE}/denied")
        assert response.status_code == 401, method
        assert response.headers["www-authenticate"] == 'Basic realm="nidan"'
        assert response.headers["content-type"].startswith("text/plain")
        assert response.text == ("" if method == "HEAD" else DENIED_BODY)

        blocked = client.request(method, f"{GATE}/blocked")
        assert_blocked(blocked, 1)
        if method != "HEAD":
            assert blocked.text.endswith("\n") and "x-nidan-user" not in blocked.headers
    # The page says what the gate said: the same words and wait.
    make_user(runtime.services)
    wrong = basic_header("alice", "not the password")
    gate(client, wrong)
    gate(client, wrong)
    from_gate = gate(client, wrong)
    assert_blocked(from_gate, 1)
    assert client.get(f"{GATE}/blocked", params={"retry_after": 1}).text == from_gate.text
    assert_blocked(client.get(f"{GATE}/blocked", params={"retry_after": 3600}), 3600)
    for bad in ("0", "-5", "86401", "soon"):
        assert client.get(f"{GATE}/blocked", params={"retry_after": bad}).status_code == 422, bad


# --- backoff -------------------------------------------------------------------------------------------------------


def assert_blocked(response: httpx.Response, seconds: int) -> None:
    """403, not 429: proxies turn anything but 2xx, 401 and 403 into a 500."""
    assert response.status_code == 403, response.text
    assert response.headers["retry-after"] == str(seconds)
    assert response.headers["x-nidan-error"] == "rate_limited"
    assert response.headers["content-type"].startswith("text/plain")
    assert "x-nidan-user" not in response.headers


def password_failures(ctx: ServiceContext, username: str = "alice") -> int:
    """The gate's failure count for the username (all addresses)."""
    return sum(state.failures for _, state in throttling.status(ctx, username).gate)


def test_repeated_failures_block_and_a_correct_password_resets(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    wrong = basic_header("alice", "not the password")
    assert_denied(gate(client, wrong))
    assert_denied(gate(client, wrong))  # the second failure in a row: blocked for 1 s from now
    assert_blocked(gate(client, wrong), 1)
    # While blocked even the right password is not evaluated...
    assert_blocked(gate(client, basic_header("alice", PASSWORD)), 1)
    # ...but a valid token is never slowed down (parallel CI jobs behind one address), and resets nothing.
    _, secret = new_token(ctx, alice)
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")
    assert password_failures(ctx) == 2
    assert_blocked(gate(client, basic_header("alice", PASSWORD)), 1)
    # Only the evaluated failures are in the log; the refusals while blocked are not.
    assert [e.details["reason"] for e in refusals(ctx)] == ["password_incorrect", "password_incorrect"]
    blocked = audit.all_events(ctx, event_type=EventType.BACKOFF_BLOCKED)
    assert len(blocked) == 1 and blocked[0].event.subject_username == "alice"

    advance(ctx, 1)
    assert_admitted(gate(client, basic_header("alice", PASSWORD)), "alice", "password")
    assert password_failures(ctx) == 0
    # Reset: one failure is tolerated again before the next block.
    assert_denied(gate(client, wrong))
    assert_denied(gate(client, wrong))
    assert_blocked(gate(client, wrong), 1)


def test_a_git_client_retrying_a_stale_password_never_blocks_web_sign_in(client: TestClient, runtime: Runtime) -> None:
    """The gate's counters are its own: an IDE fetching with an old stored password (or a 2FA user's password)
    blocks only further gate attempts, while its owner still signs in on the web from the same address."""
    ctx = runtime.services
    with_totp(ctx, make_user(ctx, "bob"))
    for _ in range(2):
        assert_denied(gate(client, basic_header("bob", PASSWORD)))  # right, but bob has 2FA: refused and counted
    assert_blocked(gate(client, basic_header("bob", PASSWORD)), 1)
    signed_in = client.post("/api/v1/auth/login", json={"username": "bob", "password": PASSWORD})
    assert signed_in.status_code == 200 and signed_in.json()["status"] == "mfa_required", signed_in.text
    assert sum(state.failures for _, state in throttling.status(ctx, "bob").passwords) == 0
    # An administrator's unblock clears the gate's counters too.
    throttling.clear(ctx, username="bob", actor=None, client=CLIENT, reason="stale password in the IDE")
    assert password_failures(ctx, "bob") == 0


def test_wrong_tokens_count_towards_the_same_backoff(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    token_id, secret = new_token(ctx, alice)
    tokens.revoke(ctx, alice, token_id, client=CLIENT)
    forged = basic_header("alice", "nidan_pat_" + "B" * 43)
    assert_denied(gate(client, forged))
    assert_denied(gate(client, basic_header("alice", secret)))
    assert_blocked(gate(client, forged), 1)
    assert_blocked(gate(client, basic_header("alice", PASSWORD)), 1)
    assert [e.details["reason"] for e in refusals(ctx)] == ["token_unknown", "token_revoked"]


def test_a_token_typed_beside_a_username_does_not_reset_that_users_counter(
    client: TestClient, runtime: Runtime
) -> None:
    """Else anyone with a token could wipe any username's password counter and guess passwords without end."""
    ctx = runtime.services
    make_user(ctx, "victim")
    _, mallorys = new_token(ctx, make_user(ctx, "mallory"))
    assert_denied(gate(client, basic_header("victim", "guess 1")))
    assert_admitted(gate(client, basic_header("victim", mallorys)), "mallory", "token")
    assert_denied(gate(client, basic_header("victim", "guess 2")))
    assert_blocked(gate(client, basic_header("victim", "guess 3")), 1)
    assert password_failures(ctx, "victim") == 2


class TestManyFailuresTolerated:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"rate_limit": RateLimitSettings(tolerated_failures=50)})

    def test_refusals_never_log_the_secret(self, client: TestClient, runtime: Runtime) -> None:
        ctx = runtime.services
        alice = make_user(ctx)
        with_totp(ctx, make_user(ctx, "bob"))
        token_id, pat = new_token(ctx, alice, ["read_repository"])
        revoked_id, revoked = new_token(ctx, alice)
        tokens.revoke(ctx, alice, revoked_id, client=CLIENT)
        forged = "nidan_app_" + "C" * 43
        wrong_password = "hunter2 is not it"
        attempts: list[tuple[str, str, str]] = [
            ("alice", pat, "api"),
            ("alice", revoked, "read_repository"),
            ("alice", forged, "read_repository"),
            ("alice", wrong_password, "read_repository"),
            ("bob", PASSWORD, "read_repository"),
            ("nobody", wrong_password, "read_repository"),
        ]
        for username, secret, scope in attempts:
            assert_denied(gate(client, basic_header(username, secret), scope))
        events = refusals(ctx)
        assert [e.details["reason"] for e in events] == [
            "scope_missing",
            "token_revoked",
            "token_unknown",
            "password_incorrect",
            "two_factor_enabled",
            "password_incorrect",
        ]
        assert events[0].details["token_id"] == token_id
        assert all(e.client_ip == "testclient" and e.correlation_id for e in events)
        for event in events:
            text = repr(event)
            for _, secret, _ in attempts:
                assert secret not in text
        assert_not_stored(runtime.engine, pat, revoked, forged, wrong_password)


# --- last used -----------------------------------------------------------------------------------------------------


def last_used(ctx: ServiceContext, user: User, token_id: int) -> datetime | None:
    (found,) = [t for t in tokens.list_tokens(ctx, user) if t.id == token_id]
    return found.last_used_at


def test_last_used_is_written_at_most_once_a_minute(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    alice = make_user(ctx)
    token_id, secret = new_token(ctx, alice)
    assert last_used(ctx, alice, token_id) is None
    first = ctx.clock.now()
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")
    assert last_used(ctx, alice, token_id) == first
    advance(ctx, 59)
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")
    assert last_used(ctx, alice, token_id) == first
    advance(ctx, 2)
    assert_admitted(gate(client, basic_header("alice", secret)), "alice", "token")
    assert last_used(ctx, alice, token_id) == ctx.clock.now()
    # A refusal is not a use.
    advance(ctx, 120)
    assert gate(client, basic_header("alice", secret), "api").status_code == 401
    assert last_used(ctx, alice, token_id) == first + timedelta(seconds=61)
