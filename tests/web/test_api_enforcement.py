"""Enforced two-step verification through the REST API: what sign-in answers under each policy and user state, the
enrolment-only setup_token (what it opens, what it does not, when it ends), several organisations, and turning 2FA
off while required. On every configured database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core import totp
from nidan.core.models import InstanceRole, Method, OrgRole, User
from nidan.core.policy import TwoFactorPolicy
from nidan.services import user_admin
from nidan.services.context import ServiceContext
from nidan.web.app import create_app
from tests.conftest import BACKENDS, PostgresDatabases
from tests.helpers import PASSWORD, auth_header, code_at, enable_totp, login
from tests.integration.enforcement_support import CLIENT, advance, join, new_org, new_user, set_policy, shared_runtime

OPTIONAL = TwoFactorPolicy.OPTIONAL
ADMINS = TwoFactorPolicy.REQUIRED_FOR_ADMINS
ALL = TwoFactorPolicy.REQUIRED_FOR_ALL
DAY = timedelta(days=1)
ME = "/api/v1/me"


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    postgres: PostgresDatabases | None,
) -> Iterator[Runtime]:
    yield from shared_runtime(request.param, tmp_path_factory, sqlite_template, postgres)


@pytest.fixture(scope="module")
def api(shared: Runtime) -> Iterator[TestClient]:
    """One app per module and back end; every test makes its own users and organisations."""
    with TestClient(create_app(runtime=shared), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def ctx(shared: Runtime) -> ServiceContext:
    return shared.services


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def sign_in(api: TestClient, user: User) -> dict[str, Any]:
    return login(api, user.username)


def mfa(api: TestClient, mfa_token: str, code: str, method: str = "totp") -> Any:
    return api.post("/api/v1/auth/mfa", json={"mfa_token": mfa_token, "method": method, "code": code})


def sign_in_fully(api: TestClient, ctx: ServiceContext, user: User, secret: str | None) -> dict[str, Any]:
    """Password, then the current TOTP code when asked; the clock moves a step on afterwards."""
    body = sign_in(api, user)
    if body["status"] != "mfa_required":
        return body
    assert secret is not None
    answered = mfa(api, body["mfa_token"], code_at(secret, ctx))
    assert answered.status_code == 200, answered.text
    advance(ctx, totp.PERIOD)
    result: dict[str, Any] = answered.json()
    return result


def with_totp(api: TestClient, ctx: ServiceContext, user: User) -> tuple[str, list[str]]:
    """2FA on through the API (a password-only sign-in first)."""
    body = sign_in(api, user)
    assert body["status"] == "authenticated", body
    return enable_totp(api, ctx, body["session_token"])


def setup_token_for(api: TestClient, ctx: ServiceContext, *, admin: bool = False) -> tuple[User, str]:
    """A user whose sign-in answers mfa_setup_required: by policy, or (``admin``) an instance administrator whose
    2FA an administrator reset."""
    user = new_user(ctx, "iadmin" if admin else "u", role=InstanceRole.ADMIN if admin else InstanceRole.MEMBER)
    if admin:
        user_admin.reset_two_factor(ctx, username=user.username, actor=None, client=CLIENT, reason="lost phone")
    else:
        join(ctx, new_org(ctx, ALL), user)
    body = sign_in(api, user)
    assert body["status"] == "mfa_setup_required", body
    token: str = body["setup_token"]
    return user, token


def set_up_with(api: TestClient, ctx: ServiceContext, setup_token: str) -> tuple[str, dict[str, Any]]:
    """POST /me/totp and /me/totp/activate with the setup_token; returns the secret and the activation's body."""
    started = api.post(f"{ME}/totp", headers=auth_header(setup_token))
    assert started.status_code == 200, started.text
    secret: str = started.json()["secret"]
    activated = api.post(f"{ME}/totp/activate", json={"code": code_at(secret, ctx)}, headers=auth_header(setup_token))
    assert activated.status_code == 200, activated.text
    advance(ctx, 2 * totp.PERIOD)
    body: dict[str, Any] = activated.json()
    return secret, body


# --- the table, as an API client sees it ---------------------------------------------------------------------------

