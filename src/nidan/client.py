"""A typed client for applications that rely on nidan: verify a user's code, or sign them in through nidan.

One module that needs only ``httpx`` (copy it into your application, or install nidan): ``Client`` for
synchronous code, ``AsyncClient`` for ``asyncio`` code, with the same methods.

    from nidan.client import Client

    with Client("https://2fa.example.com", api_key=os.environ["NIDAN_API_KEY"]) as nidan:
        result = nidan.verify("alice", "492039")
        if result.ok: ...  # result.username is the canonical name; otherwise result.error.message says why

``verify`` answers a wrong, reused or expired code with ``ok=False`` (a normal answer, not an exception). What
the client raises, all with ``code``, ``message``, ``status`` and ``correlation_id`` (quote the last one to the
nidan administrator: it finds the request in nidan's log):

    NidanClientError              nidan answered with an error body: code from nidan (403, 409, 422, 5xx ...)
    ├── AuthenticationFailed      401: app_key_invalid, invalid_credentials, invalid_code, mfa_token_invalid,
    │                                  authentication_required
    ├── RateLimitedError          429 rate_limited: wait ``retry_after`` seconds
    ├── UnexpectedResponse        an answer that is not nidan's API: a wrong base URL, a proxy's error page
    └── TransportError            no answer: connection refused, timeout, TLS failure (status is None)

No message ever holds the API key, a password, a code or a token. Requests never follow redirects, so the key is
never sent on to another address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

import httpx

__all__ = [
    "AsyncClient",
    "Authenticated",
    "AuthenticationFailed",
    "Client",
    "ErrorInfo",
    "MfaRequired",
    "NidanClientError",
    "RateLimitedError",
    "SessionInfo",
    "TransportError",
    "UnexpectedResponse",
    "VerifyMethod",
    "VerifyResult",
]

VerifyMethod = Literal["totp", "recovery_code"]
_T = TypeVar("_T")
_USER_AGENT = "nidan-client/1"
_TOKEN_SHAPE = re.compile(r"[\x21-\x7e]+")  # what may follow "Bearer ": printable ASCII, no spaces or line breaks


# --- errors -----------------------------------------------------------------------------------------------------


class NidanClientError(Exception):
    def __init__(
        self, code: str, message: str, *, status: int | None = None, correlation_id: str | None = None
    ) -> None:
        super().__init__(f"{message} [{code}" + (f", correlation id {correlation_id}]" if correlation_id else "]"))
        self.code = code
        self.message = message
        self.status = status
        self.correlation_id = correlation_id


class AuthenticationFailed(NidanClientError):
    """401: the API key, password, code, mfa_token or session token was not accepted (see ``code``)."""


class RateLimitedError(NidanClientError):
    """429: too many failures in a row; nidan answers nothing else for this user until ``retry_after`` seconds."""

    def __init__(
        self, code: str, message: str, *, status: int | None = 429, correlation_id: str | None = None, retry_after: int
    ) -> None:
        super().__init__(code, message, status=status, correlation_id=correlation_id)
        self.retry_after = retry_after


class UnexpectedResponse(NidanClientError):
    """An answer nidan's API does not give: check the base URL, and what stands between you and nidan."""


class TransportError(NidanClientError):
    """No answer from nidan (the httpx error is the ``__cause__``)."""


# --- results ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str
    message: str
    correlation_id: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """nidan's answer to a code. ``bool(result)`` is ``result.ok``. ``method``: what nidan checked the code as
    (``"totp"`` or ``"recovery_code"``); ``username``: the canonical name when ok; ``error``: why not, when not."""

    ok: bool
    method: str | None = None
    username: str | None = None
    error: ErrorInfo | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class Authenticated:
    session_token: str = field(repr=False)
    expires_in: int


@dataclass(frozen=True, slots=True)
class MfaRequired:
    """The password was right; send a code with ``complete_mfa(mfa_token, code)`` within ``expires_in`` seconds."""

    mfa_token: str = field(repr=False)
    methods: tuple[str, ...]
    expires_in: int


@dataclass(frozen=True, slots=True)
class SessionInfo:
    username: str
    email: str
    role: str
    created_at: datetime
    last_sign_in_at: datetime | None
    two_factor_enabled: bool
    recovery_codes_remaining: int


# --- requests and answers, shared by both clients ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call(Generic[_T]):
    """One API call: what to send, and how to read the answer. The two clients differ only in how they send."""

    method: str
    path: str
    parse: Callable[[httpx.Response], _T]
    body: Mapping[str, object] | None = field(default=None, repr=False)
    bearer: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)  # never to appear in a message
    client_ip: str | None = None


def _bearer(name: str, value: str | None) -> str:
    if not value:
        raise ValueError(f"{name} is required for this call")
    if not _TOKEN_SHAPE.fullmatch(value):
        raise ValueError(f"{name} has characters a token cannot have (spaces, line breaks or non-ASCII)")
    return value


