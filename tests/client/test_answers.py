"""How the client reads answers that are not nidan's: a wrong base URL, a proxy's error page, a redirect.

Scripted with ``httpx.MockTransport``: no server, no database.
"""

from __future__ import annotations

import json

import httpx
import pytest

from nidan.client import Client, NidanClientError, RateLimitedError, UnexpectedResponse

KEY = "nidan_key_" + "k" * 43


def client(handler: httpx.MockTransport) -> Client:
    return Client("https://nidan.example/prefix", api_key=KEY, transport=handler)


def answering(status: int, body: object = None, headers: dict[str, str] | None = None) -> httpx.MockTransport:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.MockTransport(lambda request: httpx.Response(status, content=content, headers=headers))


def test_what_the_client_sends() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True, "method": "totp", "username": "alice"})

    with client(httpx.MockTransport(handler)) as nidan:
        nidan.verify("alice", "123456")
        nidan.verify("alice", "7kq2m-x9c4t", method="recovery_code")
    assert str(seen[0].url) == "https://nidan.example/prefix/api/v1/verify"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert seen[0].headers["user-agent"].startswith("nidan-client/")
    assert json.loads(seen[0].content) == {"username": "alice", "code": "123456"}
    assert json.loads(seen[1].content)["method"] == "recovery_code"


def test_an_html_page_is_an_unexpected_response() -> None:
    with client(answering(502, "<html>Bad Gateway</html>")) as nidan, pytest.raises(UnexpectedResponse) as error:
        nidan.verify("alice", "123456")
    assert (error.value.code, error.value.status) == ("unexpected_response", 502)
    assert "base URL" in error.value.message


def test_a_redirect_is_not_followed() -> None:
    redirect = answering(307, "", {"Location": "https://elsewhere.example/api/v1/verify"})
    with client(redirect) as nidan, pytest.raises(UnexpectedResponse) as error:
        nidan.verify("alice", "123456")
    assert error.value.status == 307


def test_an_ok_answer_missing_fields_is_unexpected() -> None:
    with client(answering(200, {"ok": True})) as nidan, pytest.raises(UnexpectedResponse, match="'method'"):
        nidan.verify("alice", "123456")
    with client(answering(200, {"ok": "yes"})) as nidan, pytest.raises(UnexpectedResponse):
        nidan.verify("alice", "123456")


def test_other_error_answers_keep_nidan_s_code_and_status() -> None:
    body = {"error": {"code": "internal_error", "message": "Something went wrong.", "correlation_id": "abc12345"}}
    with client(answering(500, body)) as nidan, pytest.raises(NidanClientError) as error:
        nidan.verify("alice", "123456")
    assert type(error.value) is NidanClientError
    assert (error.value.code, error.value.status, error.value.correlation_id) == ("internal_error", 500, "abc12345")
    assert "abc12345" in str(error.value)


@pytest.mark.parametrize(("header", "expected"), [("7", 7), ("0", 1), ("Wed, 21 Oct 2015 07:28:00 GMT", 1), (None, 1)])
def test_retry_after_is_at_least_one_second(header: str | None, expected: int) -> None:
    body = {"error": {"code": "rate_limited", "message": "Wait."}}
    headers = {"Retry-After": header} if header is not None else None
    with client(answering(429, body, headers)) as nidan, pytest.raises(RateLimitedError) as blocked:
        nidan.verify("alice", "123456")
    assert blocked.value.retry_after == expected


def test_nothing_secret_in_reprs() -> None:
    with client(answering(200, {})) as nidan:
        assert KEY not in repr(nidan) and "nidan.example" in repr(nidan)