NEVER_HAD, ON, ONCE_HAD, IN_GRACE, GRACE_OVER, ASKED = (
    "no_2fa",
    "2fa_on",
    "once_had_2fa",
    "in_grace",
    "grace_over",
    "asked_to_register",
)
POLICIES = {
    "optional": (OPTIONAL, OrgRole.MEMBER, 0),
    "required_for_all": (ALL, OrgRole.MEMBER, 0),
    "required_for_all-grace-7d": (ALL, OrgRole.MEMBER, 7),
    "required_for_admins-as-owner": (ADMINS, OrgRole.OWNER, 0),
    "required_for_admins-as-member": (ADMINS, OrgRole.MEMBER, 0),
}
# Written out: each policy, each state -> the answers, in order.
TABLE: dict[str, dict[str, str]] = {
    "optional": {
        NEVER_HAD: "authenticated",
        ON: "mfa_required>authenticated",
        ONCE_HAD: "authenticated",
        IN_GRACE: "authenticated",
        GRACE_OVER: "authenticated",
        ASKED: "mfa_required>mfa_setup_required:administrator",
    },
    "required_for_all": {
        NEVER_HAD: "mfa_setup_required:policy",
        ON: "mfa_required>authenticated",
        ONCE_HAD: "mfa_setup_required:policy",
        IN_GRACE: "mfa_setup_required:policy",
        GRACE_OVER: "mfa_setup_required:policy",
        ASKED: "mfa_required>mfa_setup_required:administrator",
    },
    "required_for_all-grace-7d": {
        NEVER_HAD: "authenticated+due",
        ON: "mfa_required>authenticated",
        ONCE_HAD: "authenticated+due",
        IN_GRACE: "authenticated+due",
        GRACE_OVER: "mfa_setup_required:policy",
        ASKED: "mfa_required>mfa_setup_required:administrator",
    },
    "required_for_admins-as-owner": {
        NEVER_HAD: "mfa_setup_required:policy",
        ON: "mfa_required>authenticated",
        ONCE_HAD: "mfa_setup_required:policy",
        IN_GRACE: "mfa_setup_required:policy",
        GRACE_OVER: "mfa_setup_required:policy",
        ASKED: "mfa_required>mfa_setup_required:administrator",
    },
    "required_for_admins-as-member": {
        NEVER_HAD: "authenticated",
        ON: "mfa_required>authenticated",
        ONCE_HAD: "authenticated",
        IN_GRACE: "authenticated",
        GRACE_OVER: "authenticated",
        ASKED: "mfa_required>mfa_setup_required:administrator",
    },
}


def answers(api: TestClient, ctx: ServiceContext, user: User, secret: str | None) -> tuple[str, dict[str, Any]]:
    body = sign_in(api, user)
    steps = []
    if body["status"] == "mfa_required":
        assert "totp" in body["methods"]
        steps.append("mfa_required")
        assert secret is not None
        response = mfa(api, body["mfa_token"], code_at(secret, ctx))
        assert response.status_code == 200, response.text
        body = response.json()
    if body["status"] == "mfa_setup_required":
        assert set(body) == {"status", "setup_token", "expires_in", "reason"}
        assert body["setup_token"].startswith("nidan_e_") and body["expires_in"] == 30 * 60
        steps.append(f"mfa_setup_required:{body['reason']}")
    else:
        assert body["status"] == "authenticated" and body["session_token"].startswith("nidan_s_")
        steps.append("authenticated+due" if body["two_factor_due"] else "authenticated")
    return ">".join(steps), body


@pytest.mark.parametrize("state", [NEVER_HAD, ON, ONCE_HAD, IN_GRACE, GRACE_OVER, ASKED])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_sign_in_answers(api: TestClient, ctx: ServiceContext, policy: str, state: str) -> None:
    two_factor, role, grace = POLICIES[policy]
    user = new_user(ctx)
    secret = None
    if state in (ON, ONCE_HAD, ASKED):
        secret, _ = with_totp(api, ctx, user)
    if state == ONCE_HAD:
        session = sign_in_fully(api, ctx, user, secret)["session_token"]
        assert api.delete(f"{ME}/totp", headers=auth_header(session)).status_code == 204
        secret = None
    join(ctx, new_org(ctx, two_factor, grace), user, role)
    if state == ASKED:
        user_admin.require_registration(ctx, username=user.username, actor=None, client=CLIENT, reason="new phone")
    first_required_sign_in = ctx.clock.now()
    if state in (IN_GRACE, GRACE_OVER):
        sign_in(api, user)
        advance(ctx, (1 if state == IN_GRACE else 8) * DAY.total_seconds())

    outcome, body = answers(api, ctx, user, secret)

    assert outcome == TABLE[policy][state]
    if outcome == "authenticated+due":
        due = datetime.fromisoformat(body["two_factor_due"])
        assert due == first_required_sign_in + grace * DAY
        me = api.get(ME, headers=auth_header(body["session_token"])).json()
        assert me["setup_only"] is False
        assert me["two_factor"]["required"] is True and datetime.fromisoformat(me["two_factor"]["due"]) == due
        # A reminder, not a gate: the full API is open.
        assert api.get(f"{ME}/tokens", headers=auth_header(body["session_token"])).status_code == 200
    if outcome.endswith("mfa_setup_required:policy") or outcome.endswith("administrator"):
        refused = api.get(f"{ME}/tokens", headers=auth_header(body["setup_token"]))
        assert refused.status_code == 403 and error_code(refused) == "mfa_setup_required"


