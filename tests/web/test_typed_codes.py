"""Codes as Japanese users type them (issue 16), at every place a code is checked: full-width digits and the
ideographic space from an IME in full-width mode, ``ー`` and full-width letters in a recovery code. Each is the
plain code, never a wrong one: it signs in, steps up, turns an authenticator on and answers the verify API, and the
backoff counts no failure for it."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.testclient import TestClient

from nidan.bootstrap import Runtime
from nidan.core.models import ClientInfo
from nidan.services import applications, throttling
from nidan.services.context import ServiceContext
from tests.helpers import PASSWORD, auth_header, code_at, enable_totp, login, make_user
from tests.web.pages_support import KEY, enable_totp_on_page, sign_in, sign_out, signed_in_alice, submit
from tests.web.verify_support import VERIFY, totp_user

_FULLWIDTH = str.maketrans(
    "0123456789abcdefghijklmnopqrstuvwxyz-",
    "０１２３４５６７８９ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚー",
)


def full_width(code: str) -> str:
    """A TOTP code as an IME in full-width mode types it: ``６３１　８９３``."""
    return f"{code[:3]}\u3000{code[3:]}".translate(_FULLWIDTH)


def ime_recovery_code(code: str) -> str:
    """A recovery code as an IME types it: full-width letters and digits, ``ー`` for the dash, upper case."""
    return (
        code.upper()
        .translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ"))
        .translate(_FULLWIDTH)
    )


def no_failures_counted(ctx: ServiceContext, username: str = "alice") -> bool:
    return throttling.status(ctx, username).second_factor.failures == 0


def advance(ctx: ServiceContext, seconds: float) -> None:
    ctx.clock.advance(seconds)  # type: ignore[attr-defined]


def test_the_transforms_give_what_an_ime_types() -> None:
    assert full_width("631893") == "６３１\u3000８９３"
    assert ime_recovery_code("7kq2m-x9c4t") == "７ＫＱ２ＭーＸ９Ｃ４Ｔ"


# --- the REST API -----------------------------------------------------------------------------------------------


def api_totp_alice(client: TestClient, runtime: Runtime) -> tuple[str, list[str]]:
    make_user(runtime.services)
    return enable_totp(client, runtime.services, login(client)["session_token"])


def mfa(client: TestClient, code: str, method: str = "totp") -> httpx.Response:
    token = login(client)["mfa_token"]
    response: httpx.Response = client.post(
        "/api/v1/auth/mfa", json={"mfa_token": token, "method": method, "code": code}
    )
    return response


def test_the_api_signs_in_with_a_full_width_code(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = api_totp_alice(client, runtime)
    done = mfa(client, full_width(code_at(secret, ctx)))
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "authenticated"
    assert no_failures_counted(ctx)
    # Spent, as the ASCII code would be: the same step typed either way is a replay.
    assert mfa(client, code_at(secret, ctx)).json()["error"]["code"] == "invalid_code"


def test_the_api_signs_in_with_a_recovery_code_typed_with_an_ime(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, codes = api_totp_alice(client, runtime)
    done = mfa(client, ime_recovery_code(codes[0]), method="recovery_code")
    assert done.status_code == 200, done.text
    assert no_failures_counted(ctx)
    assert mfa(client, codes[0], method="recovery_code").status_code == 401  # used up


def test_a_full_width_wrong_code_is_still_wrong(client: TestClient, runtime: Runtime) -> None:
    """Normalising reads a code; it does not make one right: a wrong code is counted however it was typed."""
    ctx = runtime.services
    secret, _ = api_totp_alice(client, runtime)
    right = {code_at(secret, ctx, offset) for offset in range(-2, 3)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in right)
    refused = mfa(client, full_width(wrong))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_code"
    assert throttling.status(ctx, "alice").second_factor.failures == 1


def test_the_api_activates_an_authenticator_with_a_full_width_code(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    make_user(ctx)
    token = login(client)["session_token"]
    secret = client.post("/api/v1/me/totp", headers=auth_header(token)).json()["secret"]
    activated = client.post(
        "/api/v1/me/totp/activate", json={"code": full_width(code_at(secret, ctx))}, headers=auth_header(token)
    )
    assert activated.status_code == 200, activated.text
    assert len(activated.json()["recovery_codes"]) == 16


def test_api_step_up_takes_full_width_codes(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, codes = api_totp_alice(client, runtime)
    token = mfa(client, code_at(secret, ctx)).json()["session_token"]
    advance(ctx, 11 * 60)  # past the step-up window
    stepped = client.post(
        "/api/v1/auth/reauth",
        json={"method": "totp", "code": full_width(code_at(secret, ctx))},
        headers=auth_header(token),
    )
    assert stepped.status_code == 200, stepped.text
    advance(ctx, 11 * 60)
    again = client.post(
        "/api/v1/auth/reauth",
        json={"method": "recovery_code", "code": ime_recovery_code(codes[1])},
        headers=auth_header(stepped.json()["session_token"]),
    )
    assert again.status_code == 200, again.text
    assert no_failures_counted(ctx)


@pytest.mark.parametrize("method", [None, "totp"])
def test_the_verify_api_takes_a_full_width_code(client: TestClient, runtime: Runtime, method: str | None) -> None:
    """Without a method, full-width digits are guessed as an authenticator code, as ASCII digits are."""
    ctx = runtime.services
    secret, _ = totp_user(ctx)
    key = applications.add(ctx, name="wiki", actor=None, client=ClientInfo()).api_key
    body = {"username": "alice", "code": full_width(code_at(secret, ctx))}
    answer = client.post(VERIFY, json=body | ({"method": method} if method else {}), headers=auth_header(key))
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True and answer.json()["method"] == "totp"
    assert no_failures_counted(ctx)


def test_the_verify_api_takes_a_recovery_code_typed_with_an_ime(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, codes = totp_user(ctx)
    key = applications.add(ctx, name="wiki", actor=None, client=ClientInfo()).api_key
    body = {"username": "alice", "code": ime_recovery_code(codes[2])}
    answer = client.post(VERIFY, json=body, headers=auth_header(key))
    assert answer.status_code == 200, answer.text
    assert answer.json() == answer.json() | {"ok": True, "method": "recovery_code", "username": "alice"}


# --- the pages --------------------------------------------------------------------------------------------------


def page_totp_alice(client: TestClient, ctx: ServiceContext) -> tuple[str, list[str]]:
    signed_in_alice(client, ctx)
    secret, codes = enable_totp_on_page(client, ctx)
    sign_out(client)
    return secret, codes


def test_the_sign_in_page_takes_a_full_width_code(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = page_totp_alice(client, ctx)
    sign_in(client)
    page = client.get("/login/verify")
    done = submit(client, page, "/login/verify", method="totp", code=full_width(code_at(secret, ctx)))
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith("/security")
    assert no_failures_counted(ctx)


def test_the_sign_in_page_takes_a_recovery_code_typed_with_an_ime(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    _, codes = page_totp_alice(client, ctx)
    sign_in(client)
    page = client.get("/login/verify?method=recovery_code")
    done = submit(client, page, "/login/verify", method="recovery_code", code=ime_recovery_code(codes[3]))
    assert done.status_code == 303, done.text
    assert no_failures_counted(ctx)


def test_the_setup_page_turns_on_with_a_full_width_code(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    signed_in_alice(client, ctx)
    enrolment = submit(client, client.get("/security"), "/security/totp")
    found = KEY.search(enrolment.text)
    assert found, enrolment.text
    secret = found.group(1).replace(" ", "")
    done = submit(client, enrolment, "/security/totp/activate", code=full_width(code_at(secret, ctx)))
    assert done.status_code == 200, done.text
    assert "Save your recovery codes" in done.text


def test_page_step_up_takes_a_full_width_code(client: TestClient, runtime: Runtime) -> None:
    ctx = runtime.services
    secret, _ = page_totp_alice(client, ctx)
    sign_in(client)
    submit(client, client.get("/login/verify"), "/login/verify", method="totp", code=code_at(secret, ctx))
    advance(ctx, 11 * 60)
    ask = client.get("/security/reauth?next=/security")
    done = submit(
        client, ask, "/security/reauth", method="totp", code=full_width(code_at(secret, ctx)), next="/security"
    )
    assert done.status_code == 303, done.text
    assert no_failures_counted(ctx)


_CODE_INPUTS = re.compile(r'<input[^>]*autocomplete="one-time-code"[^>]*>', re.S)


def test_the_code_fields_accept_what_an_ime_types(client: TestClient, runtime: Runtime) -> None:
    """A browser refuses to submit a field whose ``pattern`` does not match, or cuts it at ``maxlength``: no
    pattern (``[0-9 ]*`` refused ``６３１８９３``), and room for the code with spaces, full-width ones too."""
    ctx = runtime.services
    signed_in_alice(client, ctx)
    setup = submit(client, client.get("/security"), "/security/totp")
    secret = KEY.search(setup.text).group(1).replace(" ", "")  # type: ignore[union-attr]
    retry = submit(client, setup, "/security/totp/activate", code="000000")
    submit(client, retry, "/security/totp/activate", code=code_at(secret, ctx))
    advance(ctx, 60)
    sign_out(client)
    sign_in(client)
    pages = [setup, retry, client.get("/login/verify")]
    for page in pages:
        fields = _CODE_INPUTS.findall(page.text)
        assert fields, page.text
        for field in fields:
            assert "pattern=" not in field, field
            assert 'inputmode="numeric"' in field, field
            maxlength = re.search(r'maxlength="(\d+)"', field)
            assert maxlength is None or int(maxlength.group(1)) >= len(" ６３１　８９３ "), field


def test_a_password_field_is_untouched(client: TestClient, runtime: Runtime) -> None:
    """Only codes are read this way: a password is compared as typed (a full-width one is another password)."""
    make_user(runtime.services, password=PASSWORD)
    refused = client.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD.translate(_FULLWIDTH)})
    assert refused.status_code == 401
