"""The access log: one line per request with its status, time and correlation id, never a query string (a setup
link's token travels in one), written once per turn of the event loop."""

from __future__ import annotations

import asyncio
import io

import pytest
from starlette.types import Message, Receive, Scope, Send

from nidan.web.access_log import AccessLog, LineWriter


def http_scope(path: str, query: bytes = b"") -> Scope:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "root_path": "",
        "query_string": query,
        "http_version": "1.1",
        "client": ("127.0.0.1", 50422),
        "headers": [],
    }


async def answering(status: int, headers: list[tuple[bytes, bytes]] | None = None) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def run(app: object, scope: Scope) -> tuple[str, list[Message]]:
    stream = io.StringIO()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        logged = AccessLog(app, LineWriter(lambda: stream))  # type: ignore[arg-type]
        await logged(scope, receive, send)
        assert stream.getvalue() == "", "written at the end of the loop's turn, not during the request"
        await asyncio.sleep(0)

    asyncio.run(main())
    return stream.getvalue(), sent


def test_a_line_per_request_with_status_time_and_correlation_id() -> None:
    app = asyncio.run(answering(200, [(b"x-correlation-id", b"6f1c0e9a2b3d4c5e")]))
    line, sent = run(app, http_scope("/api/v1/verify"))
    assert line.startswith('INFO:     127.0.0.1:50422 - "GET /api/v1/verify HTTP/1.1" 200 ')
    assert line.endswith("ms id=6f1c0e9a2b3d4c5e\n")
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # the answer is untouched


def test_query_string_is_redacted() -> None:
    app = asyncio.run(answering(303))
    line, _ = run(app, http_scope("/setup", b"token=s3cr3t-setup-token"))
    assert "s3cr3t" not in line
    assert '"GET /setup?[redacted] HTTP/1.1" 303' in line


def test_control_characters_in_a_path_cannot_forge_a_line() -> None:
    app = asyncio.run(answering(404))
    line, _ = run(app, http_scope("/a\nINFO:     forged"))
    assert line.count("\n") == 1
    assert "/a\\nINFO:" in line


def test_an_exchange_that_ends_without_an_answer_is_logged_with_a_dash() -> None:
    async def crashing(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    stream = io.StringIO()
    logged = AccessLog(crashing, LineWriter(lambda: stream))
    with pytest.raises(RuntimeError):
        asyncio.run(logged(http_scope("/"), receive, lambda message: asyncio.sleep(0)))  # type: ignore[arg-type]
    assert '"GET / HTTP/1.1" - ' in stream.getvalue()
    assert stream.getvalue().endswith(" id=-\n")


def test_the_lines_of_one_turn_of_the_loop_are_written_in_one_go() -> None:
    writes: list[str] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    stream = Stream()

    async def main() -> None:
        writer = LineWriter(lambda: stream)
        for n in range(5):
            writer.add(f"line {n}\n")
        assert writes == []
        await asyncio.sleep(0)
        writer.add("next turn\n")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert writes == ["".join(f"line {n}\n" for n in range(5)), "next turn\n"]


def test_a_broken_stream_loses_lines_not_requests() -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("EPIPE")

    writer = LineWriter(lambda: Closed())
    writer.add("dropped\n")  # no loop: written at once, and the error is swallowed


def test_a_mounted_app_is_logged_with_the_path_the_client_asked_for() -> None:
    """Starlette's Mount (``/static``) rewrites the scope in place as it routes: ``root_path`` becomes the mount's
    path while ``path`` keeps it. Reading both afterwards logged ``/static/static/nidan.css``."""

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        scope["root_path"] = scope.get("root_path", "") + "/static"  # as starlette.routing.Mount does
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    line, _ = run(mounted, http_scope("/static/nidan.css"))
    assert '"GET /static/nidan.css HTTP/1.1" 200 ' in line
