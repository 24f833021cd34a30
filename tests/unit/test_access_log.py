"""The access log never carries a query string (a setup link's token travels in one)."""

from __future__ import annotations

import logging

from nidan.web.access_log import RedactQueryString, logging_config


def record(path: str) -> logging.LogRecord:
    args = ("127.0.0.1:5000", "GET", path, "1.1", 200)
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)


def test_query_string_is_redacted() -> None:
    entry = record("/setup?token=s3cr3t-setup-token")
    assert RedactQueryString().filter(entry) is True
    assert "s3cr3t" not in entry.getMessage()
    assert '"GET /setup?[redacted] HTTP/1.1" 200' in entry.getMessage()


def test_plain_paths_are_untouched() -> None:
    entry = record("/login")
    RedactQueryString().filter(entry)
    assert entry.getMessage() == '127.0.0.1:5000 - "GET /login HTTP/1.1" 200'


def test_uvicorn_access_handler_uses_the_filter() -> None:
    config = logging_config()
    assert config["handlers"]["access"]["filters"] == ["redact_query"]
    assert config["filters"]["redact_query"]["()"].endswith("RedactQueryString")