# --- the SaaS-workspace trap, end to end ----------------------------------------------------------------------------


def test_once_had_two_factor_then_enforced_is_led_into_setup_not_refused(api: TestClient, ctx: ServiceContext) -> None:
    """Set it up, turn it off while the workspace leaves it optional, then the workspace requires it: the next
    sign-in leads into setup, it does not refuse."""
    user = new_user(ctx)
    workspace = new_org(ctx, OPTIONAL)
    join(ctx, workspace, user)
    old_secret, _ = with_totp(api, ctx, user)
    session = sign_in_fully(api, ctx, user, old_secret)["session_token"]
    assert api.delete(f"{ME}/totp", headers=auth_header(session)).status_code == 204
    set_policy(ctx, workspace, ALL)  # the workspace now requires it of everyone

    body = sign_in(api, user)
    assert body["status"] == "mfa_setup_required" and body["reason"] == "policy"
    secret, activated = set_up_with(api, ctx, body["setup_token"])
    assert len(activated["recovery_codes"]) == 16 and activated["replaced_previous"] is False
    session = activated["session_token"]
    me = api.get(ME, headers=auth_header(session)).json()
    assert me["setup_only"] is False and me["two_factor"]["totp_enabled"] is True
    # And now it stays on.
    refused = api.delete(f"{ME}/totp", headers=auth_header(session))
    assert refused.status_code == 409 and error_code(refused) == "two_factor_required_by_policy"
    assert sign_in_fully(api, ctx, user, secret)["status"] == "authenticated"


# --- the setup_token ---------------------------------------------------------------------------------------------


def test_setup_gives_a_full_session_and_ends_the_setup_token(api: TestClient, ctx: ServiceContext) -> None:
    user, setup_token = setup_token_for(api, ctx)
    me = api.get(ME, headers=auth_header(setup_token))
    assert me.status_code == 200
    assert me.json()["setup_only"] is True and me.json()["username"] == user.username
    assert me.json()["two_factor"]["required"] is True and me.json()["two_factor"]["totp_enabled"] is False

    secret, activated = set_up_with(api, ctx, setup_token)

    session = activated["session_token"]
    assert session.startswith("nidan_s_") and len(activated["recovery_codes"]) == 16
    ended = api.get(ME, headers=auth_header(setup_token))
    assert ended.status_code == 401 and error_code(ended) == "authentication_required"
    again = api.post(f"{ME}/totp", headers=auth_header(setup_token))
    assert again.status_code == 401
    full = api.get(ME, headers=auth_header(session)).json()
    assert full["setup_only"] is False and full["two_factor"]["totp_enabled"] is True
    assert full["two_factor"]["recovery_codes_remaining"] == 16
    assert api.get(f"{ME}/tokens", headers=auth_header(session)).status_code == 200
    # From now on an ordinary two-step sign-in.
    assert sign_in_fully(api, ctx, user, secret)["status"] == "authenticated"


def test_a_wrong_first_code_keeps_the_setup_token(api: TestClient, ctx: ServiceContext) -> None:
    _, setup_token = setup_token_for(api, ctx)
    started = api.post(f"{ME}/totp", headers=auth_header(setup_token))
    secret = started.json()["secret"]
    wrong = "000000" if code_at(secret, ctx) != "000000" else "111111"
    refused = api.post(f"{ME}/totp/activate", json={"code": wrong}, headers=auth_header(setup_token))
    assert refused.status_code in (401, 422) and "session_token" not in refused.json()
    assert api.get(ME, headers=auth_header(setup_token)).json()["setup_only"] is True
    activated = api.post(f"{ME}/totp/activate", json={"code": code_at(secret, ctx)}, headers=auth_header(setup_token))
    assert activated.status_code == 200 and activated.json()["session_token"]


ELSEWHERE = [
    ("GET", f"{ME}/tokens", None),
    ("POST", f"{ME}/tokens", {"name": "laptop", "scopes": ["read_repository"]}),
    ("POST", f"{ME}/app-passwords", {"name": "Thunderbird"}),
    ("DELETE", f"{ME}/tokens/1", None),
    ("DELETE", f"{ME}/totp", None),
    ("POST", f"{ME}/recovery-codes", None),
    ("GET", f"{ME}/events", None),
    ("GET", "/api/v1/admin/events", None),
    ("GET", "/api/v1/admin/apps", None),
    ("DELETE", "/api/v1/admin/users/nobody-here/block", None),
    ("POST", "/api/v1/auth/reauth", {"method": "password", "password": PASSWORD}),
]


