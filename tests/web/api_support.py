"""The API's error body, as every error response carries it."""

from __future__ import annotations

from datetime import datetime


def assert_error(response: object, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    error: dict[str, str] = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == code
    assert error["message"] and error["message"][0].isupper()
    assert error["correlation_id"] == response.headers["x-correlation-id"]  # type: ignore[attr-defined]
    assert datetime.fromisoformat(error["timestamp"]).utcoffset() is not None
    return error