def _unexpected(message: str, response: httpx.Response | None = None) -> UnexpectedResponse:
    if response is None:
        return UnexpectedResponse("unexpected_response", message)
    where = f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}"
    return UnexpectedResponse(
        "unexpected_response",
        f"{message} ({where}). Is the base URL nidan's?",
        status=response.status_code,
        correlation_id=response.headers.get("x-correlation-id"),
    )


def _forwarded(client_ip: str | None) -> str | None:
    """The end user's address for ``X-Forwarded-For``; nidan believes it only from a ``server.trusted_proxies``."""
    return None if client_ip is None else str(ipaddress.ip_address(client_ip))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _unexpected("The answer is not a JSON object", response)
    return body


def _error_info(value: object) -> ErrorInfo | None:
    if not isinstance(value, dict) or not isinstance(value.get("code"), str):
        return None
    message, correlation, stamp = value.get("message"), value.get("correlation_id"), value.get("timestamp")
    return ErrorInfo(
        code=value["code"],
        message=message if isinstance(message, str) else value["code"],
        correlation_id=correlation if isinstance(correlation, str) else None,
        timestamp=stamp if isinstance(stamp, str) else None,
    )


def _retry_after(response: httpx.Response) -> int:
    try:
        return max(1, int(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1


def _checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 2xx answer; an error answer raised as the matching exception."""
    if response.is_success:
        return _json(response)
    info = None if response.is_redirect else _error_info(_json(response).get("error"))
    if info is None:
        raise _unexpected("An error answer without nidan's error body", response)
    status, correlation_id = response.status_code, info.correlation_id
    if status == 429:
        retry_after = _retry_after(response)
        raise RateLimitedError(info.code, info.message, correlation_id=correlation_id, retry_after=retry_after)
    error_class = AuthenticationFailed if status == 401 else NidanClientError
    raise error_class(info.code, info.message, status=status, correlation_id=correlation_id)


def _field(body: Mapping[str, Any], name: str, kind: type[_T]) -> _T:
    value = body.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _unexpected(f"nidan's answer lacks a valid {name!r}.")
    return value


def _time(body: Mapping[str, Any], name: str) -> datetime:
    try:
        return datetime.fromisoformat(_field(body, name, str))
    except ValueError:
        raise _unexpected(f"nidan's {name!r} is not an ISO 8601 time.") from None


def _parse_verify(response: httpx.Response) -> VerifyResult:
    body = _checked(response)
    if body.get("ok") is True:
        return VerifyResult(ok=True, method=_field(body, "method", str), username=_field(body, "username", str))
    error = _error_info(body.get("error"))
    if body.get("ok") is not False or error is None:
        raise _unexpected("nidan's verify answer has neither ok nor an error.", response)
    method = body.get("method")
    return VerifyResult(ok=False, method=method if isinstance(method, str) else None, error=error)


def _parse_login(response: httpx.Response) -> Authenticated | MfaRequired:
    body = _checked(response)
    if body.get("status") == "mfa_required":
        methods = tuple(str(m) for m in _field(body, "methods", list))
        return MfaRequired(_field(body, "mfa_token", str), methods, _field(body, "expires_in", int))
    return Authenticated(_field(body, "session_token", str), _field(body, "expires_in", int))


def _parse_authenticated(response: httpx.Response) -> Authenticated:
    result = _parse_login(response)
    if not isinstance(result, Authenticated):
        raise _unexpected("nidan asked for a second step again.", response)
    return result


def _parse_session(response: httpx.Response) -> SessionInfo:
    body = _checked(response)
    two_factor = _field(body, "two_factor", dict)
    return SessionInfo(
        username=_field(body, "username", str),
        email=_field(body, "email", str),
        role=_field(body, "role", str),
        created_at=_time(body, "created_at"),
        last_sign_in_at=None if body.get("last_sign_in_at") is None else _time(body, "last_sign_in_at"),
        two_factor_enabled=_field(two_factor, "totp_enabled", bool),
        recovery_codes_remaining=_field(two_factor, "recovery_codes_remaining", int),
    )


def _parse_nothing(response: httpx.Response) -> None:
    if response.status_code != 204:
        _checked(response)


def _verify(
    api_key: str | None, username: str, code: str, method: VerifyMethod | None, client_ip: str | None
) -> _Call[VerifyResult]:
    key = _bearer("api_key", api_key)
    body: dict[str, object] = {"username": username, "code": code}
    if method is not None:
        body["method"] = method
    return _Call("POST", "/api/v1/verify", _parse_verify, body, key, (key, code), _forwarded(client_ip))


def _login(username: str, password: str, client_ip: str | None) -> _Call[Authenticated | MfaRequired]:
    body = {"username": username, "password": password}
    return _Call("POST", "/api/v1/auth/login", _parse_login, body, None, (password,), _forwarded(client_ip))


def _complete_mfa(mfa_token: str, code: str, method: VerifyMethod, client_ip: str | None) -> _Call[Authenticated]:
    body = {"mfa_token": mfa_token, "method": method, "code": code}
    secrets = (mfa_token, code)
    return _Call("POST", "/api/v1/auth/mfa", _parse_authenticated, body, None, secrets, _forwarded(client_ip))


def _session(token: str) -> _Call[SessionInfo]:
    token = _bearer("session_token", token)
    return _Call("GET", "/api/v1/me", _parse_session, bearer=token, secrets=(token,))


def _logout(token: str) -> _Call[None]:
    token = _bearer("session_token", token)
    return _Call("POST", "/api/v1/auth/logout", _parse_nothing, bearer=token, secrets=(token,))


def _request(http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
    headers = {"Authorization": f"Bearer {call.bearer}"} if call.bearer else {}
    if call.client_ip:
        headers["X-Forwarded-For"] = call.client_ip
    return http.build_request(call.method, call.path, json=call.body, headers=headers)


def _transport_error(error: httpx.RequestError, base_url: httpx.URL, call: _Call[Any]) -> TransportError:
    detail = str(error) or type(error).__name__
    for secret in filter(None, call.secrets):
        detail = detail.replace(secret, "[redacted]")
    where = base_url.copy_with(userinfo=b"")
    return TransportError("transport_error", f"No answer from nidan at {where} to {call.method} {call.path}: {detail}")


def _http_options(base_url: str, timeout: float | httpx.Timeout, headers: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "timeout": timeout,
        "headers": {"User-Agent": _USER_AGENT, "Accept": "application/json", **(headers or {})},
        "follow_redirects": False,
    }


# --- the clients ------------------------------------------------------------------------------------------------


class Client:
    """nidan's API from synchronous code. ``api_key`` (``nidan_key_...``) is needed by ``verify`` only.

    ``transport`` is any ``httpx.BaseTransport``: ``httpx.HTTPTransport(verify=ssl_context, retries=2)`` for your
    own CA or connection retries. Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._api_key = api_key
        self._http = httpx.Client(transport=transport, **_http_options(base_url, timeout, headers))

    def __repr__(self) -> str:
        return f"Client({str(self._http.base_url.copy_with(userinfo=b''))!r})"

    def _send(self, call: _Call[_T]) -> _T:
        try:
            response = self._http.send(_request(self._http, call))
        except httpx.RequestError as error:
            raise _transport_error(error, self._http.base_url, call) from error
        return call.parse(response)

    def verify(
        self, username: str, code: str, *, method: VerifyMethod | None = None, client_ip: str | None = None
    ) -> VerifyResult:
        """Checks a TOTP or recovery code (``method=None``: nidan tells them apart by shape) and spends it.

        ``client_ip``, here and in ``login`` and ``complete_mfa``: the end user's address, sent as
        ``X-Forwarded-For`` for nidan's log and its per-address backoff. nidan believes it only when this
        application's address is in nidan's ``server.trusted_proxies``."""
        return self._send(_verify(self._api_key, username, code, method, client_ip))

    def login(self, username: str, password: str, *, client_ip: str | None = None) -> Authenticated | MfaRequired:
        return self._send(_login(username, password, client_ip))

    def complete_mfa(
        self, mfa_token: str, code: str, *, method: VerifyMethod = "totp", client_ip: str | None = None
    ) -> Authenticated:
        return self._send(_complete_mfa(mfa_token, code, method, client_ip))

    def session(self, session_token: str) -> SessionInfo:
        """Who a session token belongs to; ``AuthenticationFailed`` once it has ended."""
        return self._send(_session(session_token))

    def logout(self, session_token: str) -> None:
        self._send(_logout(session_token))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class AsyncClient:
    """``Client`` for ``asyncio``: the same arguments (``transport`` an ``httpx.AsyncBaseTransport``) and methods."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._api_key = api_key
        self._http = httpx.AsyncClient(transport=transport, **_http_options(base_url, timeout, headers))

    def __repr__(self) -> str:
        return f"AsyncClient({str(self._http.base_url.copy_with(userinfo=b''))!r})"

    async def _send(self, call: _Call[_T]) -> _T:
        try:
            response = await self._http.send(_request(self._http, call))
        except httpx.RequestError as error:
            raise _transport_error(error, self._http.base_url, call) from error
        return call.parse(response)

    async def verify(
        self, username: str, code: str, *, method: VerifyMethod | None = None, client_ip: str | None = None
    ) -> VerifyResult:
        return await self._send(_verify(self._api_key, username, code, method, client_ip))

    async def login(self, username: str, password: str, *, client_ip: str | None = None) -> Authenticated | MfaRequired:
        return await self._send(_login(username, password, client_ip))

    async def complete_mfa(
        self, mfa_token: str, code: str, *, method: VerifyMethod = "totp", client_ip: str | None = None
    ) -> Authenticated:
        return await self._send(_complete_mfa(mfa_token, code, method, client_ip))

    async def session(self, session_token: str) -> SessionInfo:
        return await self._send(_session(session_token))

    async def logout(self, session_token: str) -> None:
        await self._send(_logout(session_token))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