@pytest.mark.parametrize(("method", "path", "body"), ELSEWHERE, ids=[f"{m} {p}" for m, p, _ in ELSEWHERE])
@pytest.mark.parametrize("reason", ["policy", "administrator"])
def test_the_setup_token_opens_nothing_else(
    api: TestClient, ctx: ServiceContext, reason: str, method: str, path: str, body: dict[str, Any] | None
) -> None:
    # An instance administrator whose 2FA was reset: even the admin API answers "set it up first".
    _, setup_token = setup_token_for(api, ctx, admin=reason == "administrator")
    response = api.request(method, path, json=body, headers=auth_header(setup_token))
    assert response.status_code == 403, response.text
    assert error_code(response) == "mfa_setup_required"
    # Refused, not spent: it still does what it is for.
    assert api.get(ME, headers=auth_header(setup_token)).json()["setup_only"] is True


def test_the_setup_token_is_not_an_mfa_token(api: TestClient, ctx: ServiceContext) -> None:
    _, setup_token = setup_token_for(api, ctx)
    response = mfa(api, setup_token, "123456")
    assert response.status_code == 401 and error_code(response) == "mfa_token_invalid"


def test_the_setup_token_cannot_step_up(api: TestClient, ctx: ServiceContext) -> None:
    """A step-up would trade the enrolment-only token for a full session without setting up anything."""
    _, setup_token = setup_token_for(api, ctx)
    for body in ({"method": "password", "password": PASSWORD}, {"method": "totp", "code": "123456"}):
        response = api.post("/api/v1/auth/reauth", json=body, headers=auth_header(setup_token))
        assert response.status_code == 403 and error_code(response) == "mfa_setup_required"
    assert api.get(ME, headers=auth_header(setup_token)).json()["setup_only"] is True


def test_the_setup_token_signs_out(api: TestClient, ctx: ServiceContext) -> None:
    _, setup_token = setup_token_for(api, ctx)
    assert api.post("/api/v1/auth/logout", headers=auth_header(setup_token)).status_code == 204
    assert api.get(ME, headers=auth_header(setup_token)).status_code == 401
    assert api.post(f"{ME}/totp", headers=auth_header(setup_token)).status_code == 401
    assert api.post("/api/v1/auth/logout", headers=auth_header(setup_token)).status_code == 401


def test_the_setup_token_expires_after_30_minutes(api: TestClient, ctx: ServiceContext) -> None:
    _, setup_token = setup_token_for(api, ctx)
    started = api.post(f"{ME}/totp", headers=auth_header(setup_token))
    secret = started.json()["secret"]
    advance(ctx, 30 * 60 - 1)
    assert api.get(ME, headers=auth_header(setup_token)).status_code == 200
    advance(ctx, 1)
    expired = api.get(ME, headers=auth_header(setup_token))
    assert expired.status_code == 401 and error_code(expired) == "authentication_required"
    late = api.post(f"{ME}/totp/activate", json={"code": code_at(secret, ctx)}, headers=auth_header(setup_token))
    assert late.status_code == 401
    assert api.post("/api/v1/auth/logout", headers=auth_header(setup_token)).status_code == 401


def test_reason_administrator_after_the_old_factor_replaces_the_app(api: TestClient, ctx: ServiceContext) -> None:
    user = new_user(ctx)
    old_secret, _ = with_totp(api, ctx, user)
    user_admin.require_registration(ctx, username=user.username, actor=None, client=CLIENT, reason="new phone")
    challenge = sign_in(api, user)
    assert challenge["status"] == "mfa_required"
    body = mfa(api, challenge["mfa_token"], code_at(old_secret, ctx)).json()
    assert body["status"] == "mfa_setup_required" and body["reason"] == "administrator"
    me = api.get(ME, headers=auth_header(body["setup_token"])).json()
    assert me["setup_only"] is True and me["two_factor"]["registration_required"] is True
    # Replacing an app normally needs a recent step-up; this sign-in just proved itself with the old factor.
    new_secret, activated = set_up_with(api, ctx, body["setup_token"])
    assert activated["replaced_previous"] is True and activated["session_token"]
    after = api.get(ME, headers=auth_header(activated["session_token"])).json()
    assert after["two_factor"]["registration_required"] is False
    challenge = sign_in(api, user)
    refused = mfa(api, challenge["mfa_token"], code_at(old_secret, ctx))
    assert refused.status_code == 401
    advance(ctx, 2)
    assert mfa(api, challenge["mfa_token"], code_at(new_secret, ctx)).json()["status"] == "authenticated"


# --- several organisations ---------------------------------------------------------------------------------------


def test_an_organisation_without_recovery_codes(api: TestClient, ctx: ServiceContext) -> None:
    user = new_user(ctx)
    secret, codes = with_totp(api, ctx, user)
    join(ctx, new_org(ctx, OPTIONAL), user)
    join(ctx, new_org(ctx, OPTIONAL, allowed_methods=[Method.TOTP]), user)
    challenge = sign_in(api, user)
    assert challenge["status"] == "mfa_required" and challenge["methods"] == ["totp"]
    refused = mfa(api, challenge["mfa_token"], codes[0], method="recovery_code")
    assert refused.status_code == 403 and error_code(refused) == "method_not_allowed"
    accepted = mfa(api, challenge["mfa_token"], code_at(secret, ctx))
    assert accepted.status_code == 200 and accepted.json()["status"] == "authenticated"


def test_the_strictest_organisation_wins_with_the_shortest_grace(api: TestClient, ctx: ServiceContext) -> None:
    user = new_user(ctx)
    join(ctx, new_org(ctx, OPTIONAL), user, OrgRole.OWNER)
    join(ctx, new_org(ctx, ALL, 30), user)
    join(ctx, new_org(ctx, ADMINS, 2), user, OrgRole.USER_ADMIN)
    now = ctx.clock.now()
    body = sign_in(api, user)
    assert body["status"] == "authenticated"
    assert datetime.fromisoformat(body["two_factor_due"]) == now + 2 * DAY
    advance(ctx, 2 * DAY.total_seconds())
    assert sign_in(api, user)["status"] == "mfa_setup_required"


def test_an_organisations_tolerated_failures_apply_at_the_second_step(api: TestClient, ctx: ServiceContext) -> None:
    user = new_user(ctx)
    secret, _ = with_totp(api, ctx, user)
    join(ctx, new_org(ctx, OPTIONAL, tolerated_failures=0), user)
    challenge = sign_in(api, user)
    wrong = "000000" if code_at(secret, ctx) != "000000" else "111111"
    first = mfa(api, challenge["mfa_token"], wrong)
    assert first.status_code == 401 and error_code(first) == "invalid_code"
    blocked = mfa(api, challenge["mfa_token"], code_at(secret, ctx))
    assert blocked.status_code == 429 and error_code(blocked) == "rate_limited"
    assert int(blocked.headers["Retry-After"]) >= 1
    advance(ctx, 2)
    assert mfa(api, challenge["mfa_token"], code_at(secret, ctx)).status_code == 200


# --- turning 2FA off -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "allowed"), [(OPTIONAL, True), (ALL, False)])
def test_turning_two_factor_off(api: TestClient, ctx: ServiceContext, policy: TwoFactorPolicy, allowed: bool) -> None:
    user = new_user(ctx)
    secret, _ = with_totp(api, ctx, user)
    join(ctx, new_org(ctx, policy), user)
    session = sign_in_fully(api, ctx, user, secret)["session_token"]
    response = api.delete(f"{ME}/totp", headers=auth_header(session))
    if allowed:
        assert response.status_code == 204
        return
    assert response.status_code == 409 and error_code(response) == "two_factor_required_by_policy"
    assert api.get(ME, headers=auth_header(session)).json()["two_factor"]["totp_enabled"] is True


def test_once_two_factor_is_on_another_setup_token_cannot_replace_it(api: TestClient, ctx: ServiceContext) -> None:
    """Two sign-ins before the setup (two tabs, or someone else with the password): once 2FA is on, the other
    setup_token must not be able to put its own authenticator app in and get a full session without a second
    factor; a setup_token is for setting 2FA up, not for replacing it."""
    user = new_user(ctx)
    join(ctx, new_org(ctx, ALL), user)
    first, second = sign_in(api, user)["setup_token"], sign_in(api, user)["setup_token"]
    secret, _ = set_up_with(api, ctx, first)

    started = api.post(f"{ME}/totp", headers=auth_header(second))
    if started.status_code == 200:
        other = started.json()["secret"]
        activated = api.post(f"{ME}/totp/activate", json={"code": code_at(other, ctx)}, headers=auth_header(second))
        assert activated.status_code >= 400, "the other setup_token replaced the authenticator app"
    assert sign_in_fully(api, ctx, user, secret)["status"] == "authenticated"
